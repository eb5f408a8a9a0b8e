import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every rule about a single column becomes a domain, a named type with its rule
 * (`currency_code`, `money_amount`, ...); a table CHECK is left only where a rule
 * relates two columns of a row. The rules are the same; what changes is what
 * PostgreSQL does per statement (docs/decisions/0018):
 *
 * - a table's CHECK constraints are kept as text in the catalog, and every
 *   statement that writes the table parses and plans all of them again before its
 *   first row (an UPDATE of one column re-reads the rules of all the others);
 * - a domain's rule is parsed and planned once per connection (the type cache), and
 *   checked only where a value of that column is written.
 *
 * A charge wrote 23 table CHECKs, and reading them back was 29 % of what PostgreSQL
 * executed for it (npm run bench:instructions). The same rule appearing in several
 * tables (a currency, an amount, a description) is now written once, under its name.
 *
 * Changing a column's type to a domain over the same base type keeps its data;
 * PostgreSQL checks every existing value against the domain's rule, and rebuilds the
 * indexes on the column.
 */
export class RulesOfOneColumnAsDomains1765180800000 implements MigrationInterface {
  name = 'RulesOfOneColumnAsDomains1765180800000';

  async up(db: QueryRunner): Promise<void> {
    for (const [name, { type, rule }] of Object.entries(DOMAINS)) {
      await db.query(`CREATE DOMAIN ${name} AS ${type} CONSTRAINT ${name}_check CHECK (${rule})`);
    }
    // One subcommand per ALTER TABLE: Citus refuses some of them beside any other.
    for (const { table, column, domain, constraint } of COLUMNS) {
      await db.query(`ALTER TABLE ${table} DROP CONSTRAINT ${constraint}`);
      await db.query(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE ${domain}`);
    }
  }

  /** The same rules as table CHECKs again, under their former names. */
  async down(db: QueryRunner): Promise<void> {
    for (const { table, column, domain, constraint } of COLUMNS) {
      const { type, rule } = DOMAINS[domain];
      await db.query(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE ${type}`);
      await db.query(
        `ALTER TABLE ${table} ADD CONSTRAINT ${constraint} CHECK (${rule.replaceAll('VALUE', column)})`,
      );
    }
    for (const name of Object.keys(DOMAINS).reverse()) await db.query(`DROP DOMAIN ${name}`);
  }
}

/** Each domain: its base type and its rule, VALUE being the column's value. */
export const DOMAINS = {
  // Shared by several tables.
  currency_code: { type: 'text', rule: `VALUE ~ '^[A-Z]{3}$'` },
  money_amount: { type: 'bigint', rule: `VALUE > 0 AND VALUE <= 1000000000000` },
  account_balance: { type: 'bigint', rule: `VALUE >= 0 AND VALUE <= 9007199254740991` },
  display_name: { type: 'text', rule: `char_length(VALUE) BETWEEN 1 AND 100` },
  description_text: { type: 'text', rule: `char_length(VALUE) <= 500` },
  jsonb_object: { type: 'jsonb', rule: `jsonb_typeof(VALUE) = 'object'` },
  sha256_hex: { type: 'text', rule: `char_length(VALUE) = 64 AND VALUE ~ '^[0-9a-f]+$'` },
  // One table's.
  account_version: { type: 'bigint', rule: `VALUE >= 1` },
  charge_status: { type: 'text', rule: `VALUE IN ('succeeded', 'failed')` },
  ledger_entry_type: {
    type: 'text',
    rule: `VALUE IN ('deposit', 'charge', 'refund', 'top_up')`,
  },
  ledger_amount: { type: 'bigint', rule: `VALUE <> 0` },
  idempotency_key: {
    type: 'text',
    rule: `char_length(VALUE) <= 255 AND VALUE ~ '^[\\x21-\\x7e]+$'`,
  },
  stored_response_status: { type: 'int', rule: `VALUE BETWEEN 200 AND 499` },
  event_type: { type: 'text', rule: `VALUE ~ '^[a-z_]+\\.[a-z_]+$'` },
  top_up_status: {
    type: 'text',
    rule: `VALUE IN ('pending', 'succeeded', 'declined', 'failed')`,
  },
  top_up_recovery_point: {
    type: 'text',
    rule: `VALUE IN ('started', 'refunding', 'finished')`,
  },
  webhook_url: { type: 'text', rule: `VALUE ~ '^https?://' AND char_length(VALUE) <= 2048` },
  jsonb_array: { type: 'jsonb', rule: `jsonb_typeof(VALUE) = 'array'` },
  delivery_status: { type: 'text', rule: `VALUE IN ('pending', 'delivered', 'failed')` },
} as const satisfies Record<string, { type: string; rule: string }>;

type Domain = keyof typeof DOMAINS;

/** Each column that takes a domain, and the table CHECK the domain replaces. */
export const COLUMNS: Array<{
  table: string;
  column: string;
  domain: Domain;
  constraint: string;
}> = [
  ['merchants', 'name', 'display_name'],
  ['merchants', 'api_key_hash', 'sha256_hex'],
  ['accounts', 'name', 'display_name'],
  ['accounts', 'currency', 'currency_code'],
  ['accounts', 'balance', 'account_balance'],
  ['accounts', 'metadata', 'jsonb_object'],
  ['accounts', 'version', 'account_version'],
  ['deposits', 'amount', 'money_amount'],
  ['deposits', 'currency', 'currency_code'],
  ['deposits', 'description', 'description_text'],
  ['charges', 'amount', 'money_amount'],
  ['charges', 'currency', 'currency_code'],
  ['charges', 'description', 'description_text'],
  ['charges', 'metadata', 'jsonb_object'],
  ['charges', 'status', 'charge_status'],
  ['refunds', 'amount', 'money_amount'],
  ['ledger_entries', 'type', 'ledger_entry_type'],
  ['ledger_entries', 'amount', 'ledger_amount'],
  ['ledger_entries', 'balance_after', 'account_balance'],
  ['idempotency_keys', 'key', 'idempotency_key'],
  ['idempotency_keys', 'fingerprint', 'sha256_hex'],
  ['idempotency_keys', 'response_status', 'stored_response_status'],
  ['top_ups', 'amount', 'money_amount'],
  ['top_ups', 'currency', 'currency_code'],
  ['top_ups', 'status', 'top_up_status'],
  ['top_ups', 'recovery_point', 'top_up_recovery_point'],
  ['events', 'type', 'event_type'],
  ['events', 'data', 'jsonb_object'],
  ['webhook_endpoints', 'url', 'webhook_url'],
  ['webhook_endpoints', 'description', 'description_text'],
  ['webhook_endpoints', 'secrets', 'jsonb_array'],
  ['webhook_deliveries', 'status', 'delivery_status'],
].map(([table, column, domain]) => ({
  table,
  column,
  domain: domain as Domain,
  constraint: `${table}_${column}_check`,
}));
