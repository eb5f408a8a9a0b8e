import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { ledgerViolations } from '../support/invariants.js';
import { FaultyProxy } from '../../tools/faulty-proxy.js';
import { appDatabaseUrl, onPort } from '../support/databases.js';
import { useTestApp } from '../support/test-app.js';
import {
  expectExactlyOnce,
  ITERATIONS,
  newStats,
  plan,
  pool,
  random,
  report,
  sendAll,
} from './chaos-support.js';

// The app reaches its database through a proxy: stopping the proxy is an outage
// (open connections cut, new ones refused); starting it again is the recovery.
// Registered first, so that the proxy is up before useTestApp's beforeAll starts the app.
let dbProxy: FaultyProxy;
beforeAll(async () => {
  dbProxy = await FaultyProxy.start(Number(new URL(appDatabaseUrl('postgres')).port));
});
const t = useTestApp({
  appDatabaseUrl: (url) => onPort(url, dbProxy.port),
});
afterAll(() => dbProxy.stop());

describe('database outage', () => {
  it('answers 503 with Retry-After while the database is down, never hangs, recovers by itself, and half-applies nothing', async () => {
    const rng = random();
    const START = 1_000_000;
    const accounts: string[] = [];
    for (let i = 0; i < 6; i++) accounts.push(await t.api.fundedAccount(START));
    const ops = plan(accounts, 150 * ITERATIONS, rng);
    const stats = newStats(); // read while the load runs
    let completed = 0;

    const load = sendAll(ops, {
      clients: 6,
      baseUrl: () => t.baseUrl,
      apiKey: t.api.apiKey,
      stats,
      timeoutMs: 10_000,
      onAnswer: () => completed++,
    });
    while (completed < ops.length / 4) await new Promise((r) => setTimeout(r, 5));

    await dbProxy.stop(); // outage
    const during = await fetch(`${t.baseUrl}/charges`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${t.api.apiKey}`,
        'Content-Type': 'application/json',
        'Idempotency-Key': randomUUID(),
      },
      body: JSON.stringify({ accountId: accounts[0], amount: 1, currency: 'USD' }),
    });
    const health = await fetch(`${t.baseUrl}/health`);
    while (stats.unavailable < 10) await new Promise((r) => setTimeout(r, 5));
    await dbProxy.listen(); // recovery

    const { results } = await load;
    expect(during.status).toBe(503);
    expect(during.headers.get('retry-after')).toBe('1');
    expect(during.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(health.status).toBe(503);
    expect(stats.statuses[500]).toBeUndefined();
    expect(results.every((r) => r.status === 201)).toBe(true);
    expect((await fetch(`${t.baseUrl}/health`)).status).toBe(200);

    await expectExactlyOnce(t.db, ops, accounts, { start: START });
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
    const stormAccount = await t.api.fundedAccount(10_000);
    const other = await t.merchant('Bystander');
    const otherAccount = await other.fundedAccount(100_000);
    const key = randomUUID();

    const storm = Array.from({ length: 500 }, () =>
      fetch(`${t.baseUrl}/charges`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${t.api.apiKey}`,
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
    expect(await t.api.balance(stormAccount)).toBe(9_000);
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
