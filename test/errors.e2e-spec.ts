import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import request from 'supertest';
import { keyLockId } from '../src/idempotency/idempotency.service.js';
import { FaultyProxy } from '../tools/faulty-proxy.js';
import { onPort } from './support/databases.js';
import { useTestApp, startTestApp } from './support/test-app.js';

const t = useTestApp();

/** Every error is RFC 9457 problem+json with a stable code in `type`, and has a request id. */
function expectProblem(res: request.Response, status: number, code: string): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.headers['x-request-id']).toMatch(/^[\x21-\x7e]+$/);
  expect(res.body).toMatchObject({
    type: `/problems/${code}`,
    status,
    title: expect.any(String),
    detail: expect.any(String),
  });
}

describe('400 validation-failed', () => {
  it('lists every invalid field, unknown fields included', async () => {
    const res = await t.api.post(
      '/charges',
      { accountId: 7, amount: '100', currency: 'usd', colour: 'red' },
      randomUUID(),
    );
    expectProblem(res, 400, 'validation-failed');
    const fields = new Set(res.body.errors.map((e: { field: string }) => e.field));
    expect(fields).toEqual(new Set(['accountId', 'amount', 'currency', 'colour']));
  });

  it.each([
    ['a float amount', { amount: 10.5 }],
    ['a zero amount', { amount: 0 }],
    ['an amount over 1e12', { amount: 1_000_000_000_001 }],
    ['a huge amount', { amount: 1e300 }],
    ['a description over 500 characters', { description: 'x'.repeat(501) }],
    [
      '21 metadata pairs',
      { metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v'])) },
    ],
    ['a non-string metadata value', { metadata: { a: 1 } }],
    ['a metadata key over 40 characters', { metadata: { ['k'.repeat(41)]: 'v' } }],
    ['metadata as an array', { metadata: ['a'] }],
  ])('refuses %s', async (_, override) => {
    const account = await t.api.fundedAccount(1_000);
    const res = await t.api.post(
      '/charges',
      { accountId: account, amount: 100, currency: 'USD', ...override },
      randomUUID(),
    );
    expectProblem(res, 400, 'validation-failed');
    expect(await t.api.balance(account)).toBe(1_000);
  });

  it.each(['[]', '"text"', '42', 'null'])(
    'refuses a JSON body that is not an object: %s',
    async (body) => {
      const res = await t.api
        .post('/charges', undefined, randomUUID())
        .set('Content-Type', 'application/json')
        .send(body);
      expect(res.status).toBe(400);
      expect(res.body.type).toMatch(/^\/problems\/(validation-failed|malformed-json)$/);
    },
  );

  it.each(['limit=0', 'limit=101', 'limit=abc', 'limit=1.5', 'startingAfter=ch_nope', 'color=red'])(
    'refuses the query %s',
    async (query) => {
      const res = await t.api.get(`/charges?${query}`);
      expectProblem(res, 400, 'validation-failed');
      expect(res.body.errors.length).toBeGreaterThan(0);
    },
  );

  it('refuses account names and currencies out of range', async () => {
    expectProblem(
      await t.api.post('/accounts', { name: '', currency: 'USD' }),
      400,
      'validation-failed',
    );
    expectProblem(
      await t.api.post('/accounts', { name: 'x'.repeat(101), currency: 'USD' }),
      400,
      'validation-failed',
    );
    expectProblem(
      await t.api.post('/accounts', { name: 'A', currency: 'US' }),
      400,
      'validation-failed',
    );
  });
});

describe('hostile input gets a 4xx, never a 500', () => {
  const deepArray = '['.repeat(40_000) + ']'.repeat(40_000);
  const deepObject = '{"a":'.repeat(5_000) + '1' + '}'.repeat(5_000);
  it.each([
    ['arrays nested 40,000 deep', deepArray],
    ['objects nested 5,000 deep', deepObject],
    ['a __proto__ key', '{"__proto__":{"admin":true},"accountId":"a","amount":1,"currency":"USD"}'],
    [
      'a nested constructor key',
      '{"accountId":"a","amount":1,"currency":"USD","metadata":{"constructor":"x"}}',
    ],
    ['a NUL in a string', '{"accountId":"a\\u0000b","amount":1,"currency":"USD"}'],
  ])('refuses %s with 400 validation-failed', async (_, body) => {
    const res = await t.api
      .post('/charges', undefined, randomUUID())
      .set('Content-Type', 'application/json')
      .send(body);
    expectProblem(res, 400, 'validation-failed');
  });

  it.each(['/accounts/a%00b', '/charges?accountId=a%00b', '/charges/%FF'])(
    'refuses the URL %s with 400',
    async (url) => {
      expectProblem(await t.api.get(url), 400, 'validation-failed');
    },
  );
});

describe('a value the input checks let through and the schema refuses', () => {
  it("is the request's fault (400 naming the rule), never a 500, and nothing of it is kept", async () => {
    // A rule only the database knows (as if the DTO had forgotten one of the schema's).
    await t.db.query(
      `ALTER TABLE accounts ADD CONSTRAINT accounts_name_not_reserved CHECK (name <> 'reserved')`,
    );
    try {
      const key = randomUUID();
      const body = { name: 'reserved', currency: 'USD' };
      const res = await t.api.post('/accounts', body, key);
      expectProblem(res, 400, 'validation-failed');
      expect(res.body.detail).toContain('accounts_name_not_reserved');
      // Rolled back with the key: the same request, once the rule is gone, is done afresh.
      await t.db.query('ALTER TABLE accounts DROP CONSTRAINT accounts_name_not_reserved');
      expect((await t.api.post('/accounts', body, key)).status).toBe(201);
    } finally {
      await t.db.query('ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_name_not_reserved');
    }
  });
});

describe('400 malformed-json', () => {
  it('answers a body that is not JSON', async () => {
    const res = await t.api
      .post('/charges', undefined, randomUUID())
      .set('Content-Type', 'application/json')
      .send('{"amount": ');
    expectProblem(res, 400, 'malformed-json');
  });
});

describe('401 unauthorized', () => {
  it.each([
    ['no Authorization header', undefined],
    ['an unknown key', 'Bearer sk_unknown_key_123'],
    ['another scheme', `Basic ${Buffer.from('a:b').toString('base64')}`],
  ])('answers %s with WWW-Authenticate: Bearer', async (_, authorization) => {
    const req = request(t.baseUrl).get('/accounts');
    if (authorization) req.set('Authorization', authorization);
    const res = await req;
    expectProblem(res, 401, 'unauthorized');
    expect(res.headers['www-authenticate']).toBe('Bearer');
  });
});

describe('404 not-found', () => {
  it('answers unknown routes and unknown resources', async () => {
    expectProblem(await t.api.get('/nowhere'), 404, 'not-found');
    expectProblem(await t.api.get('/accounts/acct_does_not_exist'), 404, 'not-found');
    expectProblem(await t.api.get('/charges/ch_does_not_exist'), 404, 'not-found');
    // Longer than the router's default limit for a path parameter (it would answer 414).
    expectProblem(await t.api.get(`/charges/ch_${'x'.repeat(300)}`), 404, 'not-found');
  });

  it('treats a trailing slash as absent', async () => {
    const res = await t.api.get('/accounts/');
    expect(res.status).toBe(200);
    expect(res.body.object).toBe('list');
  });
});

describe('409 idempotency-key-in-use', () => {
  it('answers at once, with Retry-After: 1, while the original still holds the key', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();
    // Play the original: hold the key's lock in an open transaction.
    const holder = new pg.Client({ connectionString: t.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1)', [
        keyLockId(t.api.merchantId, key).toString(),
      ]);
      // ...and the account's row: the charge's debit travels with the claim on the
      // key, so if PostgreSQL ran it despite the failed claim, it would wait here.
      await holder.query('SELECT 1 FROM accounts WHERE merchant_id = $1 AND id = $2 FOR UPDATE', [
        t.api.merchantId,
        account,
      ]);

      const res = await t.api.charge(account, 100, key);

      expectProblem(res, 409, 'idempotency-key-in-use');
      expect(res.headers['retry-after']).toBe('1');
      expect(await t.api.balance(account)).toBe(1_000);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    // Once the holder is gone, the key is free: nothing was stored by the 409.
    const after = await t.api.charge(account, 100, key);
    expect(after.status).toBe(201);
    expect(after.headers['idempotent-replayed']).toBeUndefined();
  });
});

describe('413 payload-too-large', () => {
  it('refuses a body over 100 kB', async () => {
    const res = await t.api.post('/charges', { description: 'x'.repeat(110_000) }, randomUUID());
    expectProblem(res, 413, 'payload-too-large');
  });
});

describe('415 unsupported-media-type', () => {
  it('refuses a body that is not declared as JSON', async () => {
    const res = await t.api
      .post('/charges', undefined, randomUUID())
      .set('Content-Type', 'text/plain')
      .send('amount=100');
    expectProblem(res, 415, 'unsupported-media-type');
  });

  it('refuses form-encoded bodies', async () => {
    const res = await t.api.post('/accounts').type('form').send({ name: 'A', currency: 'USD' });
    expectProblem(res, 415, 'unsupported-media-type');
  });

  it('refuses JSON in another charset than UTF-8', async () => {
    const res = await t.api
      .post('/accounts')
      .set('Content-Type', 'application/json; charset=latin1')
      .send(JSON.stringify({ name: 'A', currency: 'USD' }));
    expectProblem(res, 415, 'unsupported-media-type');
  });

  it('reads the +json types and explicit UTF-8 as JSON', async () => {
    for (const type of ['application/merge-patch+json', 'application/json; charset=UTF-8']) {
      const res = await t.api
        .post('/accounts')
        .set('Content-Type', type)
        .send(JSON.stringify({ name: 'A', currency: 'USD' }));
      expect({ type, status: res.status }).toEqual({ type, status: 201 });
    }
  });

  it('does not mind the Content-Type of a POST without a body', async () => {
    for (const type of ['text/plain', 'application/json']) {
      const res = await t.api.post('/accounts').set('Content-Type', type);
      // Validation of the missing fields, not a 415 or a JSON parse error.
      expect({ type, status: res.status }).toEqual({ type, status: 400 });
      expectProblem(res, 400, 'validation-failed');
    }
  });
});

describe('422 balance-limit-exceeded', () => {
  /**
   * Takes an empty account to `headroom` below Number.MAX_SAFE_INTEGER, in SQL:
   * 9,007 deposits of 1e12 and one of the rest, each with its ledger entry, so
   * that the books stay sound (the audit runs after each test).
   */
  async function fillUpTo(account: string, headroom: number): Promise<void> {
    const rest = Number.MAX_SAFE_INTEGER - headroom - 9_007 * 1_000_000_000_000;
    await t.db.query(
      `WITH d AS (
         INSERT INTO deposits (merchant_id, id, account_id, amount, currency)
         SELECT $1, 'dep_seed_' || $2 || g, $2, CASE WHEN g <= 9007 THEN 1000000000000 ELSE $3::bigint END, 'USD'
           FROM generate_series(1, 9008) AS g
         RETURNING id, amount)
       INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
       SELECT $1, 'le_' || d.id, $2, 'deposit', d.amount, d.amount, d.id FROM d`,
      [t.api.merchantId, account, rest],
    );
    await t.db.query('UPDATE accounts SET balance = $1 WHERE id = $2 AND balance = 0', [
      Number.MAX_SAFE_INTEGER - headroom,
      account,
    ]);
  }

  it('refuses a deposit that would take the balance above Number.MAX_SAFE_INTEGER', async () => {
    const account = await t.api.createAccount();
    await fillUpTo(account, 10);

    const res = await t.api.post(
      `/accounts/${account}/deposits`,
      { amount: 11, currency: 'USD' },
      randomUUID(),
    );
    const ok = await t.api.post(
      `/accounts/${account}/deposits`,
      { amount: 10, currency: 'USD' },
      randomUUID(),
    );

    expectProblem(res, 422, 'balance-limit-exceeded');
    expect(ok.status).toBe(201);
    expect(await t.api.balance(account)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('refuses a refund that would, and then the charge still has all of it to refund', async () => {
    const account = await t.api.fundedAccount(1_000);
    const charge = await t.api.charge(account, 1_000, randomUUID());
    await fillUpTo(account, 10);

    const res = await t.api.post(
      `/charges/${charge.body.id}/refunds`,
      { amount: 11 },
      randomUUID(),
    );

    expectProblem(res, 422, 'balance-limit-exceeded');
    // The refused refund is a committed outcome: nothing of it may be committed with it.
    expect((await t.api.get(`/charges/${charge.body.id}`)).body.amountRefunded).toBe(0);
    const ok = await t.api.post(`/charges/${charge.body.id}/refunds`, { amount: 10 }, randomUUID());
    expect(ok.status).toBe(201);
    expect((await t.api.get(`/charges/${charge.body.id}`)).body.amountRefunded).toBe(10);
    expect(await t.api.balance(account)).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('503 service-unavailable', () => {
  it('answers 503 with Retry-After when the database is unreachable, and recovers when it is back', async () => {
    const target = Number(new URL(t.databaseUrl).port);
    const dbProxy = await FaultyProxy.start(target);
    const viaProxy = await startTestApp({
      appDatabaseUrl: (url) => onPort(url, dbProxy.port),
    });
    try {
      const merchant = await viaProxy.merchant();
      const account = await merchant.fundedAccount(1_000);

      await dbProxy.stop();
      const down = await merchant.charge(account, 100, 'outage-1');
      const health = await request(viaProxy.baseUrl).get('/health');

      expectProblem(down, 503, 'service-unavailable');
      expect(down.headers['retry-after']).toBe('1');
      expectProblem(health, 503, 'service-unavailable');

      await dbProxy.listen();
      const up = await merchant.charge(account, 100, 'outage-1');
      expect(up.status).toBe(201);
      expect((await request(viaProxy.baseUrl).get('/health')).status).toBe(200);
      expect(await merchant.balance(account)).toBe(900);
    } finally {
      await dbProxy.stop();
      await viaProxy.close();
    }
  });
});
