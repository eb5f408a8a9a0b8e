import { describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { IdempotencyPurger } from '../src/idempotency/idempotency-purger.js';
import { MetricsService } from '../src/metrics/metrics.service.js';
import { ledgerViolations } from './support/invariants.js';
import { startInstance, startTestApp, useTestApp } from './support/test-app.js';

/**
 * The memory of completed responses (decision 0015): an instance replays what it
 * has seen complete without a round trip, and still answers exactly what the
 * table would, across merchants, instances, expiry and the purge.
 */
const t = useTestApp();

/** How many replays `app` answered from its memory so far. */
async function memoryReplays(app: INestApplication): Promise<number> {
  const metric = app
    .get(MetricsService)
    .registry.getSingleMetric('idempotency_memory_replays_total');
  return (await metric!.get()).values[0]?.value ?? 0;
}

describe('replays from memory', () => {
  it('replays a response this instance stored without the database, byte for byte', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();
    const first = await t.api.charge(account, 100, key);
    const before = await memoryReplays(t.app);

    const again = await t.api.charge(account, 100, key);

    expect(await memoryReplays(t.app)).toBe(before + 1);
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.text).toBe(first.text);
    expect(again.headers.location).toBe(first.headers.location);
    expect(await t.api.balance(account)).toBe(900);
  });

  it('answers 422 from memory when the key comes back with another request', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();
    await t.api.charge(account, 100, key);
    const before = await memoryReplays(t.app);

    const other = await t.api.charge(account, 999, key);

    expect(other.status).toBe(422);
    expect(other.body.type).toBe('/problems/idempotency-key-reused');
    expect(await memoryReplays(t.app)).toBe(before + 1);
    expect(await t.api.balance(account)).toBe(900);
  });

  it("never answers one merchant with another's response to the same key", async () => {
    const key = randomUUID();
    const mine = await t.api.fundedAccount(1_000);
    await t.api.charge(mine, 100, key);
    const other = await t.merchant('Other');
    const theirs = await other.fundedAccount(1_000);

    const res = await other.charge(theirs, 100, key);

    expect(res.status).toBe(201);
    expect(res.headers['idempotent-replayed']).toBeUndefined();
    expect(res.body.accountId).toBe(theirs);
    expect(await other.balance(theirs)).toBe(900);
    expect(await t.api.balance(mine)).toBe(900);
  });

  it('remembers only what committed: a request that rolled back leaves nothing to replay', async () => {
    const account = await t.api.fundedAccount(1_000);
    const key = randomUUID();
    // Not valid (400, rolled back), then valid with the same key: it executes.
    expect((await t.api.charge(account, -5, key)).status).toBe(400);
    const res = await t.api.charge(account, 100, key);
    expect(res.status).toBe(201);
    expect(res.headers['idempotent-replayed']).toBeUndefined();
  });

  it('another instance replays from the database, then from its own memory', async () => {
    const second = await startInstance(t.databaseUrl);
    try {
      const account = await t.api.fundedAccount(1_000);
      const key = randomUUID();
      const first = await t.api.charge(account, 100, key);
      const there = second.client(t.api);

      const fromDatabase = await there.charge(account, 100, key);
      expect(await memoryReplays(second.app)).toBe(0);
      const fromMemory = await there.charge(account, 100, key);
      expect(await memoryReplays(second.app)).toBe(1);

      for (const res of [fromDatabase, fromMemory]) {
        expect(res.headers['idempotent-replayed']).toBe('true');
        expect(res.text).toBe(first.text);
      }
      expect(await t.api.balance(account)).toBe(900);
    } finally {
      await second.close();
    }
  });
});

describe('expiry, the purge and other instances', () => {
  it('forgets a response before its key expires: another instance may then replace it', async () => {
    // A TTL long enough to replay from memory first (entries go 1 s before expiry).
    const a = await startTestApp({ env: { IDEMPOTENCY_TTL_SECONDS: '3' } });
    const b = await startInstance(a.databaseUrl, { IDEMPOTENCY_TTL_SECONDS: '3' });
    try {
      const onA = await a.merchant();
      const onB = b.client(onA);
      const account = await onA.fundedAccount(10_000);
      const key = 'expiring-in-memory';

      const first = await onA.charge(account, 100, key);
      const replay = await onA.charge(account, 100, key);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(await memoryReplays(a.app)).toBe(1);

      // Wait, polling, until the key has expired in the database, and purge it.
      const deadline = Date.now() + 15_000;
      while ((await onA.get(`/idempotency-keys/${key}`)).status === 200) {
        if (Date.now() > deadline) throw new Error('the key did not expire');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(await a.app.get(IdempotencyPurger).purgeExpired()).toBeGreaterThanOrEqual(1);

      // B uses the key anew: a new charge. A must now answer B's, not its own old one.
      const renewed = await onB.charge(account, 100, key);
      expect(renewed.status).toBe(201);
      expect(renewed.headers['idempotent-replayed']).toBeUndefined();
      expect(renewed.body.id).not.toBe(first.body.id);

      const onAAgain = await onA.charge(account, 100, key);
      expect(onAAgain.headers['idempotent-replayed']).toBe('true');
      expect(onAAgain.body.id).toBe(renewed.body.id);
      expect(await memoryReplays(a.app)).toBe(1); // from the database, not from memory
      expect(await onA.balance(account)).toBe(9_800);
      expect(await ledgerViolations(a.db)).toEqual([]);
    } finally {
      await b.close();
      await a.close();
    }
  });

  it('keeps nothing with IDEMPOTENCY_CACHE_SIZE=0: every replay asks the database', async () => {
    const off = await startTestApp({ env: { IDEMPOTENCY_CACHE_SIZE: '0' } });
    try {
      const merchant = await off.merchant();
      const account = await merchant.fundedAccount(1_000);
      const key = randomUUID();
      const first = await merchant.charge(account, 100, key);
      const again = await merchant.charge(account, 100, key);

      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.text).toBe(first.text);
      expect(await memoryReplays(off.app)).toBe(0);
    } finally {
      await off.close();
    }
  });
});
