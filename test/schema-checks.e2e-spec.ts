import { describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import type { QueryRunner } from 'typeorm';
import { CheaperKeyChecks1765094400000 } from '../src/database/migrations/1765094400000-cheaper-key-checks.js';
import { useTestDatabase } from './support/databases.js';
import { isCitus } from './support/db-faults.js';

/**
 * The CHECK constraints of idempotency_keys were rewritten to cost less
 * (migration 1765094400000, docs/decisions/0017): these tests hold the new rules
 * to the old ones, value by value, at every boundary, on the real server.
 */
const db = useTestDatabase();

/** The rules as the first schema wrote them. */
const BEFORE = {
  key: `^[\\x21-\\x7e]{1,255}$`,
  fingerprint: `^[0-9a-f]{64}$`,
};

const HEX64 = 'a'.repeat(63) + '0';
const KEYS: Array<[string, boolean]> = [
  ['', false],
  ['k', true],
  ['!', true],
  ['~', true],
  ['x'.repeat(254), true],
  ['x'.repeat(255), true],
  ['x'.repeat(256), false],
  ['~'.repeat(1000), false],
  [' ', false],
  ['order 42', false],
  ['order-42 ', false],
  ['\t', false],
  ['line\nbreak', false],
  ['\x7f', false],
  ['\x1f', false],
  ['é', false],
  ['clé', false],
  ['€'.repeat(85), false], // 255 bytes, not ASCII
  ['a'.repeat(254) + 'é', false],
];
const FINGERPRINTS: Array<[string, boolean]> = [
  [HEX64, true],
  ['0123456789abcdef'.repeat(4), true],
  ['a'.repeat(63), false],
  ['a'.repeat(65), false],
  ['', false],
  ['A'.repeat(64), false],
  ['a'.repeat(63) + 'g', false],
  ['a'.repeat(63) + ' ', false],
  ['é'.repeat(64), false],
  ['a'.repeat(32) + '\n' + 'a'.repeat(31), false],
];

/** Whether a key row with these values is stored, or refused by the named CHECK. */
async function stored(
  client: pg.PoolClient,
  row: { key: string; fingerprint: string },
  constraint: string,
): Promise<boolean> {
  await client.query('SAVEPOINT probe');
  try {
    await client.query(
      `INSERT INTO idempotency_keys (merchant_id, key, request_method, request_path, fingerprint,
                                     response_status, response_content_type, response_body, expires_at)
       VALUES ('mch_checks', $1, 'POST', '/charges', $2, 201, 'application/json', '{}', now() + interval '1 day')`,
      [row.key, row.fingerprint],
    );
    return true;
  } catch (error) {
    const { code, constraint: refusedBy } = error as { code?: string; constraint?: string };
    if (code === '23514' && refusedBy === constraint) return false;
    throw error;
  } finally {
    await client.query('ROLLBACK TO SAVEPOINT probe');
  }
}

async function inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.sql.connect();
  try {
    await client.query('BEGIN');
    // Citus: DDL and writes to a reference table in one transaction, over one connection per node.
    if (await isCitus(db.sql)) {
      await client.query(`SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`);
    }
    await client.query(
      `INSERT INTO merchants (id, name, api_key_hash) VALUES ('mch_checks', 'Checks', $1)`,
      ['f'.repeat(64)],
    );
    return await work(client);
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

async function oldRule(client: pg.PoolClient, value: string, pattern: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>('SELECT $1::text ~ $2 AS ok', [
    value,
    pattern,
  ]);
  return rows[0].ok;
}

describe('the idempotency_keys CHECK constraints', () => {
  it('store exactly the keys the old rule (1 to 255 visible ASCII characters) stored, and refuse the rest', async () => {
    await inTransaction(async (client) => {
      for (const [key, expected] of KEYS) {
        const verdict = await stored(
          client,
          { key, fingerprint: HEX64 },
          'idempotency_keys_key_check',
        );
        expect({ key, stored: verdict }).toEqual({ key, stored: expected });
        expect({ key, stored: verdict }).toEqual({
          key,
          stored: await oldRule(client, key, BEFORE.key),
        });
      }
    });
  });

  it('store exactly the fingerprints the old rule (64 lower-case hex digits) stored, and refuse the rest', async () => {
    await inTransaction(async (client) => {
      for (const [fingerprint, expected] of FINGERPRINTS) {
        const verdict = await stored(
          client,
          { key: `fp-${fingerprint.length}-${expected}`, fingerprint },
          'idempotency_keys_fingerprint_check',
        );
        expect({ fingerprint, stored: verdict }).toEqual({ fingerprint, stored: expected });
        expect({ fingerprint, stored: verdict }).toEqual({
          fingerprint,
          stored: await oldRule(client, fingerprint, BEFORE.fingerprint),
        });
      }
    });
  });

  it('use no bounded repetition in any CHECK of the tables a charge writes (each costs a regex counter per character)', async () => {
    const { rows } = await db.sql.query<{ name: string; definition: string }>(
      `SELECT conname AS name, pg_get_constraintdef(oid) AS definition
         FROM pg_constraint
        WHERE contype = 'c'
          AND conrelid::regclass::text IN ('idempotency_keys', 'accounts', 'charges', 'ledger_entries', 'events')`,
    );
    expect(rows.length).toBeGreaterThan(15);
    const bounded = rows.filter((r) => /~.*\{\d+,\d*\}/.test(r.definition));
    expect(bounded).toEqual([]);
  });

  it('go back to the old rules, under the same names, when the migration is reverted', async () => {
    const definitions = async (client: pg.PoolClient) =>
      (
        await client.query<{ name: string; definition: string }>(
          `SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
            WHERE conrelid = 'idempotency_keys'::regclass AND contype = 'c' ORDER BY conname`,
        )
      ).rows;
    await inTransaction(async (client) => {
      const runner = { query: (sql: string) => client.query(sql) } as unknown as QueryRunner;
      const after = await definitions(client);
      await new CheaperKeyChecks1765094400000().down(runner);
      const reverted = await definitions(client);
      expect(reverted.map((r) => r.name)).toEqual(after.map((r) => r.name));
      expect(reverted.find((r) => r.name === 'idempotency_keys_key_check')?.definition).toContain(
        '{1,255}',
      );
      expect(
        reverted.find((r) => r.name === 'idempotency_keys_fingerprint_check')?.definition,
      ).toContain('{64}');
      expect(
        await stored(
          client,
          { key: 'x'.repeat(256), fingerprint: HEX64 },
          'idempotency_keys_key_check',
        ),
      ).toBe(false);

      await new CheaperKeyChecks1765094400000().up(runner);
      expect(await definitions(client)).toEqual(after);
    });
  });
});
