import { expect } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ledgerViolations } from '../support/invariants.js';
import { random as seededRandom } from '../../tools/faulty-proxy.js';
import type { Operation } from '../../tools/retrying-client.js';

export {
  newStats,
  pool,
  sendAll,
  sendWithRetries,
  type Operation,
} from '../../tools/retrying-client.js';

/**
 * Shared pieces of the chaos suite: a seeded random source, a proxy that breaks
 * connections in the ways networks do, a client that retries like a careful
 * payments client, and a plan of operations whose outcome can be checked.
 *
 * CHAOS_ITERATIONS scales every scenario (default 1: the quick run in npm test).
 */
export const ITERATIONS = Math.max(1, Number(process.env.CHAOS_ITERATIONS ?? 1));
export const SEED = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000);

/** A random source seeded with SEED (CHAOS_SEED replays a run). */
export const random = (seed = SEED) => seededRandom(seed);

/**
 * A plan of money movements over some accounts that all succeed when each is
 * executed exactly once: deposits and charges tagged by key in their description.
 */
export function plan(accounts: string[], count: number, rng: () => number): Operation[] {
  return Array.from({ length: count }, (_, i) => {
    const accountId = accounts[i % accounts.length];
    const key = `chaos-${randomUUID()}`;
    const amount = 1 + Math.floor(rng() * 500);
    return rng() < 0.4
      ? {
          key,
          method: 'POST',
          path: `/accounts/${accountId}/deposits`,
          body: { amount, currency: 'USD', description: key },
        }
      : {
          key,
          method: 'POST',
          path: '/charges',
          body: { accountId, amount, currency: 'USD', description: key },
        };
  });
}

/** Balance each account must end with if every operation ran exactly once. */
export function expectedBalances(
  start: number,
  accounts: string[],
  ops: Operation[],
): Record<string, number> {
  const balances = Object.fromEntries(accounts.map((a) => [a, start]));
  for (const op of ops) {
    const amount = op.body.amount as number;
    if (op.path === '/charges') balances[op.body.accountId as string] -= amount;
    else if (op.path.endsWith('/deposits')) balances[op.path.split('/')[2]] += amount;
  }
  return balances;
}

/**
 * What exactly-once means in the database: each operation's key left exactly one
 * record (found by its description), and no key left two.
 */
export async function executionsPerOperation(
  db: pg.Pool,
  ops: Operation[],
): Promise<Record<string, number>> {
  const { rows } = await db.query<{ description: string; n: number }>(
    `SELECT description, count(*)::int AS n FROM (
       SELECT description FROM charges WHERE description LIKE 'chaos-%'
       UNION ALL SELECT description FROM deposits WHERE description LIKE 'chaos-%') x
     GROUP BY description`,
  );
  const counts = Object.fromEntries(ops.map((op) => [op.key, 0]));
  for (const row of rows) counts[row.description] = row.n;
  return counts;
}

export async function balancesOf(db: pg.Pool, accounts: string[]): Promise<Record<string, number>> {
  const { rows } = await db.query<{ id: string; balance: string }>(
    'SELECT id, balance FROM accounts WHERE id = ANY($1)',
    [accounts],
  );
  return Object.fromEntries(rows.map((r) => [r.id, Number(r.balance)]));
}

/**
 * Exactly once, as the database sees it, after a plan ran: each operation left
 * exactly one record, every account holds what the plan says (or `expected`,
 * when the test adds to the plan), and the books are sound.
 */
export async function expectExactlyOnce(
  db: pg.Pool,
  ops: Operation[],
  accounts: string[],
  { start, expected }: { start: number; expected?: Record<string, number> },
): Promise<void> {
  const executions = await executionsPerOperation(db, ops);
  expect(Object.entries(executions).filter(([, n]) => n !== 1)).toEqual([]);
  expect(await balancesOf(db, accounts)).toEqual(
    expected ?? expectedBalances(start, accounts, ops),
  );
  expect(await ledgerViolations(db)).toEqual([]);
}

/** One line of figures for the closing report. */
export function report(name: string, figures: Record<string, unknown>): void {
  process.stdout.write(`[chaos] ${name} seed=${SEED} ${JSON.stringify(figures)}\n`);
}
