import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { type ApiClient, useTestApp } from './support/test-app.js';

/**
 * GET, PUT and DELETE are idempotent by their nature: they read, set or close,
 * and doing that twice leaves the account as doing it once, so they need no key.
 * Their ETag and If-Match make them safe under concurrency too: the check that
 * turns a blind set into a compare-and-set.
 */
const t = useTestApp();

const account = (client: ApiClient, id: string) => client.get(`/accounts/${id}`);
const put = (id: string, body: object, headers: Record<string, string> = {}) =>
  t.api.put(`/accounts/${id}`, body, headers);

/** The account's row as the database holds it. */
async function row(id: string) {
  const { rows } = await t.db.query(
    `SELECT name, metadata, version::int, balance::int, closed_at IS NOT NULL AS closed,
            updated_at AS "updatedAt"
       FROM accounts WHERE id = $1`,
    [id],
  );
  return rows[0];
}

describe('PUT /accounts/{id}: idempotent by nature, it sets', () => {
  it('replaces name and metadata; repeated, it answers the same 200 and changes nothing', async () => {
    const id = await t.api.createAccount();
    const body = { name: 'Holiday fund', metadata: { owner: 'ana', purpose: 'trips' } };

    const first = await put(id, body);
    const before = await row(id);
    const again = await put(id, {
      metadata: { purpose: 'trips', owner: 'ana' },
      name: 'Holiday fund',
    });
    const after = await row(id);

    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ id, name: 'Holiday fund', metadata: body.metadata });
    expect(first.headers.etag).toMatch(/^"\d+"$/);
    expect(again.status).toBe(200);
    expect(again.text).toBe(first.text); // the same body, byte for byte
    expect(again.headers.etag).toBe(first.headers.etag);
    expect(after).toEqual(before); // no version bump, no new updatedAt
    expect((await account(t.api, id)).body).toEqual(first.body);
  });

  it('is a replacement: metadata left out becomes empty', async () => {
    const id = await t.api.createAccount();
    await put(id, { name: 'A', metadata: { k: 'v' } });

    const res = await put(id, { name: 'A' });

    expect(res.status).toBe(200);
    expect(res.body.metadata).toEqual({});
  });

  it('never sets the balance or the currency: 400, and nothing changes', async () => {
    const id = await t.api.fundedAccount(500);
    const before = await row(id);

    const balance = await put(id, { name: 'Rich', balance: 1_000_000 });
    const currency = await put(id, { name: 'Rich', currency: 'EUR' });

    for (const res of [balance, currency]) {
      expect(res.status).toBe(400);
      expect(res.body.type).toBe('/problems/validation-failed');
    }
    expect(await row(id)).toEqual(before);
  });

  it("answers 404 for an unknown account, and for another merchant's", async () => {
    const id = await t.api.createAccount();
    const other = await t.merchant('Other');

    expect((await put('acct_unknown', { name: 'x' })).status).toBe(404);
    expect((await other.put(`/accounts/${id}`, { name: 'x' })).status).toBe(404);
    expect((await row(id)).name).toBe('Test account');
  });

  it('ignores an Idempotency-Key: it needs none, and a key reused with another body is no 422', async () => {
    const id = await t.api.createAccount();

    const a = await put(id, { name: 'One' }, { 'Idempotency-Key': 'put-key' });
    const b = await put(id, { name: 'Two' }, { 'Idempotency-Key': 'put-key' });

    expect([a.status, b.status]).toEqual([200, 200]);
    expect(b.body.name).toBe('Two');
    const keys = await t.db.query('SELECT 1 FROM idempotency_keys WHERE key = $1', ['put-key']);
    expect(keys.rowCount).toBe(0);
  });
});

describe('ETag and If-None-Match', () => {
  it('answers 304 with no body while nothing changed; a deposit, a charge or a PUT changes the ETag', async () => {
    const id = await t.api.fundedAccount(1_000);
    const first = await account(t.api, id);
    const etag = first.headers.etag;

    const unchanged = await account(t.api, id).set('If-None-Match', etag);
    const weak = await account(t.api, id).set('If-None-Match', `W/${etag}`);
    const listed = await account(t.api, id).set('If-None-Match', `"0", ${etag}`);

    expect(first.status).toBe(200);
    expect(etag).toMatch(/^"\d+"$/);
    for (const res of [unchanged, weak, listed]) {
      expect(res.status).toBe(304);
      expect(res.text).toBe('');
      expect(res.headers.etag).toBe(etag);
    }

    const tags = [etag];
    await t.api.deposit(id, 100);
    tags.push((await account(t.api, id)).headers.etag);
    await t.api.charge(id, 50, randomUUID());
    tags.push((await account(t.api, id)).headers.etag);
    await put(id, { name: 'Renamed' });
    const latest = await account(t.api, id).set('If-None-Match', etag);
    tags.push(latest.headers.etag);

    expect(new Set(tags).size).toBe(4);
    expect(latest.status).toBe(200);
    expect(latest.body.balance).toBe(1_050);
  });

  it('does not answer 304 to a failed charge: it changed nothing', async () => {
    const id = await t.api.fundedAccount(10);
    const { etag } = (await account(t.api, id)).headers;

    const failed = await t.api.charge(id, 500, randomUUID());

    expect(failed.status).toBe(402);
    expect((await account(t.api, id).set('If-None-Match', etag)).status).toBe(304);
  });
});

describe('If-Match: a compare-and-set', () => {
  it('applies a PUT whose If-Match is current, or *; refuses a stale or weak one with 412 and changes nothing', async () => {
    const id = await t.api.createAccount();
    const read = await account(t.api, id);
    const etag = read.headers.etag;

    const current = await put(id, { name: 'v2' }, { 'If-Match': etag });
    const before = await row(id);
    const stale = await put(id, { name: 'v3' }, { 'If-Match': etag });
    const weak = await put(id, { name: 'v3' }, { 'If-Match': `W/${current.headers.etag}` });
    const any = await put(id, { name: 'v4' }, { 'If-Match': '*' });

    expect(current.status).toBe(200);
    expect(current.headers.etag).not.toBe(etag);
    for (const res of [stale, weak]) {
      expect(res.status).toBe(412);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body.type).toBe('/problems/precondition-failed');
    }
    expect(any.status).toBe(200);
    expect(any.body.name).toBe('v4');
    expect(before).toMatchObject({ name: 'v2' });
  });

  it('refuses a malformed If-Match with 400 rather than ignoring it', async () => {
    const id = await t.api.createAccount();

    const res = await put(id, { name: 'x' }, { 'If-Match': 'not-quoted' });

    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'If-Match', message: expect.any(String) }]);
    expect((await row(id)).name).toBe('Test account');
  });

  it('lets exactly one of ten clients racing with the same If-Match win; the nine others get 412', async () => {
    const id = await t.api.createAccount();
    const etag = (await account(t.api, id)).headers.etag;

    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        fetch(`${t.baseUrl}/accounts/${id}`, {
          method: 'PUT',
          headers: {
            Authorization: `Bearer ${t.api.apiKey}`,
            'Content-Type': 'application/json',
            'If-Match': etag,
          },
          body: JSON.stringify({ name: `writer ${i}` }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as { name?: string } })),
      ),
    );

    const winners = results.filter((r) => r.status === 200);
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => r.status === 412)).toHaveLength(9);
    expect(await row(id)).toMatchObject({ name: winners[0].body.name, version: 2 });
  });

  it('answers a retried PUT that already went through with 200, though its If-Match is stale now', async () => {
    const id = await t.api.createAccount();
    const etag = (await account(t.api, id)).headers.etag;
    const body = { name: 'Set once', metadata: { a: '1' } };

    const first = await put(id, body, { 'If-Match': etag }); // its response "lost"
    const retry = await put(id, body, { 'If-Match': etag });
    const other = await put(id, { name: 'Something else' }, { 'If-Match': etag });

    expect(first.status).toBe(200);
    expect(retry.status).toBe(200);
    expect(retry.text).toBe(first.text);
    expect(other.status).toBe(412);
    expect((await row(id)).version).toBe(2);
  });
});

describe('DELETE /accounts/{id}: idempotent by nature, it closes', () => {
  it('refuses to close an account that holds money (409 account-not-empty), and changes nothing', async () => {
    const id = await t.api.fundedAccount(700);
    const before = await row(id);

    const res = await t.api.delete(`/accounts/${id}`);

    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ type: '/problems/account-not-empty', balance: 700 });
    expect(await row(id)).toEqual(before);
  });

  it('closes an empty account; repeated, it answers 204 again and changes nothing', async () => {
    const id = await t.api.fundedAccount(700);
    await t.api.charge(id, 700, randomUUID());

    const first = await t.api.delete(`/accounts/${id}`);
    const closed = await row(id);
    const again = await t.api.delete(`/accounts/${id}`);

    expect(first.status).toBe(204);
    expect(first.text).toBe('');
    expect(again.status).toBe(204);
    expect(await row(id)).toEqual(closed);
    expect(closed).toMatchObject({ closed: true, balance: 0 });
    const shown = await account(t.api, id);
    expect(shown.body).toMatchObject({
      status: 'closed',
      closedAt: expect.any(String),
      balance: 0,
    });
  });

  it('lists closed accounts only when asked to', async () => {
    const lister = await t.merchant('Lister');
    const open = await lister.createAccount();
    const closing = await lister.createAccount();
    await lister.delete(`/accounts/${closing}`);

    const ids = async (path: string) =>
      (await lister.get(path)).body.data.map((a: { id: string }) => a.id);

    expect(await ids('/accounts')).toEqual([open]);
    expect(await ids('/accounts?includeClosed=false')).toEqual([open]);
    expect(await ids('/accounts?includeClosed=true')).toEqual([closing, open]);
    expect((await lister.get('/accounts?includeClosed=maybe')).status).toBe(400);
  });

  it('honours If-Match: 412 when stale; a stale one on an account already closed still gets 204', async () => {
    const id = await t.api.createAccount();
    const etag = (await account(t.api, id)).headers.etag;
    await put(id, { name: 'Changed' });

    const stale = await t.api.delete(`/accounts/${id}`, { 'If-Match': etag });
    const current = (await account(t.api, id)).headers.etag;
    const closed = await t.api.delete(`/accounts/${id}`, { 'If-Match': current });
    const retried = await t.api.delete(`/accounts/${id}`, { 'If-Match': current });

    expect(stale.status).toBe(412);
    expect(closed.status).toBe(204);
    expect(retried.status).toBe(204);
  });

  it("answers 404 for an unknown account, and for another merchant's", async () => {
    const id = await t.api.createAccount();
    const other = await t.merchant('Other');

    expect((await t.api.delete('/accounts/acct_unknown')).status).toBe(404);
    expect((await other.delete(`/accounts/${id}`)).status).toBe(404);
    expect((await row(id)).closed).toBe(false);
  });
});

describe('a closed account', () => {
  it('refuses deposits, charges and refunds with 409 account-closed, stored and replayed with the key', async () => {
    const id = await t.api.fundedAccount(300);
    const charge = await t.api.charge(id, 300, randomUUID());
    await t.api.delete(`/accounts/${id}`);
    const keys = { deposit: randomUUID(), charge: randomUUID(), refund: randomUUID() };

    const send = {
      deposit: () =>
        t.api.post(`/accounts/${id}/deposits`, { amount: 5, currency: 'USD' }, keys.deposit),
      charge: () => t.api.charge(id, 5, keys.charge),
      refund: () => t.api.post(`/charges/${charge.body.id}/refunds`, {}, keys.refund),
    };
    for (const [name, attempt] of Object.entries(send)) {
      const first = await attempt();
      const retry = await attempt();
      expect({ name, status: first.status, type: first.body.type }).toEqual({
        name,
        status: 409,
        type: '/problems/account-closed',
      });
      expect(first.headers['retry-after']).toBeUndefined(); // final, unlike key-in-use
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.text).toBe(first.text);
    }
    expect(await row(id)).toMatchObject({ balance: 0, closed: true });
  });

  it('takes no PUT either (409), but a PUT that changes nothing is answered 200', async () => {
    const id = await t.api.createAccount();
    await t.api.delete(`/accounts/${id}`);

    const change = await put(id, { name: 'Revived' });
    const same = await put(id, { name: 'Test account' });

    expect(change.status).toBe(409);
    expect(change.body.type).toBe('/problems/account-closed');
    expect(same.status).toBe(200);
    expect(same.body.status).toBe('closed');
  });

  it('never takes money that races with its closing: of a deposit and a DELETE sent together, exactly one succeeds', async () => {
    const ids = await Promise.all(Array.from({ length: 20 }, () => t.api.createAccount()));
    const send = (method: 'POST' | 'DELETE', path: string, body?: object) =>
      fetch(`${t.baseUrl}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${t.api.apiKey}`,
          'Content-Type': 'application/json',
          ...(body ? { 'Idempotency-Key': randomUUID() } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      }).then((r) => r.status);

    const outcomes = await Promise.all(
      ids.map(async (id) => {
        const [deposit, close] = await Promise.all([
          send('POST', `/accounts/${id}/deposits`, { amount: 10, currency: 'USD' }),
          send('DELETE', `/accounts/${id}`),
        ]);
        return `${deposit}/${close}`;
      }),
    );

    // Deposit first: the account holds money, so it cannot close. Close first: the
    // deposit finds it closed. Never both, never neither.
    expect(outcomes.every((o) => o === '201/409' || o === '409/204')).toBe(true);
    const { rows } = await t.db.query(
      `SELECT count(*)::int AS n FROM accounts WHERE id = ANY($1) AND closed_at IS NOT NULL AND balance <> 0`,
      [ids],
    );
    expect(rows[0].n).toBe(0);
  });
});

describe('request shapes', () => {
  it('documents PUT and DELETE without a key in the served spec', async () => {
    const spec = (await request(t.baseUrl).get('/openapi.json')).body;
    const parameters = (operation: { parameters?: Array<{ $ref?: string }> }) =>
      (operation.parameters ?? []).map((p) => p.$ref);

    for (const method of ['put', 'delete']) {
      const operation = spec.paths['/accounts/{id}'][method];
      expect(parameters(operation)).not.toContain('#/components/parameters/IdempotencyKeyRequired');
      expect(parameters(operation)).toContain('#/components/parameters/IfMatch');
    }
  });
});
