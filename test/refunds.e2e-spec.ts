import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { useTestApp } from './support/test-app.js';

const t = useTestApp();

async function chargedAccount(
  balance: number,
  charge: number,
): Promise<{ account: string; chargeId: string }> {
  const account = await t.api.fundedAccount(balance);
  const res = await t.api.charge(account, charge, randomUUID());
  if (res.status !== 201) throw new Error(`charge: ${res.status} ${res.text}`);
  return { account, chargeId: res.body.id as string };
}

const refund = (chargeId: string, body: object | undefined, key: string | undefined) =>
  t.api.post(`/charges/${chargeId}/refunds`, body, key);

describe('first call', () => {
  it('refunds what is left by default, credits the account and records a ledger entry', async () => {
    const { account, chargeId } = await chargedAccount(10_000, 3_000);

    const res = await refund(chargeId, undefined, randomUUID());

    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^re_[0-9A-Z]{26}$/),
      object: 'refund',
      chargeId,
      amount: 3_000,
      createdAt: expect.any(String),
    });
    expect(await t.api.balance(account)).toBe(10_000);
    expect((await t.api.get(`/charges/${chargeId}`)).body.amountRefunded).toBe(3_000);
    const ledger = await t.api.get(`/accounts/${account}/ledger`);
    expect(ledger.body.data[0]).toMatchObject({
      type: 'refund',
      amount: 3_000,
      balanceAfter: 10_000,
      sourceId: res.body.id,
    });
  });

  it('refunds part of a charge, then the rest', async () => {
    const { account, chargeId } = await chargedAccount(10_000, 3_000);

    const part = await refund(chargeId, { amount: 1_000 }, randomUUID());
    const rest = await refund(chargeId, {}, randomUUID());

    expect(part.body.amount).toBe(1_000);
    expect(rest.body.amount).toBe(2_000);
    expect(await t.api.balance(account)).toBe(10_000);
  });
});

describe('replay and mismatch', () => {
  it('replays a refund retried with its key, crediting once', async () => {
    const { account, chargeId } = await chargedAccount(10_000, 3_000);
    const key = randomUUID();

    const first = await refund(chargeId, { amount: 500 }, key);
    const retry = await refund(chargeId, { amount: 500 }, key);

    expect(retry.status).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.text).toBe(first.text);
    expect(await t.api.balance(account)).toBe(7_500);
  });

  it('refuses the key with another amount (422) and refunds nothing more', async () => {
    const { account, chargeId } = await chargedAccount(10_000, 3_000);
    const key = randomUUID();
    await refund(chargeId, { amount: 500 }, key);

    const res = await refund(chargeId, { amount: 600 }, key);

    expect(res.status).toBe(422);
    expect(res.body.type).toBe('/problems/idempotency-key-reused');
    expect(await t.api.balance(account)).toBe(7_500);
  });

  it('requires a key', async () => {
    const { chargeId } = await chargedAccount(10_000, 3_000);
    const res = await refund(chargeId, {}, undefined);
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/idempotency-key-missing');
  });
});

describe('refund-exceeds-charge', () => {
  it('refuses more than is left, and stores that answer with the key', async () => {
    const { account, chargeId } = await chargedAccount(10_000, 3_000);
    await refund(chargeId, { amount: 2_500 }, randomUUID());
    const key = randomUUID();

    const res = await refund(chargeId, { amount: 501 }, key);
    const retry = await refund(chargeId, { amount: 501 }, key);

    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ type: '/problems/refund-exceeds-charge', refundable: 500 });
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(await t.api.balance(account)).toBe(9_500);
  });

  it('refuses a refund of a failed charge, and of a fully refunded one', async () => {
    const account = await t.api.fundedAccount(100);
    const failed = await t.api.charge(account, 500, randomUUID());
    const { chargeId } = await chargedAccount(1_000, 1_000);
    await refund(chargeId, {}, randomUUID());

    const ofFailed = await refund(failed.body.chargeId, {}, randomUUID());
    const again = await refund(chargeId, {}, randomUUID());

    expect(ofFailed.status).toBe(422);
    expect(ofFailed.body.type).toBe('/problems/refund-exceeds-charge');
    expect(again.status).toBe(422);
    expect(await t.api.balance(account)).toBe(100);
  });

  it("answers 404 for an unknown charge or another merchant's", async () => {
    const { chargeId } = await chargedAccount(1_000, 100);
    const other = await t.merchant('Other');
    expect((await refund('ch_unknown', {}, randomUUID())).status).toBe(404);
    expect((await other.post(`/charges/${chargeId}/refunds`, {}, randomUUID())).status).toBe(404);
  });
});

describe('concurrent partial refunds', () => {
  it('never refund more than the charge: 50 concurrent refunds of 100 on a charge of 3,000 → exactly 30 succeed', async () => {
    const { account, chargeId } = await chargedAccount(10_000, 3_000);

    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        fetch(`${t.baseUrl}/charges/${chargeId}/refunds`, {
          method: 'POST',
          headers: {
            Authorization: `Bearer ${t.api.apiKey}`,
            'Content-Type': 'application/json',
            'Idempotency-Key': randomUUID(),
          },
          body: JSON.stringify({ amount: 100 }),
        }).then((r) => r.status),
      ),
    );

    expect(results.filter((s) => s === 201)).toHaveLength(30);
    expect(results.filter((s) => s === 422)).toHaveLength(20);
    expect((await t.api.get(`/charges/${chargeId}`)).body.amountRefunded).toBe(3_000);
    expect(await t.api.balance(account)).toBe(10_000);
  });
});
