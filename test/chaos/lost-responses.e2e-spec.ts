import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { ledgerViolations } from '../support/invariants.js';
import { type ApiClient, startTestApp, type TestApp } from '../support/test-app.js';
import {
  balancesOf,
  executionsPerOperation,
  expectedBalances,
  FaultyProxy,
  ITERATIONS,
  newStats,
  type Operation,
  plan,
  pool,
  random,
  report,
  sendWithRetries,
} from './chaos-support.js';

let t: TestApp;
let api: ApiClient;
let proxy: FaultyProxy;
const rng = random();

beforeAll(async () => {
  t = await startTestApp();
  api = await t.merchant();
  proxy = await new FaultyProxy(Number(new URL(t.baseUrl).port), rng).start();
});
afterAll(async () => {
  await proxy.stop();
  await t.close();
});

describe('lost responses', () => {
  it('executes every charge, deposit and refund exactly once through a network that drops, cuts and delays responses', async () => {
    const START = 1_000_000;
    const accounts: string[] = [];
    for (let i = 0; i < 10; i++) accounts.push(await api.fundedAccount(START));
    const ops = plan(accounts, 300 * ITERATIONS, rng);
    const stats = newStats();
    const via = () => `http://127.0.0.1:${proxy.port}`;

    // Phase 1: charges and deposits, 8 clients at a time, every one through the proxy.
    const results = await pool(ops, 8, (op) => sendWithRetries(via, api.apiKey, op, stats));
    expect(results.every((r) => r.status === 201)).toBe(true);

    // Phase 2: a partial refund of every fifth charge, through the same network.
    const charges = ops.filter((op) => op.path === '/charges');
    const chargeIds = new Map(
      charges.map((op) => [op.key, results[ops.indexOf(op)]?.body.id as string] as const),
    );
    const refunds: Operation[] = charges
      .filter((_, i) => i % 5 === 0)
      .map((op) => ({
        key: `chaos-refund-${randomUUID()}`,
        method: 'POST',
        path: `/charges/${chargeIds.get(op.key)}/refunds`,
        body: { amount: Math.max(1, Math.floor((op.body.amount as number) / 2)) },
      }));
    const refundResults = await pool(refunds, 8, (op) =>
      sendWithRetries(via, api.apiKey, op, stats),
    );
    expect(refundResults.every((r) => r.status === 201)).toBe(true);

    // Exactly once: one record per operation, balances as planned, books sound.
    const executions = await executionsPerOperation(t.db, ops);
    expect(Object.entries(executions).filter(([, n]) => n !== 1)).toEqual([]);
    const refundRows = await t.db.query<{ charge_id: string; n: number; total: string }>(
      'SELECT charge_id, count(*)::int AS n, sum(amount) AS total FROM refunds GROUP BY charge_id',
    );
    expect(refundRows.rows).toHaveLength(refunds.length);
    expect(refundRows.rows.every((r) => r.n === 1)).toBe(true);
    const expected = expectedBalances(START, accounts, ops);
    for (const op of refunds) {
      const charge = charges.find((c) => op.path.includes(chargeIds.get(c.key)!))!;
      expected[charge.body.accountId as string] += op.body.amount as number;
    }
    expect(await balancesOf(t.db, accounts)).toEqual(expected);
    expect(await ledgerViolations(t.db)).toEqual([]);

    const faults = Object.values(proxy.injected).reduce((a, b) => a + b, 0) - proxy.injected.none;
    expect(faults).toBeGreaterThan(0);
    expect(stats.networkErrors).toBeGreaterThan(0);
    report('lost-responses', {
      operations: ops.length + refunds.length,
      attempts: stats.attempts,
      retries: stats.retries,
      faults: proxy.injected,
      networkErrorsSeen: stats.networkErrors,
      replays: stats.replays,
      inUse409: stats.inUse,
      violations: 0,
    });
  }, 180_000);
});
