import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { ledgerViolations } from './support/invariants.js';
import { type ApiClient, startTestApp, type TestApp } from './support/test-app.js';

let t: TestApp;
let api: ApiClient;

beforeAll(async () => {
  t = await startTestApp();
  api = await t.merchant();
});
afterEach(async () => expect(await ledgerViolations(t.db)).toEqual([]));
afterAll(() => t.close());

/**
 * A fault after the debit, without test hooks in the app: a trigger in this test
 * database makes the ledger insert (the last write of a charge) fail for one
 * amount. The debit and the charge row are already written when it fires.
 */
async function failLedgerInsertsOf(amount: number): Promise<void> {
  await t.db.query(`
    CREATE OR REPLACE FUNCTION fail_ledger_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.amount = -${amount} THEN RAISE EXCEPTION 'injected fault after the debit'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER fail_ledger_insert BEFORE INSERT ON ledger_entries
      FOR EACH ROW EXECUTE FUNCTION fail_ledger_insert();`);
}

async function removeFault(): Promise<void> {
  await t.db.query('DROP TRIGGER IF EXISTS fail_ledger_insert ON ledger_entries');
}

describe('rollback', () => {
  it('leaves no debit, no charge and no key when the request fails after the debit; the retry then executes once', async () => {
    const account = await api.fundedAccount(10_000);
    const key = randomUUID();
    await failLedgerInsertsOf(666);

    const failed = await api.charge(account, 666, key);

    expect(failed.status).toBe(500);
    expect(failed.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(failed.body).toEqual({
      type: '/problems/internal-error',
      title: 'Internal error',
      status: 500,
      detail: expect.any(String),
    });
    expect(failed.text).not.toMatch(/injected|trigger|INSERT|ledger_entries|at .*\.js/);
    expect(await api.balance(account)).toBe(10_000);
    const counts = await t.db.query(
      `SELECT (SELECT count(*)::int FROM charges WHERE account_id = $1) AS charges,
              (SELECT count(*)::int FROM idempotency_keys WHERE key = $2) AS keys`,
      [account, key],
    );
    expect(counts.rows[0]).toEqual({ charges: 0, keys: 0 });

    await removeFault();
    const retry = await api.charge(account, 666, key);

    expect(retry.status).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBeUndefined();
    expect(await api.balance(account)).toBe(10_000 - 666);
    const again = await api.charge(account, 666, key);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await api.balance(account)).toBe(10_000 - 666);
  });
});
