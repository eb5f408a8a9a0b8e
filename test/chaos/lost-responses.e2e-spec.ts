import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { FaultyProxy } from '../../tools/faulty-proxy.js';
import { useTestApp } from '../support/test-app.js';
import {
  expectedBalances,
  expectExactlyOnce,
  ITERATIONS,
  newStats,
  type Operation,
  plan,
  random,
  report,
  sendAll,
} from './chaos-support.js';

const t = useTestApp();
let proxy: FaultyProxy;
const rng = random();

beforeAll(async () => {
  proxy = await FaultyProxy.start(Number(new URL(t.baseUrl).port), { fault: 'random', rng });
});
afterAll(() => proxy.stop());

describe('lost responses', () => {
  it('executes every charge, deposit and refund exactly once through a network that drops, cuts and delays responses', async () => {
    const START = 1_000_000;
    const accounts: string[] = [];
    for (let i = 0; i < 10; i++) accounts.push(await t.api.fundedAccount(START));
    const ops = plan(accounts, 300 * ITERATIONS, rng);
    const stats = newStats();
    const via = () => `http://127.0.0.1:${proxy.port}`;

    // Phase 1: charges and deposits, 8 clients at a time, every one through the proxy.
    const { results } = await sendAll(ops, {
      clients: 8,
      baseUrl: via,
      apiKey: t.api.apiKey,
      stats,
    });
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
    const refunded = await sendAll(refunds, {
      clients: 8,
      baseUrl: via,
      apiKey: t.api.apiKey,
      stats,
    });
    expect(refunded.results.every((r) => r.status === 201)).toBe(true);

    // Exactly once: one record per operation and per refund, balances as planned, books sound.
    const refundRows = await t.db.query<{ charge_id: string; n: number }>(
      'SELECT charge_id, count(*)::int AS n FROM refunds GROUP BY charge_id',
    );
    expect(refundRows.rows).toHaveLength(refunds.length);
    expect(refundRows.rows.every((r) => r.n === 1)).toBe(true);
    const expected = expectedBalances(START, accounts, ops);
    for (const op of refunds) {
      const charge = charges.find((c) => op.path.includes(chargeIds.get(c.key)!))!;
      expected[charge.body.accountId as string] += op.body.amount as number;
    }
    await expectExactlyOnce(t.db, ops, accounts, { start: START, expected });

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
