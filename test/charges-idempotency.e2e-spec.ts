import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { requestFingerprint } from '../src/idempotency/fingerprint.js';
import { inject, nodeOf } from './support/db-faults.js';
import { useTestApp } from './support/test-app.js';

const t = useTestApp();

const count = async (sql: string, params: unknown[]) =>
  Number((await t.db.query<{ n: string }>(sql, params)).rows[0].n);

describe('first call', () => {
  it('debits the account, answers 201 with the charge and a Location, and is not marked replayed', async () => {
    const account = await t.api.fundedAccount(10_000);

    const res = await t.api.charge(account, 2_500, randomUUID(), {
      description: 'Coffee',
      metadata: { order: '42' },
    });

    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['idempotent-replayed']).toBeUndefined();
    expect(res.headers.location).toBe(`/charges/${res.body.id}`);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^ch_[0-9A-Z]{26}$/),
      object: 'charge',
      accountId: account,
      amount: 2_500,
      currency: 'USD',
      description: 'Coffee',
      metadata: { order: '42' },
      status: 'succeeded',
      amountRefunded: 0,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    expect(await t.api.balance(account)).toBe(7_500);
    const got = await t.api.get(`/charges/${res.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(res.body);
  });
});

describe('replay', () => {
  it('stores and replays keys and bodies full of quotes, backslashes and SQL byte for byte', async () => {
    // Input that breaks any SQL built by pasting text: the key and the stored
    // response must come back exactly as they went in.
    const account = await t.api.fundedAccount(10_000);
    const key = `k'\\'';--"$1${randomUUID()}\\`;
    const description = "O'Brien \\ 'quoted' \\' ); DROP TABLE charges; -- €ü😀";
    const metadata = { "it's": 'a\\b', q: "'';", e: "E'\\x41'" };

    const first = await t.api.charge(account, 100, key, { description, metadata });
    const retry = await t.api.charge(account, 100, key, { description, metadata });

    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ description, metadata });
    expect(retry.status).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.text).toBe(first.text);
    expect(await t.api.balance(account)).toBe(9_900);
    const stored = await t.db.query<{ key: string; response_body: string }>(
      'SELECT key, response_body FROM idempotency_keys WHERE key = $1',
      [key],
    );
    expect(stored.rows).toEqual([{ key, response_body: first.text }]);
  });

  it('answers a retry with the stored response: same status, byte-identical body, same Location, Idempotent-Replayed: true', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();

    const first = await t.api.charge(account, 1_000, key);
    const retry = await t.api.charge(account, 1_000, key);

    expect(retry.status).toBe(first.status);
    expect(retry.text).toBe(first.text);
    expect(retry.headers.location).toBe(first.headers.location);
    expect(retry.headers['content-type']).toBe(first.headers['content-type']);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await t.api.balance(account)).toBe(9_000);
    expect(await count('SELECT count(*) AS n FROM charges WHERE account_id = $1', [account])).toBe(
      1,
    );
  });

  it('treats the bare and the quoted (sf-string) form of a key as the same key', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = `order-${randomUUID()}`;

    const bare = await t.api.charge(account, 700, key);
    const quoted = await t.api.charge(account, 700, `"${key}"`);

    expect(bare.status).toBe(201);
    expect(quoted.status).toBe(201);
    expect(quoted.headers['idempotent-replayed']).toBe('true');
    expect(quoted.text).toBe(bare.text);
    expect(await t.api.balance(account)).toBe(9_300);
  });

  it('ignores key order and white space in the body when matching a retry', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();
    await t.api.charge(account, 300, key, { metadata: { a: '1', b: '2' } });

    const reordered = await t.api
      .post('/charges', undefined, key)
      .set('Content-Type', 'application/json')
      .send(
        `{ "metadata": {"b":"2","a":"1"},\n "currency": "USD", "amount": 300, "accountId": "${account}" }`,
      );

    expect(reordered.status).toBe(201);
    expect(reordered.headers['idempotent-replayed']).toBe('true');
    expect(await t.api.balance(account)).toBe(9_700);
  });

  it('replays a 402 insufficient-funds even after a later deposit would have covered it', async () => {
    const account = await t.api.fundedAccount(100);
    const key = randomUUID();

    const first = await t.api.charge(account, 500, key);
    await t.api.deposit(account, 1_000);
    const retry = await t.api.charge(account, 500, key);

    expect(first.status).toBe(402);
    expect(first.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(first.body).toMatchObject({
      type: '/problems/insufficient-funds',
      status: 402,
      chargeId: expect.stringMatching(/^ch_/),
    });
    expect(retry.status).toBe(402);
    expect(retry.text).toBe(first.text);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await t.api.balance(account)).toBe(1_100);
    const failed = await t.api.get(`/charges/${first.body.chargeId}`);
    expect(failed.body).toMatchObject({
      status: 'failed',
      failureCode: 'insufficient_funds',
      amount: 500,
    });
  });

  it('replays a deposit, crediting the account once', async () => {
    const account = await t.api.createAccount();
    const key = randomUUID();
    const body = { amount: 5_000, currency: 'USD', description: 'Top-up' };

    const first = await t.api.post(`/accounts/${account}/deposits`, body, key);
    const retry = await t.api.post(`/accounts/${account}/deposits`, body, key);

    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ object: 'deposit', accountId: account, amount: 5_000 });
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.text).toBe(first.text);
    expect(await t.api.balance(account)).toBe(5_000);
  });

  it('replays an account creation sent with a key, creating one account', async () => {
    const key = randomUUID();
    const first = await t.api.post('/accounts', { name: 'Once', currency: 'EUR' }, key);
    const retry = await t.api.post('/accounts', { name: 'Once', currency: 'EUR' }, key);

    expect(first.status).toBe(201);
    expect(first.headers.location).toBe(`/accounts/${first.body.id}`);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.headers.location).toBe(first.headers.location);
    expect(await count(`SELECT count(*) AS n FROM accounts WHERE name = 'Once'`, [])).toBe(1);
  });
});

describe('mismatch', () => {
  it('refuses the same key with a different body: 422 idempotency-key-reused, nothing executes', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();
    await t.api.charge(account, 1_000, key);

    const res = await t.api.charge(account, 1_001, key);

    expect(res.status).toBe(422);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.type).toBe('/problems/idempotency-key-reused');
    expect(await t.api.balance(account)).toBe(9_000);
  });

  it('refuses the same key on a different path: 422, nothing executes', async () => {
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();
    await t.api.post(`/accounts/${account}/deposits`, { amount: 1_000, currency: 'USD' }, key);

    const res = await t.api.charge(account, 1_000, key);

    expect(res.status).toBe(422);
    expect(res.body.type).toBe('/problems/idempotency-key-reused');
    expect(await t.api.balance(account)).toBe(11_000);
  });
});

describe('key required and well-formed', () => {
  it('answers 400 idempotency-key-missing on a charge without a key, and moves nothing', async () => {
    const account = await t.api.fundedAccount(1_000);
    const res = await t.api.charge(account, 100, undefined);

    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/idempotency-key-missing');
    expect(await t.api.balance(account)).toBe(1_000);
  });

  it('answers 400 idempotency-key-missing on a deposit without a key', async () => {
    const account = await t.api.createAccount();
    const res = await t.api.post(`/accounts/${account}/deposits`, { amount: 1, currency: 'USD' });
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/idempotency-key-missing');
  });

  it.each([
    ['an empty sf-string', '""'],
    ['256 characters', 'k'.repeat(256)],
    ['a space inside quotes', '"a b"'],
    ['an unterminated quote', '"abc'],
    ['a bad escape', '"a\\nb"'],
    ['a non-ASCII character', 'clé'],
    ['parameters after the string', '"abc";x=1'],
  ])('answers 400 idempotency-key-invalid for %s', async (_, key) => {
    const account = await t.api.fundedAccount(1_000);
    const res = await t.api.charge(account, 100, key);
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/idempotency-key-invalid');
    expect(await t.api.balance(account)).toBe(1_000);
  });

  it('does not consume the key when validation fails: the corrected request with the same key executes', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();

    const bad = await t.api.post(
      '/charges',
      { accountId: account, amount: 1.5, currency: 'USD' },
      key,
    );
    const good = await t.api.charge(account, 100, key);

    expect(bad.status).toBe(400);
    expect(bad.body.type).toBe('/problems/validation-failed');
    expect(bad.body.errors).toContainEqual({ field: 'amount', message: expect.any(String) });
    expect(good.status).toBe(201);
    expect(good.headers['idempotent-replayed']).toBeUndefined();
    expect(await t.api.balance(account)).toBe(900);
  });
});

describe('business outcomes are stored with the key', () => {
  it('stores a 404 for an unknown account and replays it', async () => {
    const key = randomUUID();
    const first = await t.api.charge('acct_unknown', 100, key);
    const retry = await t.api.charge('acct_unknown', 100, key);
    expect(first.status).toBe(404);
    expect(first.body.type).toBe('/problems/not-found');
    expect(retry.status).toBe(404);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.text).toBe(first.text);
  });

  it('stores a 422 currency-mismatch and leaves the balance alone', async () => {
    const account = await t.api.fundedAccount(1_000, 'EUR');
    const res = await t.api.post(
      '/charges',
      { accountId: account, amount: 100, currency: 'USD' },
      randomUUID(),
    );
    expect(res.status).toBe(422);
    expect(res.body.type).toBe('/problems/currency-mismatch');
    expect(await t.api.balance(account)).toBe(1_000);
  });
});

describe('a key stored by someone else while this request runs', () => {
  it('rolls this request back and replays the stored response (the primary key is the final guard)', async () => {
    // The window: another request with the key commits between our claim and our
    // COMMIT (a writer that does not take the key's lock). Forced here without test code in the app: a trigger makes our charge
    // wait on a lock the test holds; meanwhile the test commits the "winner's" row.
    const account = await t.api.fundedAccount(10_000);
    const key = randomUUID();
    const body = { accountId: account, amount: 667, currency: 'USD' };
    await inject(
      t.db,
      `CREATE FUNCTION hold_charge() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.amount = 667 THEN PERFORM pg_advisory_xact_lock(667); END IF;
        RETURN NEW;
      END $$`,
      `CREATE TRIGGER hold_charge BEFORE INSERT ON charges
        FOR EACH ROW EXECUTE FUNCTION hold_charge()`,
    );
    // The winner's response: a real charge, made before the gate closes.
    const winner = await t.api.charge(account, 667, randomUUID());
    expect(winner.status).toBe(201);
    // The lock is taken where the trigger runs: on Citus, the worker with the shard.
    const gate = new pg.Client({
      connectionString: await nodeOf(t.db, t.databaseUrl, 'charges', t.api.merchantId),
    });
    await gate.connect();
    try {
      await gate.query('BEGIN');
      await gate.query('SELECT pg_advisory_xact_lock(667)');

      const pending = t.api.charge(account, 667, key).then((res) => res);
      await untilWaitingOnLock(gate, 667);
      await t.db.query(
        `INSERT INTO idempotency_keys (merchant_id, key, request_method, request_path, fingerprint,
           response_status, response_content_type, response_body, response_location, expires_at)
         VALUES ($1, $2, 'POST', '/charges', $3, 201, 'application/json', $4, $5,
                 now() + interval '1 hour')`,
        [
          t.api.merchantId,
          key,
          requestFingerprint('POST', '/charges', body),
          winner.text,
          winner.headers.location,
        ],
      );
      await gate.query('COMMIT');
      const res = await pending;

      expect(res.status).toBe(201);
      expect(res.headers['idempotent-replayed']).toBe('true');
      expect(res.text).toBe(winner.text);
      expect(await t.api.balance(account)).toBe(10_000 - 667);
      expect(
        await count('SELECT count(*) AS n FROM charges WHERE account_id = $1', [account]),
      ).toBe(1);
    } finally {
      await gate.end();
      await inject(t.db, 'DROP TRIGGER hold_charge ON charges', 'DROP FUNCTION hold_charge()');
    }
  });
});

/** Polls the gate's node's pg_locks until a session waits for advisory lock `id` (granted = false). */
async function untilWaitingOnLock(gate: pg.Client, id: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await gate.query(
      `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1`,
      [id],
    );
    if (rows.length > 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`nobody waited for advisory lock ${id}`);
}
