import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import {
  type ChildApp,
  killChildren,
  scratchDatabase,
  startChildApp,
} from '../support/child-app.js';
import { MIGRATIONS } from '../../src/database/data-source.js';
import { ledgerViolations } from '../support/invariants.js';
import { testPool } from '../support/test-pool.js';
import {
  balancesOf,
  executionsPerOperation,
  expectedBalances,
  ITERATIONS,
  newStats,
  type Operation,
  plan,
  pool,
  random,
  report,
  sendWithRetries,
} from './chaos-support.js';

/** Three API processes on one database: nothing in process memory decides idempotency. */
let db: { url: string; drop(): Promise<void> };
let sql: pg.Pool;
let apps: ChildApp[];
const demo = 'sk_test_demo';

beforeAll(async () => {
  db = await scratchDatabase('instances', { migrated: false });
  sql = testPool(db.url, 2);
  // Started together on an empty database: their migrations must take turns.
  apps = await Promise.all([1, 2, 3].map(() => startChildApp({ DATABASE_URL: db.url })));
}, 60_000);
afterAll(async () => {
  killChildren();
  await sql.end();
  await db.drop();
});

const url = (i: number) => `http://127.0.0.1:${apps[i % apps.length].port}`;

async function fundedAccount(balance: number): Promise<string> {
  const stats = newStats();
  const account = await sendWithRetries(
    () => url(0),
    demo,
    {
      key: randomUUID(),
      method: 'POST',
      path: '/accounts',
      body: { name: 'multi', currency: 'USD' },
    },
    stats,
  );
  const id = account.body.id as string;
  await sendWithRetries(
    () => url(1),
    demo,
    {
      key: randomUUID(),
      method: 'POST',
      path: `/accounts/${id}/deposits`,
      body: { amount: balance, currency: 'USD' },
    },
    stats,
  );
  return id;
}

describe('many instances', () => {
  it('migrated the database once although three instances started together', async () => {
    const { rows } = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM migrations');
    expect(rows[0].n).toBe(MIGRATIONS.length);
  });

  it('executes a key once when its concurrent retries are spread over three instances', async () => {
    const account = await fundedAccount(10_000);
    const op: Operation = {
      key: randomUUID(),
      method: 'POST',
      path: '/charges',
      body: { accountId: account, amount: 1_000, currency: 'USD' },
    };
    const stats = newStats();

    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => sendWithRetries(() => url(i), demo, op, stats)),
    );

    expect(results.filter((r) => r.status === 201 && !r.replayed)).toHaveLength(1);
    expect(results.filter((r) => r.status === 201 && r.replayed)).toHaveLength(29);
    expect((await balancesOf(sql, [account]))[account]).toBe(9_000);
    expect(await ledgerViolations(sql)).toEqual([]);
    report('many-instances-same-key', {
      requests: 30,
      executed: 1,
      inUse409: stats.inUse,
      replays: stats.replays,
    });
  });

  it('executes a distinct-key load spread over three instances exactly once', async () => {
    const rng = random();
    const START = 1_000_000;
    const accounts: string[] = [];
    for (let i = 0; i < 6; i++) accounts.push(await fundedAccount(START));
    const ops = plan(accounts, 150 * ITERATIONS, rng);
    const stats = newStats();

    let n = 0;
    const results = await pool(ops, 9, (op) => {
      const instance = n++;
      return sendWithRetries(() => url(instance), demo, op, stats);
    });

    expect(results.every((r) => r.status === 201)).toBe(true);
    const executions = await executionsPerOperation(sql, ops);
    expect(Object.entries(executions).filter(([, count]) => count !== 1)).toEqual([]);
    expect(await balancesOf(sql, accounts)).toEqual(expectedBalances(START, accounts, ops));
    expect(await ledgerViolations(sql)).toEqual([]);
    report('many-instances-load', {
      operations: ops.length,
      instances: 3,
      attempts: stats.attempts,
      violations: 0,
    });
  });
});
