import { beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createSequence, inject, slowCharges, untilAdvisoryLocks } from './support/db-faults.js';
import { useTestApp, type ApiClient } from './support/test-app.js';

/**
 * Prefer: wait=N (contract §4.8). The app runs with a pool of only 2 connections,
 * so a waiting request that held one would starve everyone else. Originals are
 * made slow by triggers in this test database (pg_sleep), not by test code in the app.
 */
const t = useTestApp({ env: { DB_POOL_SIZE: '2' } });

beforeAll(async () => {
  await slowCharges(t.db, { 777: 1.5, 778: 3, 780: 2 });
  // 779: the original fails after a second, once; its retry then goes through.
  await createSequence(t.db, 'rollback_once');
  await inject(
    t.db,
    `CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.amount = 779 AND nextval('rollback_once') = 1 THEN
        PERFORM pg_sleep(1);
        RAISE EXCEPTION 'the original fails after a while';
      END IF;
      RETURN NEW;
    END $$`,
    'CREATE TRIGGER fail_once BEFORE INSERT ON charges FOR EACH ROW EXECUTE FUNCTION fail_once()',
  );
});

function charge(
  client: ApiClient,
  accountId: string,
  amount: number,
  key: string,
  prefer?: string,
) {
  return fetch(`${t.baseUrl}/charges`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${client.apiKey}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': key,
      ...(prefer ? { Prefer: prefer } : {}),
    },
    body: JSON.stringify({ accountId, amount, currency: 'USD' }),
  }).then(async (res) => ({
    status: res.status,
    replayed: res.headers.get('idempotent-replayed') === 'true',
    preferenceApplied: res.headers.get('preference-applied'),
    body: await res.text(),
  }));
}

/** Polls until some transaction of the app holds an advisory lock: the original has claimed its key. */
async function untilKeyClaimed(): Promise<void> {
  if ((await untilAdvisoryLocks(t.db, (n) => n > 0, 200)) === 0) {
    throw new Error('the original never claimed its key');
  }
}

describe('Prefer: wait', () => {
  it('answers a duplicate with the replay of a slow original, and says the preference was applied', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();

    const original = charge(t.api, account, 777, key);
    await untilKeyClaimed();
    const waiter = await charge(t.api, account, 777, key, 'wait=5');
    const first = await original;

    expect(first.status).toBe(201);
    expect(waiter.status).toBe(201);
    expect(waiter.replayed).toBe(true);
    expect(waiter.preferenceApplied).toBe('wait=5');
    expect(waiter.body).toBe(first.body);
    expect(await t.api.balance(account)).toBe(10_000 - 777);
  });

  it('answers 409 when the original outlasts the wait', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();

    const original = charge(t.api, account, 778, key);
    await untilKeyClaimed();
    const waiter = await charge(t.api, account, 778, key, 'wait=1');

    expect(waiter.status).toBe(409);
    expect(waiter.preferenceApplied).toBe('wait=1');
    expect(JSON.parse(waiter.body).type).toBe('/problems/idempotency-key-in-use');
    expect((await original).status).toBe(201);
    expect(await t.api.balance(account)).toBe(10_000 - 778);
  });

  it('executes the waiting request itself when the original rolled back', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();

    const original = charge(t.api, account, 779, key);
    await untilKeyClaimed();
    const waiter = await charge(t.api, account, 779, key, 'wait=5');

    expect((await original).status).toBe(500);
    expect(waiter.status).toBe(201);
    expect(waiter.replayed).toBe(false);
    expect(waiter.preferenceApplied).toBe('wait=5');
    expect(await t.api.balance(account)).toBe(10_000 - 779);
  });

  it('holds no connection while waiting: 20 waiters on a pool of 2, and another merchant is served meanwhile', async () => {
    const account = await t.api.fundedAccount(10_000);
    const other = await t.merchant('Other');
    const key = randomUUID();

    let originalDone = false;
    const original = charge(t.api, account, 780, key).finally(() => (originalDone = true));
    await untilKeyClaimed();
    const waiters = Array.from({ length: 20 }, () => charge(t.api, account, 780, key, 'wait=8'));

    const meanwhile = await other.get('/accounts');
    const servedWhileOriginalRan = !originalDone;

    expect(meanwhile.status).toBe(200);
    expect(servedWhileOriginalRan).toBe(true);
    const results = await Promise.all(waiters);
    expect(results.map((r) => [r.status, r.replayed])).toEqual(
      Array.from({ length: 20 }, () => [201, true]),
    );
    expect((await original).status).toBe(201);
    expect(await t.api.balance(account)).toBe(10_000 - 780);
  });
});
