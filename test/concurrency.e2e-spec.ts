import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { useTestApp } from './support/test-app.js';

const t = useTestApp();

/** POST /charges with fetch, so that many requests are really in flight at once. */
async function charge(accountId: string, amount: number, key: string) {
  const res = await fetch(`${t.baseUrl}/charges`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${t.api.apiKey}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': key,
    },
    body: JSON.stringify({ accountId, amount, currency: 'USD' }),
  });
  return {
    status: res.status,
    replayed: res.headers.get('idempotent-replayed') === 'true',
    retryAfter: res.headers.get('retry-after'),
    body: await res.text(),
  };
}

describe('concurrent duplicates', () => {
  it('executes 50 simultaneous identical requests once; the others replay it or get 409 with Retry-After', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();

    const results = await Promise.all(
      Array.from({ length: 50 }, () => charge(account, 1_000, key)),
    );

    const executed = results.filter((r) => r.status === 201 && !r.replayed);
    const replayed = results.filter((r) => r.status === 201 && r.replayed);
    const inUse = results.filter((r) => r.status === 409);
    expect(executed).toHaveLength(1);
    expect(replayed.length + inUse.length).toBe(49);
    for (const r of replayed) expect(r.body).toBe(executed[0].body);
    for (const r of inUse) {
      expect(r.retryAfter).toBe('1');
      expect(JSON.parse(r.body).type).toBe('/problems/idempotency-key-in-use');
    }
    expect(await t.api.balance(account)).toBe(9_000);
    const { rows } = await t.db.query(
      'SELECT count(*)::int AS n FROM charges WHERE account_id = $1',
      [account],
    );
    expect(rows[0].n).toBe(1);
  });
});

describe('oversubscribed balance', () => {
  it('lets exactly the affordable 100 of 120 concurrent distinct charges succeed, and the balance ends at 0', async () => {
    const account = await t.api.fundedAccount(10_000);

    const results = await Promise.all(
      Array.from({ length: 120 }, () => charge(account, 100, randomUUID())),
    );

    expect(results.filter((r) => r.status === 201)).toHaveLength(100);
    expect(results.filter((r) => r.status === 402)).toHaveLength(20);
    expect(await t.api.balance(account)).toBe(0);
    const { rows } = await t.db.query(
      `SELECT status, count(*)::int AS n FROM charges WHERE account_id = $1 GROUP BY status ORDER BY status`,
      [account],
    );
    expect(rows).toEqual([
      { status: 'failed', n: 20 },
      { status: 'succeeded', n: 100 },
    ]);
  });
});
