import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { useTestApp } from './support/test-app.js';

const t = useTestApp();

describe('accounts', () => {
  it('opens an account with a zero balance and a Location, and reads it back', async () => {
    const res = await t.api.post('/accounts', { name: 'Savings', currency: 'JPY' });

    expect(res.status).toBe(201);
    expect(res.headers.location).toBe(`/accounts/${res.body.id}`);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^acct_[0-9A-Z]{26}$/),
      object: 'account',
      name: 'Savings',
      currency: 'JPY',
      balance: 0,
      metadata: {},
      status: 'open',
      closedAt: null,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect((await t.api.get(res.headers.location)).body).toEqual(res.body);
  });
});

describe('lists', () => {
  it('pages newest first with limit and startingAfter, and says when there is more', async () => {
    const merchant = await t.merchant('Lister');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await merchant.createAccount('USD', `acct ${i}`));
    const newestFirst = [...ids].reverse();

    const first = await merchant.get('/accounts?limit=2');
    const second = await merchant.get(`/accounts?limit=2&startingAfter=${first.body.data[1].id}`);
    const last = await merchant.get(`/accounts?limit=2&startingAfter=${second.body.data[1].id}`);

    expect(first.body).toMatchObject({ object: 'list', hasMore: true });
    expect(first.body.data.map((a: { id: string }) => a.id)).toEqual(newestFirst.slice(0, 2));
    expect(second.body.data.map((a: { id: string }) => a.id)).toEqual(newestFirst.slice(2, 4));
    expect(second.body.hasMore).toBe(true);
    expect(last.body.data.map((a: { id: string }) => a.id)).toEqual(newestFirst.slice(4));
    expect(last.body.hasMore).toBe(false);
    expect((await merchant.get('/accounts')).body.data).toHaveLength(5);
  });

  it('filters charges by account, newest first', async () => {
    const a = await t.api.fundedAccount(1_000);
    const b = await t.api.fundedAccount(1_000);
    const c1 = await t.api.charge(a, 10, randomUUID());
    await t.api.charge(b, 20, randomUUID());
    const c2 = await t.api.charge(a, 30, randomUUID());

    const res = await t.api.get(`/charges?accountId=${a}`);

    expect(res.status).toBe(200);
    expect(res.body.data.map((c: { id: string }) => c.id)).toEqual([c2.body.id, c1.body.id]);
  });
});

describe('ledger', () => {
  it('records every movement, signed, with the balance after it; a failed charge leaves no entry', async () => {
    const account = await t.api.createAccount();
    const deposit = await t.api.post(
      `/accounts/${account}/deposits`,
      { amount: 1_000, currency: 'USD' },
      randomUUID(),
    );
    const charge = await t.api.charge(account, 400, randomUUID());
    const failed = await t.api.charge(account, 5_000, randomUUID());

    const res = await t.api.get(`/accounts/${account}/ledger`);

    expect(failed.status).toBe(402);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual([
      {
        id: expect.stringMatching(/^le_/),
        object: 'ledger_entry',
        type: 'charge',
        amount: -400,
        balanceAfter: 600,
        sourceId: charge.body.id,
        createdAt: expect.any(String),
      },
      {
        id: expect.stringMatching(/^le_/),
        object: 'ledger_entry',
        type: 'deposit',
        amount: 1_000,
        balanceAfter: 1_000,
        sourceId: deposit.body.id,
        createdAt: expect.any(String),
      },
    ]);
    const sum = res.body.data.reduce((s: number, e: { amount: number }) => s + e.amount, 0);
    expect(sum).toBe(await t.api.balance(account));
  });
});

describe('health and request ids', () => {
  it('answers 200 without an API key while the database is up', async () => {
    const res = await request(t.baseUrl).get('/health');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'ok' });
  });

  it('echoes X-Request-Id, or makes one up', async () => {
    const echoed = await request(t.baseUrl).get('/health').set('X-Request-Id', 'trace-abc-123');
    const generated = await request(t.baseUrl).get('/health');
    expect(echoed.headers['x-request-id']).toBe('trace-abc-123');
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
