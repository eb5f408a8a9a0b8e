import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The claim also refuses a key whose response is stored, so the lookup of a
 * completed key can travel in the claim's round trip (decision 0015): BEGIN, the
 * lookup, this claim and the handler's first statement leave together, and when
 * the key turns out to be done, PostgreSQL refuses the handler's statements
 * instead of running them. It raises the error a second INSERT of the key would
 * (a unique violation of idempotency_keys_pkey), which the API already answers by
 * replaying the stored response.
 *
 * The lock comes first: once it is ours, no other transaction can be storing a
 * response under this key, and the check (a statement of its own, with a fresh
 * snapshot) sees every one already committed. The one-argument claim stays for an
 * instance of the previous release still running during a rolling deploy.
 */
export class ClaimChecksCompleted1765008000000 implements MigrationInterface {
  name = 'ClaimChecksCompleted1765008000000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE FUNCTION claim_idempotency_key(lock_id bigint, merchant text, idempotency_key text)
      RETURNS void LANGUAGE plpgsql AS $$
      BEGIN
        -- Transaction-scoped: released by COMMIT or ROLLBACK, never waited for.
        IF NOT pg_try_advisory_xact_lock(lock_id) THEN
          RAISE EXCEPTION 'idempotency key % is in use by another transaction', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
        IF EXISTS (SELECT 1 FROM idempotency_keys
                    WHERE merchant_id = merchant AND key = idempotency_key AND expires_at > now()) THEN
          RAISE EXCEPTION 'idempotency key % has a stored response', lock_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'idempotency_keys_pkey';
        END IF;
      END
      $$`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query('DROP FUNCTION claim_idempotency_key(bigint, text, text)');
  }
}
