import { beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createLookupTable, inject } from './support/db-faults.js';
import { useTestApp, type ApiClient } from './support/test-app.js';

const t = useTestApp();
beforeAll(() => failStoringKeysListedIn('faulty_keys'));

/**
 * The last thing a request sends is its stored response (the key's INSERT), in
 * the same round trip as COMMIT; everything else it wrote went before. Making that
 * INSERT fail is therefore a fault after all the work: only the transaction can
 * undo the debit, the records and the ledger entry. (A fault inside the debit's own
 * statement would prove nothing: one statement is atomic even without a
 * transaction.) The fault is a trigger in this test database, for the keys listed
 * in a table: no test hook in the app.
 */
async function failStoringKeysListedIn(table: string): Promise<void> {
  await createLookupTable(t.db, table, 'key text PRIMARY KEY');
  await inject(
    t.db,
    `CREATE FUNCTION fail_key_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM ${table} WHERE key = NEW.key) THEN
        RAISE EXCEPTION 'injected fault while storing the response';
      END IF;
      RETURN NEW;
    END $$`,
    `CREATE TRIGGER fail_key_insert BEFORE INSERT ON idempotency_keys
      FOR EACH ROW EXECUTE FUNCTION fail_key_insert()`,
  );
}

const failAtCommit = (key: string) => t.db.query('INSERT INTO faulty_keys VALUES ($1)', [key]);
const stopFailing = (key: string) => t.db.query('DELETE FROM faulty_keys WHERE key = $1', [key]);

/** What a money movement leaves behind in the database, for one account. */
async function footprint(account: string, key: string) {
  const { rows } = await t.db.query(
    `SELECT (SELECT balance::int FROM accounts WHERE id = $1) AS balance,
            (SELECT count(*)::int FROM charges WHERE account_id = $1) AS charges,
            (SELECT count(*)::int FROM deposits WHERE account_id = $1) AS deposits,
            (SELECT count(*)::int FROM refunds WHERE account_id = $1) AS refunds,
            (SELECT count(*)::int FROM ledger_entries WHERE account_id = $1) AS "ledgerEntries",
            (SELECT count(*)::int FROM idempotency_keys WHERE key = $2) AS keys`,
    [account, key],
  );
  return rows[0];
}

/** Each money route, from an account holding 10,000 with one charge of 1,000 on it. */
const movements: Array<{
  name: string;
  send: (account: string, chargeId: string, key: string) => ReturnType<ApiClient['post']>;
  /** The footprint once it has executed: balance and the counts that grow. */
  after: Record<string, number>;
}> = [
  {
    name: 'charge',
    send: (account, _charge, key) => t.api.charge(account, 666, key),
    after: { balance: 9_000 - 666, charges: 2, ledgerEntries: 3 },
  },
  {
    name: 'deposit',
    send: (account, _charge, key) =>
      t.api.post(`/accounts/${account}/deposits`, { amount: 666, currency: 'USD' }, key),
    after: { balance: 9_000 + 666, deposits: 2, ledgerEntries: 3 },
  },
  {
    name: 'refund',
    send: (_account, charge, key) => t.api.post(`/charges/${charge}/refunds`, { amount: 666 }, key),
    after: { balance: 9_000 + 666, refunds: 1, ledgerEntries: 3 },
  },
];

describe('rollback', () => {
  for (const movement of movements) {
    it(`a ${movement.name} whose stored response fails at COMMIT leaves nothing behind, and its retry executes once`, async () => {
      const account = await t.api.fundedAccount(10_000);
      const charge = await t.api.charge(account, 1_000, randomUUID());
      const key = randomUUID();
      const before = await footprint(account, key);
      await failAtCommit(key);

      const failed = await movement.send(account, charge.body.id, key);

      expect(failed.status).toBe(500);
      expect(failed.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(failed.body).toEqual({
        type: '/problems/internal-error',
        title: 'Internal error',
        status: 500,
        detail: expect.any(String),
      });
      expect(failed.text).not.toMatch(/injected|trigger|INSERT|idempotency_keys|at .*\.js/);
      // No debit or credit, no record, no ledger entry, no key: the work was undone.
      expect(await footprint(account, key)).toEqual(before);

      await stopFailing(key);
      const retry = await movement.send(account, charge.body.id, key);
      const again = await movement.send(account, charge.body.id, key);

      expect(retry.status).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBeUndefined();
      expect(again.status).toBe(201);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.text).toBe(retry.text);
      expect(await footprint(account, key)).toEqual({ ...before, ...movement.after, keys: 1 });
    });
  }
});
