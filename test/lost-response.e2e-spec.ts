import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { ledgerViolations } from './support/invariants.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { type ApiClient, startTestApp, type TestApp } from './support/test-app.js';

let t: TestApp;
let api: ApiClient;
let proxy: TcpProxy;

beforeAll(async () => {
  t = await startTestApp();
  api = await t.merchant();
  proxy = await TcpProxy.start(Number(new URL(t.baseUrl).port));
});
afterEach(async () => expect(await ledgerViolations(t.db)).toEqual([]));
afterAll(async () => {
  await proxy.stop();
  await t.close();
});

function chargeThroughProxy(accountId: string, key: string) {
  return fetch(`http://127.0.0.1:${proxy.port}/charges`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${api.apiKey}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': key,
      Connection: 'close',
    },
    body: JSON.stringify({ accountId, amount: 1_234, currency: 'USD' }),
  });
}

describe('lost response', () => {
  it('replays the charge to a client whose first response was lost in the network, and debits once', async () => {
    const account = await api.fundedAccount(10_000);
    const key = 'lost-response-retry-1';

    proxy.mode = 'drop-response';
    await expect(chargeThroughProxy(account, key)).rejects.toThrow();
    expect(proxy.dropped).toBe(1);

    // The client saw only a network error; the server had committed the charge.
    expect(await api.balance(account)).toBe(10_000 - 1_234);

    proxy.mode = 'forward';
    const retry = await chargeThroughProxy(account, key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    const charge = await retry.json();
    expect(charge).toMatchObject({ object: 'charge', amount: 1_234, status: 'succeeded' });

    expect(await api.balance(account)).toBe(10_000 - 1_234);
    const { rows } = await t.db.query(
      'SELECT count(*)::int AS charges FROM charges WHERE account_id = $1',
      [account],
    );
    expect(rows[0].charges).toBe(1);
  });
});
