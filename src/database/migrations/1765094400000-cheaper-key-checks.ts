import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The same rules for a stored key, checked far more cheaply: PostgreSQL
 * runs the CHECK of every row written, and the two below were a quarter of what
 * it executed per charge (npm run bench:instructions; docs/decisions/0017). Its regular
 * expression engine unrolls a bounded repetition such as `{1,255}` into that many
 * copies of the atom, and steps through all of them for every character; a length
 * test and an unbounded class accept and refuse exactly the same strings (the class
 * is ASCII, so characters and bytes agree) at a fraction of the price.
 *
 * The constraints keep their names, and the whole table is checked once against
 * the new rules (the old ones admitted exactly the same rows).
 */
export class CheaperKeyChecks1765094400000 implements MigrationInterface {
  name = 'CheaperKeyChecks1765094400000';

  async up(db: QueryRunner): Promise<void> {
    // One subcommand per ALTER TABLE: Citus refuses ADD CONSTRAINT beside any other.
    await db.query(`ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_key_check`);
    await db.query(`
      ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_key_check
        CHECK (char_length(key) <= 255 AND key ~ '^[\\x21-\\x7e]+$')`);
    await db.query(
      `ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_fingerprint_check`,
    );
    await db.query(`
      ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_fingerprint_check
        CHECK (char_length(fingerprint) = 64 AND fingerprint ~ '^[0-9a-f]+$')`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_key_check`);
    await db.query(`
      ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_key_check
        CHECK (key ~ '^[\\x21-\\x7e]{1,255}$')`);
    await db.query(
      `ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_fingerprint_check`,
    );
    await db.query(`
      ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_fingerprint_check
        CHECK (fingerprint ~ '^[0-9a-f]{64}$')`);
  }
}
