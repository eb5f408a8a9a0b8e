import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What an account needs to be replaced (PUT), read conditionally (ETag) and closed
 * (DELETE). Invariants, in the schema as well as in code:
 * - `version` grows by one with every change of the account (its fields, its
 *   balance, its closing); the ETag is this number, so If-Match is a
 *   compare-and-set on it;
 * - a closed account holds nothing, and stays closed.
 */
export class AccountLifecycle1764662400000 implements MigrationInterface {
  name = 'AccountLifecycle1764662400000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      ALTER TABLE accounts
        ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
        ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
        ADD COLUMN closed_at timestamptz,
        ADD CONSTRAINT accounts_closed_is_empty CHECK (closed_at IS NULL OR balance = 0)`);
    await db.query(`
      COMMENT ON COLUMN accounts.version IS
        '+1 on every change of the row: name or metadata (AccountsService.replace), balance (LedgerService.post), closing (AccountsService.close). The ETag.'`);
    await db.query(`
      COMMENT ON COLUMN accounts.closed_at IS
        'Set once, by AccountsService.close, on an empty account; a closed account is never moved again.'`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      ALTER TABLE accounts
        DROP CONSTRAINT accounts_closed_is_empty,
        DROP COLUMN closed_at, DROP COLUMN version, DROP COLUMN metadata`);
  }
}
