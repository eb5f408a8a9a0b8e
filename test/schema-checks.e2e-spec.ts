import { describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import type { QueryRunner } from 'typeorm';
import { CheaperKeyChecks1765094400000 } from '../src/database/migrations/1765094400000-cheaper-key-checks.js';
import {
  COLUMNS,
  DOMAINS,
  RulesOfOneColumnAsDomains1765180800000,
} from '../src/database/migrations/1765180800000-rules-of-one-column-as-domains.js';
import {
  RECOVERY_POINT_DOMAIN_COLUMNS,
  RecoveryPointsUnderTheKey1765267200000,
} from '../src/database/migrations/1765267200000-recovery-points-under-the-key.js';
import { WebhookEndpointLifecycle1765440000000 } from '../src/database/migrations/1765440000000-webhook-endpoint-lifecycle.js';
import { useTestDatabase } from './support/databases.js';
import { isCitus } from './support/db-faults.js';

/**
 * The rules of the schema were rewritten twice to cost less per statement: the
 * key's and the fingerprint's checks without a bounded repetition (migration
 * 1765094400000, decision 0017), then every rule about one column as a domain
 * (migration 1765180800000, decision 0018). These tests hold the new rules to the
 * old ones, value by value, at every boundary, on the real server. Migration
 * 1765267200000 since moved the recovery point of a top-up to the idempotency
 * module's table (decision 0020): its domain went with the column, a new one came.
 */
const db = useTestDatabase();

/** The domains now: 1765180800000's, less the one whose column 1765267200000 dropped, and its own. */
const DOMAIN_NOW: Record<string, { type: string }> = {
  ...Object.fromEntries(Object.entries(DOMAINS).filter(([d]) => d !== 'top_up_recovery_point')),
  code_name: { type: 'text' },
};
/** Each column that takes a domain now. */
const COLUMNS_NOW = [
  ...COLUMNS.filter((c) => c.domain !== 'top_up_recovery_point'),
  ...RECOVERY_POINT_DOMAIN_COLUMNS,
];

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

/** Whether a key row with these values is stored, or refused by the named constraint. */
function stored(
  client: pg.PoolClient,
  row: { key: string; fingerprint: string },
  constraint: string,
): Promise<boolean> {
  return passes(
    client,
    `INSERT INTO idempotency_keys (merchant_id, key, request_method, request_path, fingerprint,
                                   response_status, response_content_type, response_body, expires_at)
     VALUES ('mch_checks', $1, 'POST', '/charges', $2, 201, 'application/json', '{}', now() + interval '1 day')`,
    [row.key, row.fingerprint],
    constraint,
  );
}

/** Whether `value` is a value of the domain, or refused by the domain's rule. */
function admitted(client: pg.PoolClient, domain: string, value: string): Promise<boolean> {
  const base = DOMAIN_NOW[domain].type;
  return passes(client, `SELECT $1::text::${base}::${domain}`, [value], `${domain}_check`);
}

/**
 * Runs `sql` under a savepoint, undone afterwards: true if it ran, false if the
 * CHECK named `constraint` refused it; any other error is thrown.
 */
async function passes(
  client: pg.PoolClient,
  sql: string,
  params: unknown[],
  constraint: string,
): Promise<boolean> {
  await client.query('SAVEPOINT probe');
  try {
    await client.query(sql, params);
    return true;
  } catch (error) {
    if (refusedBy(error) === constraint) return false;
    throw error;
  } finally {
    await client.query('ROLLBACK TO SAVEPOINT probe');
  }
}

/**
 * The CHECK constraint that refused a row, if that is what the error is. A Citus
 * coordinator relays a worker's error without its constraint field, naming the
 * shard's copy of the constraint (`…_check_102189`) in the message instead.
 */
function refusedBy(error: unknown): string | undefined {
  const { code, constraint, message } = error as {
    code?: string;
    constraint?: string;
    message?: string;
  };
  if (code !== '23514') return undefined;
  const named = constraint ?? /violates check constraint "([^"]+)"/.exec(message ?? '')?.[1];
  return named?.replace(/_\d+$/, '');
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

/** Values at each domain's boundaries, and whether its rule admits them. */
const CASES: Record<string, Array<[string, boolean]>> = {
  currency_code: [
    ['USD', true],
    ['EUR', true],
    ['usd', false],
    ['US', false],
    ['USDD', false],
    ['', false],
    ['U$D', false],
  ],
  money_amount: [
    ['1', true],
    ['1000000000000', true],
    ['0', false],
    ['-1', false],
    ['1000000000001', false],
  ],
  account_balance: [
    ['0', true],
    ['9007199254740991', true],
    ['-1', false],
    ['9007199254740992', false],
  ],
  display_name: [
    ['a', true],
    ['x'.repeat(100), true],
    ['', false],
    ['x'.repeat(101), false],
  ],
  description_text: [
    ['', true],
    ['x'.repeat(500), true],
    ['é'.repeat(500), true],
    ['x'.repeat(501), false],
  ],
  jsonb_object: [
    ['{}', true],
    ['{"a": 1}', true],
    ['[]', false],
    ['"x"', false],
    ['null', false],
    ['1', false],
  ],
  sha256_hex: FINGERPRINTS.map(([value, ok]) => [value, ok]),
  account_version: [
    ['1', true],
    ['42', true],
    ['0', false],
    ['-1', false],
  ],
  charge_status: [
    ['succeeded', true],
    ['failed', true],
    ['pending', false],
    ['Succeeded', false],
  ],
  ledger_entry_type: [
    ['deposit', true],
    ['charge', true],
    ['refund', true],
    ['top_up', true],
    ['payout', false],
    ['', false],
  ],
  ledger_amount: [
    ['-1', true],
    ['1', true],
    ['0', false],
  ],
  idempotency_key: KEYS,
  stored_response_status: [
    ['200', true],
    ['201', true],
    ['499', true],
    ['199', false],
    ['500', false],
  ],
  event_type: [
    ['charge.succeeded', true],
    ['top_up.failed', true],
    ['Charge.succeeded', false],
    ['charge', false],
    ['charge.succeeded.x', false],
    ['charge.', false],
  ],
  top_up_status: [
    ['pending', true],
    ['succeeded', true],
    ['declined', true],
    ['failed', true],
    ['refunding', false],
  ],
  code_name: [
    ['started', true],
    ['top-up', true],
    ['refunding', true],
    ['x'.repeat(50), true],
    ['x'.repeat(51), false],
    ['', false],
    ['Started', false],
    ['1st', false],
    ['-x', false],
    ['top up', false],
  ],
  webhook_url: [
    ['https://example.com/hooks', true],
    ['http://x', true],
    [`https://${'x'.repeat(2040)}`, true],
    [`https://${'x'.repeat(2041)}`, false],
    ['ftp://example.com', false],
    ['example.com', false],
  ],
  jsonb_array: [
    ['[]', true],
    ['[{"secret": "s"}]', true],
    ['{}', false],
  ],
  delivery_status: [
    ['pending', true],
    ['delivered', true],
    ['failed', true],
    ['sent', false],
  ],
};

/**
 * The table CHECKs as the schema had them before 1765180800000, as PostgreSQL
 * prints them. Reverting the migration gives back exactly these, but for the two
 * in CHANGED.
 */
const BEFORE_DOMAINS: Record<string, string> = {
  merchants_name_check: `CHECK (((char_length(name) >= 1) AND (char_length(name) <= 100)))`,
  merchants_api_key_hash_check: `CHECK ((api_key_hash ~ '^[0-9a-f]{64}$'::text))`,
  accounts_name_check: `CHECK (((char_length(name) >= 1) AND (char_length(name) <= 100)))`,
  accounts_currency_check: `CHECK ((currency ~ '^[A-Z]{3}$'::text))`,
  accounts_balance_check: `CHECK (((balance >= 0) AND (balance <= '9007199254740991'::bigint)))`,
  accounts_metadata_check: `CHECK ((jsonb_typeof(metadata) = 'object'::text))`,
  accounts_version_check: `CHECK ((version >= 1))`,
  deposits_amount_check: `CHECK (((amount > 0) AND (amount <= '1000000000000'::bigint)))`,
  deposits_currency_check: `CHECK ((currency ~ '^[A-Z]{3}$'::text))`,
  deposits_description_check: `CHECK ((char_length(description) <= 500))`,
  charges_amount_check: `CHECK (((amount > 0) AND (amount <= '1000000000000'::bigint)))`,
  charges_currency_check: `CHECK ((currency ~ '^[A-Z]{3}$'::text))`,
  charges_description_check: `CHECK ((char_length(description) <= 500))`,
  charges_metadata_check: `CHECK ((jsonb_typeof(metadata) = 'object'::text))`,
  charges_status_check: `CHECK ((status = ANY (ARRAY['succeeded'::text, 'failed'::text])))`,
  refunds_amount_check: `CHECK (((amount > 0) AND (amount <= '1000000000000'::bigint)))`,
  ledger_entries_type_check: `CHECK ((type = ANY (ARRAY['deposit'::text, 'charge'::text, 'refund'::text, 'top_up'::text])))`,
  ledger_entries_amount_check: `CHECK ((amount <> 0))`,
  ledger_entries_balance_after_check: `CHECK ((balance_after >= 0))`,
  idempotency_keys_key_check: `CHECK (((char_length(key) <= 255) AND (key ~ '^[\\x21-\\x7e]+$'::text)))`,
  idempotency_keys_fingerprint_check: `CHECK (((char_length(fingerprint) = 64) AND (fingerprint ~ '^[0-9a-f]+$'::text)))`,
  idempotency_keys_response_status_check: `CHECK (((response_status >= 200) AND (response_status <= 499)))`,
  top_ups_amount_check: `CHECK (((amount > 0) AND (amount <= '1000000000000'::bigint)))`,
  top_ups_currency_check: `CHECK ((currency ~ '^[A-Z]{3}$'::text))`,
  top_ups_status_check: `CHECK ((status = ANY (ARRAY['pending'::text, 'succeeded'::text, 'declined'::text, 'failed'::text])))`,
  top_ups_recovery_point_check: `CHECK ((recovery_point = ANY (ARRAY['started'::text, 'refunding'::text, 'finished'::text])))`,
  events_type_check: `CHECK ((type ~ '^[a-z_]+\\.[a-z_]+$'::text))`,
  events_data_check: `CHECK ((jsonb_typeof(data) = 'object'::text))`,
  webhook_endpoints_url_check: `CHECK (((url ~ '^https?://'::text) AND (char_length(url) <= 2048)))`,
  webhook_endpoints_description_check: `CHECK ((char_length(description) <= 500))`,
  webhook_endpoints_secrets_check: `CHECK ((jsonb_typeof(secrets) = 'array'::text))`,
  webhook_deliveries_status_check: `CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])))`,
};

/** Where a domain's rule is not the old CHECK's, and why the two admit the same rows. */
const CHANGED: Record<string, string> = {
  // The fingerprint's cheaper form (decision 0017): the same strings (sha256_hex's cases).
  merchants_api_key_hash_check: `CHECK (((char_length(api_key_hash) = 64) AND (api_key_hash ~ '^[0-9a-f]+$'::text)))`,
  // A balance after an entry is an account's balance, which never exceeded the bound.
  ledger_entries_balance_after_check: `CHECK (((balance_after >= 0) AND (balance_after <= '9007199254740991'::bigint)))`,
};

/** The schema's rules as the catalog has them: column types and CHECKs, of tables and domains. */
async function catalog(client: pg.PoolClient | pg.Pool) {
  const { rows: columns } = await client.query<{ column: string; type: string }>(
    `SELECT attrelid::regclass::text || '.' || attname AS column, format_type(atttypid, atttypmod) AS type
       FROM pg_attribute
      WHERE attrelid::regclass::text = ANY ($1) AND attnum > 0 AND NOT attisdropped
      ORDER BY 1`,
    [[...new Set(COLUMNS_NOW.map((c) => c.table))]],
  );
  const { rows: checks } = await client.query<{
    name: string;
    definition: string;
    columns: number;
  }>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS definition,
            coalesce(array_length(conkey, 1), 0) AS columns
       FROM pg_constraint
      WHERE contype = 'c' AND connamespace = current_schema()::regnamespace
      ORDER BY conname`,
  );
  return { columns, checks };
}

describe('the rules of the schema', () => {
  it('store exactly the keys the first rule (1 to 255 visible ASCII characters) stored, and refuse the rest', async () => {
    await inTransaction(async (client) => {
      for (const [key, expected] of KEYS) {
        const verdict = await stored(client, { key, fingerprint: HEX64 }, 'idempotency_key_check');
        expect({ key, stored: verdict }).toEqual({ key, stored: expected });
        expect({ key, stored: verdict }).toEqual({
          key,
          stored: await oldRule(client, key, BEFORE.key),
        });
      }
    });
  });

  it('store exactly the fingerprints the first rule (64 lower-case hex digits) stored, and refuse the rest', async () => {
    await inTransaction(async (client) => {
      for (const [fingerprint, expected] of FINGERPRINTS) {
        const verdict = await stored(
          client,
          { key: `fp-${fingerprint.length}-${expected}`, fingerprint },
          'sha256_hex_check',
        );
        expect({ fingerprint, stored: verdict }).toEqual({ fingerprint, stored: expected });
        expect({ fingerprint, stored: verdict }).toEqual({
          fingerprint,
          stored: await oldRule(client, fingerprint, BEFORE.fingerprint),
        });
      }
    });
  });

  it('keep every rule about one column in a domain, and table CHECKs only for rules across columns', async () => {
    const { columns, checks } = await catalog(db.sql);
    const typeOf = new Map(columns.map((c) => [c.column, c.type]));
    for (const { table, column, domain } of COLUMNS_NOW) {
      expect({ column: `${table}.${column}`, type: typeOf.get(`${table}.${column}`) }).toEqual({
        column: `${table}.${column}`,
        type: domain,
      });
    }
    const tableChecks = checks.filter((c) => c.columns > 0);
    expect(tableChecks.length).toBeGreaterThanOrEqual(6); // 7 until the top-up's recovery point moved
    expect(tableChecks.filter((c) => c.columns < 2)).toEqual([]);
    expect(checks.filter((c) => c.columns === 0).map((c) => c.name)).toEqual(
      Object.keys(DOMAIN_NOW)
        .map((d) => `${d}_check`)
        .sort(),
    );
  });

  it("admit and refuse in each domain exactly the values the table's CHECK admitted and refused", async () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(DOMAIN_NOW).sort());
    await inTransaction(async (client) => {
      for (const [domain, cases] of Object.entries(CASES)) {
        for (const [value, expected] of cases) {
          const verdict = await admitted(client, domain, value);
          expect({ domain, value, admitted: verdict }).toEqual({
            domain,
            value,
            admitted: expected,
          });
        }
      }
    });
  });

  it('use no bounded repetition in any CHECK (each costs a regex counter per character)', async () => {
    const { checks } = await catalog(db.sql);
    expect(checks.length).toBeGreaterThan(20);
    const bounded = checks.filter((r) => /~.*\{\d+,\d*\}/.test(r.definition));
    expect(bounded).toEqual([]);
  });

  it('go back to the same table CHECKs, under their names, when the domains are reverted, and forward again', async () => {
    await inTransaction(async (client) => {
      const runner = {
        query: async (sql: string, params?: unknown[]) => (await client.query(sql, params)).rows,
      } as unknown as QueryRunner;
      const after = await catalog(client);
      await new WebhookEndpointLifecycle1765440000000().down(runner); // uses a domain
      await new RecoveryPointsUnderTheKey1765267200000().down(runner);
      await new RulesOfOneColumnAsDomains1765180800000().down(runner);
      const reverted = await catalog(client);
      const restored = Object.fromEntries(
        reverted.checks.filter((c) => c.name in BEFORE_DOMAINS).map((c) => [c.name, c.definition]),
      );
      expect(restored).toEqual({ ...BEFORE_DOMAINS, ...CHANGED });
      expect(reverted.checks.filter((c) => c.columns === 0)).toEqual([]);
      expect(reverted.columns.filter((c) => c.type in DOMAINS)).toEqual([]);
      expect(
        await stored(
          client,
          { key: 'x'.repeat(256), fingerprint: HEX64 },
          'idempotency_keys_key_check',
        ),
      ).toBe(false);

      // Further back: the key's and the fingerprint's first rules (decision 0017), and forward.
      const keyChecks = (c: typeof reverted) =>
        c.checks.filter((r) => r.name.startsWith('idempotency_keys_'));
      await new CheaperKeyChecks1765094400000().down(runner);
      const first = await catalog(client);
      expect(keyChecks(first).map((r) => r.name)).toEqual(keyChecks(reverted).map((r) => r.name));
      expect(
        first.checks.find((r) => r.name === 'idempotency_keys_key_check')?.definition,
      ).toContain('{1,255}');
      expect(
        first.checks.find((r) => r.name === 'idempotency_keys_fingerprint_check')?.definition,
      ).toContain('{64}');
      expect(
        await stored(
          client,
          { key: 'x'.repeat(256), fingerprint: HEX64 },
          'idempotency_keys_key_check',
        ),
      ).toBe(false);
      await new CheaperKeyChecks1765094400000().up(runner);
      expect(await catalog(client)).toEqual(reverted);

      await new RulesOfOneColumnAsDomains1765180800000().up(runner);
      await new RecoveryPointsUnderTheKey1765267200000().up(runner);
      await new WebhookEndpointLifecycle1765440000000().up(runner);
      expect(await catalog(client)).toEqual(after);
    });
  });
});
