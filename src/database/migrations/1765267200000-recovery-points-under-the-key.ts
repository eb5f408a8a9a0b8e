import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The idempotency protocol gets one owner (docs/decisions/0020). A request run in
 * atomic phases (a card top-up) kept its recovery point, its lease and its tries
 * in the top-up's own row; they move to `idempotency_recovery_points`, which the
 * idempotency module writes for any request in phases, keyed like
 * `idempotency_keys`. A top-up keeps what it is: its amount, its status, the
 * processor's answer, and the key of the request that made it.
 *
 * The claim learns two things:
 * - it deletes an expired stored response under the lock (the key counts as
 *   unused, contract §4.9): the response stored at COMMIT then replaces it, and
 *   the API no longer reads the row first to know whether to delete it;
 * - a request under way in phases holds its key (lock_not_available, 409) for any
 *   other request with it; the phases' own retry (in_phases) resumes it instead.
 *
 * Top-ups in flight move with their recovery point, lease and tries. One that the
 * previous release left `refunding` (the account refused the money; the answer
 * stored, the card being refunded) keeps its answer, and its refund, if the
 * processor never confirmed it, is left to reconciliation (npm run audit names
 * the payment): the new phases store the answer only once the refund is done.
 * The three-argument claim stays for instances of the previous release during a
 * rolling deploy; the one-argument claim of two releases back goes.
 */
export class RecoveryPointsUnderTheKey1765267200000 implements MigrationInterface {
  name = 'RecoveryPointsUnderTheKey1765267200000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE DOMAIN code_name AS text
        CONSTRAINT code_name_check CHECK (char_length(VALUE) <= 50 AND VALUE ~ '^[a-z][a-z_-]*$')`);
    // A request under way in atomic phases: from the end of its first phase to the
    // commit of its answer, which deletes this row and stores the answer under the key.
    await db.query(`
      CREATE TABLE idempotency_recovery_points (
        merchant_id      text NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
        key              idempotency_key NOT NULL,
        request_method   text NOT NULL,
        request_path     text NOT NULL,
        fingerprint      sha256_hex NOT NULL,
        -- Whose phases: that feature's completer resumes it (top-up).
        operation        code_name NOT NULL,
        -- Where it rests: the phase that comes next resumes from here.
        recovery_point   code_name NOT NULL,
        -- A lease: a run (a request, or a completer) drives it until then.
        locked_until     timestamptz,
        -- Tries of the phase at this recovery point whose outcome stayed unknown.
        attempts         int NOT NULL DEFAULT 0,
        last_error       text,
        next_attempt_at  timestamptz NOT NULL DEFAULT now(),
        -- When the key was first used; its stored answer's lifetime counts from here.
        created_at       timestamptz NOT NULL DEFAULT now(),
        updated_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, key)
      )`);
    // What a completer looks for.
    await db.query(
      `CREATE INDEX idempotency_recovery_points_due ON idempotency_recovery_points (next_attempt_at)`,
    );
    if (await isCitus(db)) {
      await db.query(`SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`);
      await db.query(
        `SELECT create_distributed_table('idempotency_recovery_points', 'merchant_id', colocate_with => 'accounts')`,
      );
    }

    await db.query(`
      INSERT INTO idempotency_recovery_points
        (merchant_id, key, request_method, request_path, fingerprint, operation, recovery_point,
         locked_until, attempts, last_error, next_attempt_at, created_at, updated_at)
      SELECT merchant_id, idempotency_key, 'POST', request_path, fingerprint, 'top-up',
             recovery_point, locked_until, attempts, last_error, next_attempt_at, created_at, updated_at
        FROM top_ups
       WHERE recovery_point = 'started'`);
    // One subcommand per ALTER TABLE: Citus refuses some of them beside any other.
    // Dropping recovery_point drops the CHECK and the two indexes that name it.
    for (const column of MOVED_COLUMNS) {
      await db.query(`ALTER TABLE top_ups DROP COLUMN ${column}`);
    }
    await db.query('DROP DOMAIN top_up_recovery_point');
    // One top-up in flight per key: the phases find theirs by it.
    await db.query(`
      CREATE UNIQUE INDEX top_ups_pending_key ON top_ups (merchant_id, idempotency_key)
        WHERE status = 'pending'`);

    await db.query(`
      CREATE FUNCTION claim_idempotency_key(lock_id bigint, merchant text, idempotency_key text,
                                            in_phases boolean)
      RETURNS void LANGUAGE plpgsql AS $$
      DECLARE
        stored_until timestamptz;
      BEGIN
        -- Transaction-scoped: released by COMMIT or ROLLBACK, never waited for.
        IF NOT pg_try_advisory_xact_lock(lock_id) THEN
          RAISE EXCEPTION 'idempotency key % is in use by another transaction', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
        -- Under the lock nobody else stores a response for this key, and this
        -- statement's fresh snapshot sees every one already committed.
        SELECT expires_at INTO stored_until FROM idempotency_keys
         WHERE merchant_id = merchant AND key = idempotency_key;
        IF stored_until > now() THEN
          -- The error a second INSERT of the key would raise: the API replays the row.
          RAISE EXCEPTION 'idempotency key % has a stored response', lock_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'idempotency_keys_pkey';
        ELSIF FOUND THEN
          DELETE FROM idempotency_keys WHERE merchant_id = merchant AND key = idempotency_key;
        END IF;
        IF NOT in_phases AND EXISTS (SELECT 1 FROM idempotency_recovery_points
                                      WHERE merchant_id = merchant AND key = idempotency_key) THEN
          RAISE EXCEPTION 'idempotency key % is in use by a request in phases', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
      END
      $$`);
    await db.query('DROP FUNCTION claim_idempotency_key(bigint)');
  }

  /** The previous schema, with the top-ups in flight back in their rows. */
  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE FUNCTION claim_idempotency_key(lock_id bigint) RETURNS void
      LANGUAGE plpgsql AS $$
      BEGIN
        IF NOT pg_try_advisory_xact_lock(lock_id) THEN
          RAISE EXCEPTION 'idempotency key % is in use by another transaction', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
      END
      $$`);
    await db.query('DROP FUNCTION claim_idempotency_key(bigint, text, text, boolean)');
    await db.query('DROP INDEX top_ups_pending_key');
    await db.query(`
      CREATE DOMAIN top_up_recovery_point AS text
        CONSTRAINT top_up_recovery_point_check CHECK (VALUE IN ('started', 'refunding', 'finished'))`);
    for (const [column, definition] of Object.entries(FORMER_COLUMNS)) {
      await db.query(`ALTER TABLE top_ups ADD COLUMN ${column} ${definition}`);
    }
    await db.query(`
      UPDATE top_ups t
         SET recovery_point = 'started', request_path = p.request_path, fingerprint = p.fingerprint,
             locked_until = p.locked_until, attempts = p.attempts, last_error = p.last_error,
             next_attempt_at = p.next_attempt_at
        FROM idempotency_recovery_points p
       WHERE t.status = 'pending' AND p.operation = 'top-up'
         AND p.merchant_id = t.merchant_id AND p.key = t.idempotency_key`);
    for (const column of ['request_path', 'fingerprint']) {
      // Finished top-ups' requests are not kept any more: an empty text stands for them.
      await db.query(`UPDATE top_ups SET ${column} = '' WHERE ${column} IS NULL`);
      await db.query(`ALTER TABLE top_ups ALTER COLUMN ${column} SET NOT NULL`);
    }
    await db.query(
      `ALTER TABLE top_ups ADD CONSTRAINT top_ups_check CHECK ((status = 'pending') = (recovery_point = 'started'))`,
    );
    await db.query(`
      CREATE UNIQUE INDEX top_ups_unfinished_key ON top_ups (merchant_id, idempotency_key)
        WHERE recovery_point <> 'finished'`);
    await db.query(`
      CREATE INDEX top_ups_to_complete ON top_ups (next_attempt_at)
        WHERE recovery_point <> 'finished'`);
    await db.query('DROP TABLE idempotency_recovery_points');
    await db.query('DROP DOMAIN code_name');
  }
}

/** What a top-up kept of its request in phases, now the idempotency module's. */
const MOVED_COLUMNS = [
  'fingerprint',
  'request_path',
  'recovery_point',
  'locked_until',
  'attempts',
  'last_error',
  'next_attempt_at',
];

/** The same columns as they were, for down(). */
const FORMER_COLUMNS: Record<string, string> = {
  fingerprint: 'text',
  request_path: 'text',
  recovery_point: `top_up_recovery_point NOT NULL DEFAULT 'finished'`,
  locked_until: 'timestamptz',
  attempts: 'int NOT NULL DEFAULT 0',
  last_error: 'text',
  next_attempt_at: 'timestamptz NOT NULL DEFAULT now()',
};

/** The columns whose rule is a domain of this migration's (see 1765180800000's COLUMNS). */
export const RECOVERY_POINT_DOMAIN_COLUMNS = [
  { table: 'idempotency_recovery_points', column: 'key', domain: 'idempotency_key' },
  { table: 'idempotency_recovery_points', column: 'fingerprint', domain: 'sha256_hex' },
  { table: 'idempotency_recovery_points', column: 'operation', domain: 'code_name' },
  { table: 'idempotency_recovery_points', column: 'recovery_point', domain: 'code_name' },
];

async function isCitus(db: QueryRunner): Promise<boolean> {
  const [{ citus }] = (await db.query(
    `SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus`,
  )) as Array<{ citus: boolean }>;
  return citus;
}
