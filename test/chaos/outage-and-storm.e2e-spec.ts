import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { ledgerViolations } from '../support/invariants.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { type ApiClient, startTestApp, type TestApp } from '../support/test-app.js';
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

let t: TestApp;
let api: ApiClient;
let dbProxy: TcpProxy;

beforeAll(async () => {
  // The app reaches its database through a proxy: stopping the proxy is an outage
  // (open connections cut, new ones refused); starting it again is the recovery.
  dbProxy = await TcpProxy.start(Number(new URL(process.env.TEST_ADMIN_URL!).port));
  t = await startTestApp({
    appDatabaseUrl: (url) => {
      const u = new URL(url);
      u.port = String(dbProxy.port);
      return u.toString();
    },
  });
  api = await t.merchant();
});
afterAll(async () => {
  await dbProxy.stop();
  await t.close();
});

describe('database outage', () => {
  it('answers 503 with Retry-After while the database is down, never hangs, recovers by itself, and half-applies nothing', async () => {
    const rng = random();
    const START = 1_000_000;
    const accounts: string[] = [];
    for (let i = 0; i < 6; i++) accounts.push(await api.fundedAccount(START));
    const ops = plan(accounts, 150 * ITERATIONS, rng);
    const stats = newStats();
    let completed = 0;

    const load = pool(ops, 6, (op) =>
      sendWithRetries(() => t.baseUrl, api.apiKey, op, stats, { timeoutMs: 10_000 }).finally(
        () => completed++,
      ),
    );
    while (completed < ops.length / 4) await new Promise((r) => setTimeout(r, 5));

    await dbProxy.stop(); // outage
    const during = await fetch(`${t.baseUrl}/charges`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${api.apiKey}`,
        'Content-Type': 'application/json',
        'Idempotency-Key': randomUUID(),
      },
      body: JSON.stringify({ accountId: accounts[0], amount: 1, currency: 'USD' }),
    });
    const health = await fetch(`${t.baseUrl}/health`);
    while (stats.unavailable < 10) await new Promise((r) => setTimeout(r, 5));
    await dbProxy.listen(); // recovery

    const results = await load;
    expect(during.status).toBe(503);
    expect(during.headers.get('retry-after')).toBe('1');
    expect(during.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(health.status).toBe(503);
    expect(stats.statuses[500]).toBeUndefined();
    expect(results.every((r) => r.status === 201)).toBe(true);
    expect((await fetch(`${t.baseUrl}/health`)).status).toBe(200);

    const executions = await executionsPerOperation(t.db, ops);
    expect(Object.entries(executions).filter(([, n]) => n !== 1)).toEqual([]);
    expect(await balancesOf(t.db, accounts)).toEqual(expectedBalances(START, accounts, ops));
    expect(await ledgerViolations(t.db)).toEqual([]);
    report('database-outage', {
      operations: ops.length,
      attempts: stats.attempts,
      unavailable503: stats.unavailable,
      networkErrors: stats.networkErrors,
      replays: stats.replays,
      violations: 0,
    });
  }, 120_000);
});

describe('retry storm', () => {
  it("500 concurrent duplicates of one key cost one execution, and another merchant's requests keep succeeding", async () => {
    const stormAccount = await api.fundedAccount(10_000);
    const other = await t.merchant('Bystander');
    const otherAccount = await other.fundedAccount(100_000);
    const key = randomUUID();

    const storm = Array.from({ length: 500 }, () =>
      fetch(`${t.baseUrl}/charges`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${api.apiKey}`,
          'Content-Type': 'application/json',
          'Idempotency-Key': key,
        },
        body: JSON.stringify({ accountId: stormAccount, amount: 1_000, currency: 'USD' }),
      }).then((r) => ({
        status: r.status,
        replayed: r.headers.get('idempotent-replayed') === 'true',
      })),
    );
    const bystander = await pool(
      Array.from({ length: 50 }, () => randomUUID()),
      5,
      async (k) =>
        (
          await fetch(`${t.baseUrl}/charges`, {
            method: 'POST',
            headers: {
              Authorization: `Bearer ${other.apiKey}`,
              'Content-Type': 'application/json',
              'Idempotency-Key': k,
            },
            body: JSON.stringify({ accountId: otherAccount, amount: 10, currency: 'USD' }),
          })
        ).status,
    );
    const results = await Promise.all(storm);

    expect(bystander).toEqual(Array.from({ length: 50 }, () => 201));
    expect(results.filter((r) => r.status === 201 && !r.replayed)).toHaveLength(1);
    expect(
      results.every((r) => (r.status === 201 && r.replayed) || r.status === 409 || !r.replayed),
    ).toBe(true);
    expect(results.filter((r) => r.status !== 201 && r.status !== 409)).toEqual([]);
    expect(await api.balance(stormAccount)).toBe(9_000);
    expect(await other.balance(otherAccount)).toBe(100_000 - 500);
    expect(await ledgerViolations(t.db)).toEqual([]);
    report('retry-storm', {
      duplicates: 500,
      executed: 1,
      replayed: results.filter((r) => r.replayed).length,
      inUse409: results.filter((r) => r.status === 409).length,
      bystanderRequests: 50,
      bystanderFailures: 0,
    });
  }, 60_000);
});
