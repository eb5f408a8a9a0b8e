import { beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import pg from 'pg';
import { AUDIT_CHECKS, auditLedger } from '../src/audit/ledger-audit.js';
import { childEnv, projectRoot } from '../tools/api-process.js';
import { useTestApp } from './support/test-app.js';

/**
 * The auditor must catch what it promises to catch: each check is shown a
 * corruption of real books, inside a transaction that is rolled back afterwards.
 */
// Not audited after each test: this file corrupts the books on purpose (and rolls back).
const t = useTestApp({ audit: false });
let ids: {
  account: string;
  charge: string;
  failed: string;
  deposit: string;
  refund: string;
  closed: string;
};

beforeAll(async () => {
  const account = await t.api.createAccount();
  const deposit = await t.api.post(
    `/accounts/${account}/deposits`,
    { amount: 5_000, currency: 'USD' },
    randomUUID(),
  );
  const charge = await t.api.charge(account, 1_000, randomUUID());
  const failed = await t.api.charge(account, 1_000_000, randomUUID());
  const refund = await t.api.post(
    `/charges/${charge.body.id}/refunds`,
    { amount: 300 },
    randomUUID(),
  );
  // An account that held money, was emptied, then closed.
  const closed = await t.api.fundedAccount(100);
  await t.api.charge(closed, 100, randomUUID());
  await t.api.delete(`/accounts/${closed}`);
  ids = {
    account,
    deposit: deposit.body.id,
    charge: charge.body.id,
    failed: failed.body.chargeId,
    refund: refund.body.id,
    closed,
  };
});

async function auditWith(corruption: string, params: unknown[] = []): Promise<string[]> {
  const client = new pg.Client({ connectionString: t.databaseUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(corruption, params);
    return (await auditLedger(client)).map((v) => v.rule);
  } finally {
    await client.query('ROLLBACK');
    await client.end();
  }
}

const rule = (start: string) => AUDIT_CHECKS.find((c) => c.rule.startsWith(start))!.rule;

describe('the auditor', () => {
  it('finds nothing wrong with books the API wrote', async () => {
    expect(await auditLedger(t.db)).toEqual([]);
  });

  it.each([
    [
      'a balance that differs from its ledger',
      'every balance',
      'UPDATE accounts SET balance = balance + 1 WHERE id = $1',
      'account',
    ],
    [
      'a succeeded charge without its ledger entry',
      'every succeeded charge',
      'DELETE FROM ledger_entries WHERE source_id = $1',
      'charge',
    ],
    [
      'a deposit without its ledger entry',
      'every deposit',
      'DELETE FROM ledger_entries WHERE source_id = $1',
      'deposit',
    ],
    [
      'a refund without its ledger entry',
      'every refund',
      'DELETE FROM ledger_entries WHERE source_id = $1',
      'refund',
    ],
    [
      'refunds that do not add up',
      'refunds never exceed',
      'UPDATE charges SET amount_refunded = amount_refunded + 1 WHERE id = $1',
      'charge',
    ],
    [
      'money moved after an account closed',
      'a closed account holds nothing',
      `UPDATE accounts SET closed_at = '2000-01-01' WHERE id = $1`,
      'closed',
    ],
    [
      'a stored response pointing at nothing',
      'every stored 2xx',
      `UPDATE idempotency_keys SET response_body = '{"id":"ch_ghost"}' WHERE response_body::jsonb ->> 'id' = $1`,
      'charge',
    ],
    [
      'a stored 402 pointing at nothing',
      'every stored 402',
      `UPDATE idempotency_keys SET response_body = '{"chargeId":"ch_ghost"}' WHERE response_body::jsonb ->> 'chargeId' = $1`,
      'failed',
    ],
    [
      'an event announcing a charge that failed as succeeded',
      'every movement event',
      `UPDATE events SET type = 'charge.succeeded' WHERE data -> 'object' ->> 'id' = $1`,
      'failed',
    ],
    [
      'an event for a deposit that does not exist',
      'every movement event',
      'DELETE FROM deposits WHERE id = $1',
      'deposit',
    ],
    [
      'a refund told twice',
      'no movement',
      `INSERT INTO events (merchant_id, id, type, data)
       SELECT merchant_id, id || '_again', type, data FROM events WHERE data -> 'object' ->> 'id' = $1`,
      'refund',
    ],
  ] as const)('catches %s', async (_, expected, sql, id) => {
    expect(await auditWith(sql, [ids[id]])).toContain(rule(expected));
  });

  it('catches a ledger entry for a failed charge, and one for a record that does not exist', async () => {
    const rules = await auditWith(
      `INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
       VALUES ($1, 'le_x1', $2, 'charge', -1, 0, $3), ($1, 'le_x2', $2, 'deposit', 1, 0, 'dep_ghost')`,
      [t.api.merchantId, ids.account, ids.failed],
    );
    expect(rules).toContain(rule('a failed charge'));
    expect(rules).toContain(rule('every ledger entry records'));
  });

  it('npm run audit: exit 0 and OK on sound books, exit 1 and a report naming the record otherwise', async () => {
    const audit = () =>
      promisify(execFile)(process.execPath, ['dist/audit/audit.cli.js'], {
        cwd: projectRoot,
        env: childEnv({ DATABASE_URL: t.databaseUrl, PROCESSOR_URL: '' }),
      });
    expect((await audit()).stdout).toMatch(/^OK: all \d+ checks hold/m);

    await t.db.query('UPDATE accounts SET balance = balance + 1 WHERE id = $1', [ids.account]);
    try {
      const failure = await audit().then(
        () => undefined,
        (error: { code: number; stdout: string }) => error,
      );
      expect(failure?.code).toBe(1);
      expect(failure?.stdout).toContain('every balance equals the sum of its ledger entries');
      expect(failure?.stdout).toContain(ids.account);
    } finally {
      await t.db.query('UPDATE accounts SET balance = balance - 1 WHERE id = $1', [ids.account]);
    }
  });
});
