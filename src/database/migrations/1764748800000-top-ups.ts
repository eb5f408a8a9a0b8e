import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Card top-ups: money in, charged at a card processor first. No transaction spans
 * the processor, so the request runs in atomic phases (decision 0012), and this row
 * is its recovery point: what a retry with the same key, or the completer, resumes.
 */
export class TopUps1764748800000 implements MigrationInterface {
  name = 'TopUps1764748800000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE TABLE top_ups (
        merchant_id          text NOT NULL,
        id                   text NOT NULL,
        account_id           text NOT NULL,
        amount               bigint NOT NULL CHECK (amount > 0 AND amount <= 1000000000000),
        currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        card                 text NOT NULL,
        -- The request that asked for it (a retry with its key resumes this row; the
        -- response is stored under the key when the last phase commits).
        idempotency_key      text NOT NULL,
        fingerprint          text NOT NULL,
        request_path         text NOT NULL,
        status               text NOT NULL CHECK (status IN ('pending', 'succeeded', 'declined', 'failed')),
        -- started: the intent is recorded, the processor may or may not have charged;
        -- refunding: charged but not credited here (the account refused it), the
        -- card is being refunded; finished: nothing left to do.
        recovery_point       text NOT NULL CHECK (recovery_point IN ('started', 'refunding', 'finished')),
        processor_payment_id text,
        decline_code         text,
        failure_code         text,
        attempts             int NOT NULL DEFAULT 0,
        last_error           text,
        -- A lease: a request or a completer is working on it until then.
        locked_until         timestamptz,
        next_attempt_at      timestamptz NOT NULL DEFAULT now(),
        created_at           timestamptz NOT NULL DEFAULT now(),
        updated_at           timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id),
        FOREIGN KEY (merchant_id, account_id) REFERENCES accounts (merchant_id, id) ON DELETE RESTRICT,
        CHECK ((status = 'pending') = (recovery_point = 'started')),
        CHECK (status <> 'succeeded' OR processor_payment_id IS NOT NULL)
      )`);
    // One unfinished top-up per key: the retry finds it. Finished ones may share a
    // key with a later request once the key has expired (contract §4.9).
    await db.query(`
      CREATE UNIQUE INDEX top_ups_unfinished_key ON top_ups (merchant_id, idempotency_key)
        WHERE recovery_point <> 'finished'`);
    // What the completer looks for.
    await db.query(`
      CREATE INDEX top_ups_to_complete ON top_ups (next_attempt_at)
        WHERE recovery_point <> 'finished'`);
    await db.query(`
      ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_type_check,
        ADD CONSTRAINT ledger_entries_type_check
          CHECK (type IN ('deposit', 'charge', 'refund', 'top_up'))`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_type_check,
        ADD CONSTRAINT ledger_entries_type_check CHECK (type IN ('deposit', 'charge', 'refund'))`);
    await db.query('DROP TABLE top_ups');
  }
}
