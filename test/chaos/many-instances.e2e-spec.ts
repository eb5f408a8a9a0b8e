import { beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { type ApiProcess, startApi } from '../../tools/api-process.js';
import { MIGRATIONS } from '../../src/database/data-source.js';
import { useTestDatabase } from '../support/databases.js';
import { DEMO_API_KEY, demoPost } from '../support/demo-merchant.js';
import { ledgerViolations } from '../support/invariants.js';
import {
  balancesOf,
  expectExactlyOnce,
  ITERATIONS,
  newStats,
  type Operation,
  plan,
  random,
  report,
  sendAll,
  sendWithRetries,
} from './chaos-support.js';

/** Three API processes on one database: nothing in process memory decides idempotency. */
const db = useTestDatabase({ migrated: false });
let apps: ApiProcess[];

beforeAll(async () => {
  // Started together on an empty database: their migrations must take turns.
  apps = await Promise.all([1, 2, 3].map(() => startApi({ env: { DATABASE_URL: db.url } })));
}, 60_000);

const url = (i: number) => apps[i % apps.length].url;

/** An account created on one instance and funded through another. */
async function fundedAccount(balance: number): Promise<string> {
  const account = await demoPost(url(0), '/accounts', { name: 'multi', currency: 'USD' });
  const id = account.body.id as string;
  await demoPost(
    url(1),
    `/accounts/${id}/deposits`,
    { amount: balance, currency: 'USD' },
    randomUUID(),
  );
  return id;
}

describe('many instances', () => {
  it('migrated the database once although three instances started together', async () => {
    const { rows } = await db.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM migrations');
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
      Array.from({ length: 30 }, (_, i) => sendWithRetries(() => url(i), DEMO_API_KEY, op, stats)),
    );

    expect(results.filter((r) => r.status === 201 && !r.replayed)).toHaveLength(1);
    expect(results.filter((r) => r.status === 201 && r.replayed)).toHaveLength(29);
    expect((await balancesOf(db.sql, [account]))[account]).toBe(9_000);
    expect(await ledgerViolations(db.sql)).toEqual([]);
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

    const { results, stats } = await sendAll(ops, {
      clients: 9,
      baseUrl: url,
      apiKey: DEMO_API_KEY,
    });

    expect(results.every((r) => r.status === 201)).toBe(true);
    await expectExactlyOnce(db.sql, ops, accounts, { start: START });
    report('many-instances-load', {
      operations: ops.length,
      instances: 3,
      attempts: stats.attempts,
      violations: 0,
    });
  });
});
