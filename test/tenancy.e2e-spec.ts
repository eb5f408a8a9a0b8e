import { beforeAll, describe, expect, it } from '@jest/globals';
import { useTestApp, type ApiClient } from './support/test-app.js';

const t = useTestApp();
let alice: ApiClient;
let bob: ApiClient;

beforeAll(async () => {
  alice = await t.merchant('Alice Ltd');
  bob = await t.merchant('Bob Inc');
});

describe('per-merchant isolation', () => {
  it('scopes keys to the merchant: the same key used by two merchants executes twice, each replaying only its own', async () => {
    const aliceAccount = await alice.fundedAccount(5_000);
    const bobAccount = await bob.fundedAccount(5_000);
    const key = 'shared-key-1';

    const a = await alice.charge(aliceAccount, 100, key);
    const b = await bob.charge(bobAccount, 200, key);
    const aAgain = await alice.charge(aliceAccount, 100, key);

    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(b.body.id).not.toBe(a.body.id);
    expect(aAgain.headers['idempotent-replayed']).toBe('true');
    expect(aAgain.text).toBe(a.text);
    expect(await alice.balance(aliceAccount)).toBe(4_900);
    expect(await bob.balance(bobAccount)).toBe(4_800);
  });

  it("answers 404 for another merchant's account, charge and ledger, exactly as for a missing one", async () => {
    const account = await alice.fundedAccount(5_000);
    const charge = await alice.charge(account, 100, 'alice-charge-1');

    const missing = await bob.get('/accounts/acct_01J00000000000000000000000');
    for (const path of [
      `/accounts/${account}`,
      `/charges/${charge.body.id}`,
      `/accounts/${account}/ledger`,
    ]) {
      const res = await bob.get(path);
      expect(res.status).toBe(404);
      expect(res.body.type).toBe('/problems/not-found');
      expect(Object.keys(res.body).sort()).toEqual(Object.keys(missing.body).sort());
    }
  });

  it("cannot charge or deposit into another merchant's account", async () => {
    const account = await alice.fundedAccount(5_000);

    const charge = await bob.charge(account, 100, 'bob-steals-1');
    const deposit = await bob.post(
      `/accounts/${account}/deposits`,
      { amount: 1, currency: 'USD' },
      'bob-gives-1',
    );

    expect(charge.status).toBe(404);
    expect(deposit.status).toBe(404);
    expect(await alice.balance(account)).toBe(5_000);
  });

  it("never lists another merchant's resources", async () => {
    const aliceAccount = await alice.fundedAccount(1_000);
    await alice.charge(aliceAccount, 10, 'alice-list-1');
    const bobAccount = await bob.fundedAccount(1_000);
    const bobCharge = await bob.charge(bobAccount, 10, 'bob-list-1');

    const accounts = await bob.get('/accounts?limit=100');
    const charges = await bob.get('/charges?limit=100');

    const own = await t.db.query('SELECT id FROM accounts WHERE merchant_id = $1', [
      bob.merchantId,
    ]);
    expect(accounts.body.data.map((a: { id: string }) => a.id).sort()).toEqual(
      own.rows.map((r) => r.id).sort(),
    );
    expect(accounts.body.data.map((a: { id: string }) => a.id)).not.toContain(aliceAccount);
    expect(charges.body.data.map((c: { id: string }) => c.id)).toContain(bobCharge.body.id);
    expect(
      charges.body.data.every((c: { accountId: string }) => c.accountId !== aliceAccount),
    ).toBe(true);
  });
});
