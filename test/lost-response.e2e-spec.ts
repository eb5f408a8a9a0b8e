import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { FaultyProxy } from '../tools/faulty-proxy.js';
import { useTestApp } from './support/test-app.js';

const t = useTestApp();
let proxy: FaultyProxy;

beforeAll(async () => {
  proxy = await FaultyProxy.start(Number(new URL(t.baseUrl).port));
});
afterAll(() => proxy.stop());

function chargeThroughProxy(accountId: string, key: string) {
  return fetch(`http://127.0.0.1:${proxy.port}/charges`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${t.api.apiKey}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': key,
      Connection: 'close',
    },
    body: JSON.stringify({ accountId, amount: 1_234, currency: 'USD' }),
  });
}

describe('lost response', () => {
  it('replays the charge to a client whose first response was lost in the network, and debits once', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = 'lost-response-retry-1';

    proxy.fault = 'cut-before-response';
    await expect(chargeThroughProxy(account, key)).rejects.toThrow();
    expect(proxy.injected['cut-before-response']).toBe(1);

    // The client saw only a network error; the server had committed the charge.
    expect(await t.api.balance(account)).toBe(10_000 - 1_234);

    proxy.fault = 'none';
    const retry = await chargeThroughProxy(account, key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    const charge = await retry.json();
    expect(charge).toMatchObject({ object: 'charge', amount: 1_234, status: 'succeeded' });

    expect(await t.api.balance(account)).toBe(10_000 - 1_234);
    const { rows } = await t.db.query(
      'SELECT count(*)::int AS charges FROM charges WHERE account_id = $1',
      [account],
    );
    expect(rows[0].charges).toBe(1);
  });
});
