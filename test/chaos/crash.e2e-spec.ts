import { beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { type ApiProcess, startApi } from '../../tools/api-process.js';
import { freePort } from '../../src/common/free-port.js';
import { useTestDatabase } from '../support/databases.js';
import { slowCharges, untilAdvisoryLocks } from '../support/db-faults.js';
import { DEMO_API_KEY, demoFundedAccount, demoPost } from '../support/demo-merchant.js';
import { ledgerViolations } from '../support/invariants.js';
import {
  balancesOf,
  expectExactlyOnce,
  ITERATIONS,
  plan,
  random,
  report,
  sendAll,
} from './chaos-support.js';

/**
 * kill -9 of the API process: the transaction dies with its connection, so a
 * retry must execute exactly once. The app runs as a child process on a database
 * of its own; originals are made slow by a trigger in that database.
 */
const db = useTestDatabase();
beforeAll(() => slowCharges(db.sql, { 4242: 3 }));

const api = (env: Record<string, string> = {}, port?: number): Promise<ApiProcess> =>
  startApi({ env: { DATABASE_URL: db.url, ...env }, port });

describe('crash mid-transaction', () => {
  it('kill -9 while a charge is inside its transaction: nothing is applied, the key is free, and the retry debits once', async () => {
    let app = await api();
    const account = await demoFundedAccount(app.url, 10_000);
    const key = randomUUID();

    const lost = demoPost(
      app.url,
      '/charges',
      { accountId: account, amount: 4242, currency: 'USD' },
      key,
    ).catch(() => 'connection lost');
    // the charge holds its key, mid-transaction
    expect(await untilAdvisoryLocks(db.sql, (n) => n > 0)).toBe(1);
    app.child.kill('SIGKILL');
    expect(await lost).toBe('connection lost');

    // PostgreSQL notices the dead connection and rolls the transaction back.
    expect(await untilAdvisoryLocks(db.sql, (n) => n === 0)).toBe(0);
    expect((await balancesOf(db.sql, [account]))[account]).toBe(10_000);

    app = await api();
    const retry = await demoPost(
      app.url,
      '/charges',
      { accountId: account, amount: 4242, currency: 'USD' },
      key,
    );
    const again = await demoPost(
      app.url,
      '/charges',
      { accountId: account, amount: 4242, currency: 'USD' },
      key,
    );

    expect(retry.status).toBe(201);
    expect(retry.replayed).toBe(false);
    expect(again.replayed).toBe(true);
    expect((await balancesOf(db.sql, [account]))[account]).toBe(10_000 - 4242);
    expect(await ledgerViolations(db.sql)).toEqual([]);
    app.child.kill('SIGTERM');
    await app.exited();
  }, 60_000);

  it('kill -9 at random moments under a mixed load, several times in a row: every operation still executes exactly once', async () => {
    const rng = random();
    const port = await freePort();
    let app = await api({}, port);
    const START = 1_000_000;
    const accounts: string[] = [];
    for (let i = 0; i < 8; i++) accounts.push(await demoFundedAccount(app.url, START));
    const ops = plan(accounts, 150 * ITERATIONS, rng);

    let done = false;
    const load = sendAll(ops, {
      clients: 6,
      baseUrl: () => `http://127.0.0.1:${port}`, // the same port across restarts
      apiKey: DEMO_API_KEY,
      deadlineMs: 120_000,
    }).finally(() => (done = true));
    let kills = 0;
    const wanted = 3 * ITERATIONS;
    while (!done && kills < wanted) {
      await new Promise((r) => setTimeout(r, 150 + rng() * 400)); // a random moment under load
      if (done) break;
      app.child.kill('SIGKILL');
      await app.exited();
      kills++;
      app = await api({}, port);
    }
    const { results, stats } = await load;

    expect(kills).toBeGreaterThan(0);
    expect(results.every((r) => r.status === 201)).toBe(true);
    await expectExactlyOnce(db.sql, ops, accounts, { start: START });
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
