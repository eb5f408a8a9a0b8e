import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The claim on an idempotency key, as a statement that fails when the key is
 * taken. The API sends it with BEGIN and the handler's first statement without
 * waiting for its answer (pipelining): when it fails, the transaction is aborted,
 * so PostgreSQL refuses the statements queued behind it instead of running them.
 * A query answering `false` (pg_try_advisory_xact_lock alone) could not stop them.
 */
export class IdempotencyKeyLock1764576000000 implements MigrationInterface {
  name = 'IdempotencyKeyLock1764576000000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE FUNCTION claim_idempotency_key(lock_id bigint) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        -- Transaction-scoped: released by COMMIT or ROLLBACK, never waited for.
        IF NOT pg_try_advisory_xact_lock(lock_id) THEN
          RAISE EXCEPTION 'idempotency key % is in use by another transaction', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
      END
      $$`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query('DROP FUNCTION claim_idempotency_key(bigint)');
  }
}
