import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { IdempotencyPurger } from '../src/idempotency/idempotency-purger.js';
import { ledgerViolations } from './support/invariants.js';
import { useTestApp, startTestApp } from './support/test-app.js';

const t = useTestApp();

describe('GET /idempotency-keys/{key}', () => {
  it('shows what a completed key remembers, in either key form', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = `intro-${randomUUID()}`;
    await t.api.charge(account, 100, key);

    const bare = await t.api.get(`/idempotency-keys/${key}`);
    const quoted = await t.api.get(`/idempotency-keys/${encodeURIComponent(`"${key}"`)}`);

    expect(bare.status).toBe(200);
    expect(bare.body).toEqual({
      object: 'idempotency_key',
      key,
      requestMethod: 'POST',
      phase: 'completed',
      requestPath: '/charges',
      responseStatus: 201,
      createdAt: expect.any(String),
      expiresAt: expect.any(String),
    });
    const ttl = Date.parse(bare.body.expiresAt) - Date.parse(bare.body.createdAt);
    expect(ttl).toBe(86_400_000);
    expect(quoted.body).toEqual(bare.body);
  });

  it('records a stored business error with its status', async () => {
    const key = randomUUID();
    await t.api.charge('acct_missing', 100, key);
    expect((await t.api.get(`/idempotency-keys/${key}`)).body.responseStatus).toBe(404);
  });

  it("answers 404 for an unknown key and for another merchant's key", async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();
    await t.api.charge(account, 100, key);
    const other = await t.merchant('Other');

    expect((await t.api.get(`/idempotency-keys/${randomUUID()}`)).status).toBe(404);
    const foreign = await other.get(`/idempotency-keys/${key}`);
    expect(foreign.status).toBe(404);
    expect(foreign.body.type).toBe('/problems/not-found');
  });

  it('answers 400 for a key that is not valid', async () => {
    const res = await t.api.get(`/idempotency-keys/${encodeURIComponent('"unterminated')}`);
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/idempotency-key-invalid');
  });
});

describe('purge', () => {
  it('deletes only expired keys, in batches', async () => {
    const account = await t.api.fundedAccount(10_000);
    const keys = Array.from({ length: 5 }, () => randomUUID());
    for (const key of keys) await t.api.charge(account, 10, key);
    const expired = keys.slice(0, 3);
    await t.db.query(
      `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = ANY($1)`,
      [expired],
    );
    const before = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM idempotency_keys WHERE expires_at > now()`,
    );

    const deleted = await t.app.get(IdempotencyPurger).purgeExpired(2);

    expect(deleted).toBe(3);
    const left = await t.db.query<{ key: string }>(
      'SELECT key FROM idempotency_keys WHERE key = ANY($1)',
      [keys],
    );
    expect(left.rows.map((r) => r.key).sort()).toEqual(keys.slice(3).sort());
    const after = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM idempotency_keys`,
    );
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});

describe('expiry', () => {
  it('treats an expired key as unused: the request executes again and replaces the record', async () => {
    const short = await startTestApp({ env: { IDEMPOTENCY_TTL_SECONDS: '1' } });
    try {
      const merchant = await short.merchant();
      const account = await merchant.fundedAccount(10_000);
      const key = 'expiring-key-1';

      const first = await merchant.charge(account, 100, key);
      const replay = await merchant.charge(account, 100, key);
      expect(replay.headers['idempotent-replayed']).toBe('true');

      // Poll until the key has expired (TTL 1 s).
      const deadline = Date.now() + 10_000;
      while (
        (await merchant.get(`/idempotency-keys/${key}`)).status === 200 &&
        Date.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await merchant.get(`/idempotency-keys/${key}`)).status).toBe(404);

      // The same key now executes afresh, and concurrent uses of it execute once.
      const again = await Promise.all(
        Array.from({ length: 10 }, () => merchant.charge(account, 100, key)),
      );
      const executed = again.filter(
        (r) => r.status === 201 && r.headers['idempotent-replayed'] === undefined,
      );
      expect(executed).toHaveLength(1);
      expect(executed[0].body.id).not.toBe(first.body.id);
      expect(await merchant.balance(account)).toBe(9_800);
      const rows = await short.db.query(
        'SELECT count(*)::int AS n FROM idempotency_keys WHERE key = $1',
        [key],
      );
      expect(rows.rows[0].n).toBe(1);
      expect(await ledgerViolations(short.db)).toEqual([]);
    } finally {
      await short.close();
    }
  });
});
