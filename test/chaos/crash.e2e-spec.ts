import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import {
  type ChildApp,
  freePort,
  killChildren,
  scratchDatabase,
  startChildApp,
} from '../support/child-app.js';
import { ledgerViolations } from '../support/invariants.js';
import { slowCharges, untilAdvisoryLocks } from '../support/db-faults.js';
import { testPool } from '../support/test-pool.js';
import {
  balancesOf,
  executionsPerOperation,
  expectedBalances,
  ITERATIONS,
  newStats,
  plan,
  pool,
  random,
  report,
  sendWithRetries,
} from './chaos-support.js';

/**
 * kill -9 of the API process: the transaction dies with its connection, so a
 * retry must execute exactly once. The app runs as a child process on a database
 * of its own; originals are made slow by a trigger in that database.
 */
let db: { url: string; drop(): Promise<void> };
let sql: pg.Pool;

beforeAll(async () => {
  db = await scratchDatabase('crash');
  sql = testPool(db.url, 2);
  await slowCharges(sql, { 4242: 3 });
});
afterAll(async () => {
  killChildren();
  await sql.end();
  await db.drop();
});

const demo = 'sk_test_demo';

async function post(app: ChildApp, path: string, body: object, key?: string) {
  const res = await fetch(`http://127.0.0.1:${app.port}${path}`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${demo}`,
      'Content-Type': 'application/json',
      ...(key ? { 'Idempotency-Key': key } : {}),
    },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    replayed: res.headers.get('idempotent-replayed') === 'true',
    body: (await res.json()) as Record<string, unknown>,
  };
}

async function fundedAccount(app: ChildApp, balance: number): Promise<string> {
  const account = await post(app, '/accounts', { name: 'crash', currency: 'USD' });
  await post(
    app,
    `/accounts/${account.body.id as string}/deposits`,
    { amount: balance, currency: 'USD' },
    randomUUID(),
  );
  return account.body.id as string;
}

describe('crash mid-transaction', () => {
  it('kill -9 while a charge is inside its transaction: nothing is applied, the key is free, and the retry debits once', async () => {
    let app = await startChildApp({ DATABASE_URL: db.url });
    const account = await fundedAccount(app, 10_000);
    const key = randomUUID();

    const lost = post(
      app,
      '/charges',
      { accountId: account, amount: 4242, currency: 'USD' },
      key,
    ).catch(() => 'connection lost');
    // the charge holds its key, mid-transaction
    expect(await untilAdvisoryLocks(sql, (n) => n > 0)).toBe(1);
    app.child.kill('SIGKILL');
    expect(await lost).toBe('connection lost');

    // PostgreSQL notices the dead connection and rolls the transaction back.
    expect(await untilAdvisoryLocks(sql, (n) => n === 0)).toBe(0);
    expect((await balancesOf(sql, [account]))[account]).toBe(10_000);

    app = await startChildApp({ DATABASE_URL: db.url });
    const retry = await post(
      app,
      '/charges',
      { accountId: account, amount: 4242, currency: 'USD' },
      key,
    );
    const again = await post(
      app,
      '/charges',
      { accountId: account, amount: 4242, currency: 'USD' },
      key,
    );

    expect(retry.status).toBe(201);
    expect(retry.replayed).toBe(false);
    expect(again.replayed).toBe(true);
    expect((await balancesOf(sql, [account]))[account]).toBe(10_000 - 4242);
    expect(await ledgerViolations(sql)).toEqual([]);
    app.child.kill('SIGTERM');
    await app.exited();
  }, 60_000);

  it('kill -9 at random moments under a mixed load, several times in a row: every operation still executes exactly once', async () => {
    const rng = random();
    const port = await freePort();
    let app = await startChildApp({ DATABASE_URL: db.url }, port);
    const START = 1_000_000;
    const accounts: string[] = [];
    for (let i = 0; i < 8; i++) accounts.push(await fundedAccount(app, START));
    const ops = plan(accounts, 150 * ITERATIONS, rng);
    const stats = newStats();

    let done = false;
    const load = pool(ops, 6, (op) =>
      sendWithRetries(() => `http://127.0.0.1:${port}`, demo, op, stats, { deadlineMs: 120_000 }),
    ).finally(() => (done = true));
    let kills = 0;
    const wanted = 3 * ITERATIONS;
    while (!done && kills < wanted) {
      await new Promise((r) => setTimeout(r, 150 + rng() * 400)); // a random moment under load
      if (done) break;
      app.child.kill('SIGKILL');
      await app.exited();
      kills++;
      app = await startChildApp({ DATABASE_URL: db.url }, port);
    }
    const results = await load;

    expect(kills).toBeGreaterThan(0);
    expect(results.every((r) => r.status === 201)).toBe(true);
    const executions = await executionsPerOperation(sql, ops);
    expect(Object.entries(executions).filter(([, n]) => n !== 1)).toEqual([]);
    expect(await balancesOf(sql, accounts)).toEqual(expectedBalances(START, accounts, ops));
    expect(await ledgerViolations(sql)).toEqual([]);
    report('crashes', {
      operations: ops.length,
      kills,
      attempts: stats.attempts,
      retries: stats.retries,
      networkErrorsSeen: stats.networkErrors,
      unavailable503: stats.unavailable,
      replays: stats.replays,
      violations: 0,
    });
    app.child.kill('SIGTERM');
    await app.exited();
  }, 180_000);
});
