import type pg from 'pg';

/**
 * The processor's own records, in its own database: the API can never write them
 * or share a transaction with them, as it could not with a real card network.
 * Applied at start-up, under an advisory lock so that processors starting
 * together take turns; every statement is safe to run again.
 */
export async function migrate(db: pg.Pool): Promise<void> {
  const client = await db.connect();
  try {
    await client.query('SELECT pg_advisory_lock(4242001)');
    await client.query(`
      -- One row per payment a caller asked for, under the caller's own key: the
      -- unique constraint is what makes a retried request the same payment.
      CREATE TABLE IF NOT EXISTS payments (
        caller          text NOT NULL,
        idempotency_key text NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
        fingerprint     text NOT NULL,
        id              text PRIMARY KEY,
        amount          bigint NOT NULL CHECK (amount > 0),
        currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        card            text NOT NULL,
        status          text NOT NULL CHECK (status IN ('succeeded', 'declined')),
        decline_code    text,
        amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded BETWEEN 0 AND amount),
        created_at      timestamptz NOT NULL DEFAULT now(),
        UNIQUE (caller, idempotency_key)
      );
      CREATE INDEX IF NOT EXISTS payments_caller_idx ON payments (caller, id);
      CREATE TABLE IF NOT EXISTS refunds (
        caller          text NOT NULL,
        idempotency_key text NOT NULL,
        fingerprint     text NOT NULL,
        id              text PRIMARY KEY,
        payment_id      text NOT NULL REFERENCES payments (id),
        amount          bigint NOT NULL CHECK (amount > 0),
        created_at      timestamptz NOT NULL DEFAULT now(),
        UNIQUE (caller, idempotency_key)
      );`);
  } finally {
    await client.query('SELECT pg_advisory_unlock(4242001)').catch(() => undefined);
    client.release();
  }
}
