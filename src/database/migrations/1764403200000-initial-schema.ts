import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The whole schema of the core API. Invariants live here as well as in code, so a
 * bug in a service cannot break them:
 * - every table carries merchant_id and leads its primary key with it: the tenancy
 *   boundary, and the column a sharded PostgreSQL (Citus) would distribute on, so a
 *   request stays a single-shard transaction;
 * - foreign keys include merchant_id, so a row can never point at another
 *   merchant's account, even through a bug;
 * - amounts are positive bigints in minor units, capped at 1e12; balances stay in
 *   [0, Number.MAX_SAFE_INTEGER] so they convert to JavaScript numbers exactly.
 */
export class InitialSchema1764403200000 implements MigrationInterface {
  name = 'InitialSchema1764403200000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      -- A merchant is a tenant: it owns API keys, accounts and idempotency keys.
      CREATE TABLE merchants (
        id           text PRIMARY KEY,
        name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
        -- SHA-256 (hex) of the API key; the key is shown once and never stored.
        api_key_hash text NOT NULL UNIQUE CHECK (api_key_hash ~ '^[0-9a-f]{64}$'),
        created_at   timestamptz NOT NULL DEFAULT now()
      )`);
    await db.query(`
      -- Money is held here. balance changes only through one conditional UPDATE
      -- per movement (see LedgerService.post), never read-modify-write.
      CREATE TABLE accounts (
        merchant_id text NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
        id          text NOT NULL,
        name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
        currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        balance     bigint NOT NULL DEFAULT 0
                    CHECK (balance >= 0 AND balance <= 9007199254740991),
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id)
      )`);
    await db.query(`
      -- Money in. One ledger entry per deposit.
      CREATE TABLE deposits (
        merchant_id text NOT NULL,
        id          text NOT NULL,
        account_id  text NOT NULL,
        amount      bigint NOT NULL CHECK (amount > 0 AND amount <= 1000000000000),
        currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        description text CHECK (char_length(description) <= 500),
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id),
        FOREIGN KEY (merchant_id, account_id) REFERENCES accounts (merchant_id, id) ON DELETE RESTRICT
      )`);
    await db.query(`
      -- Money out. A charge refused for lack of funds is recorded too (status
      -- 'failed'), and has no ledger entry.
      CREATE TABLE charges (
        merchant_id     text NOT NULL,
        id              text NOT NULL,
        account_id      text NOT NULL,
        amount          bigint NOT NULL CHECK (amount > 0 AND amount <= 1000000000000),
        currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        description     text CHECK (char_length(description) <= 500),
        metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
        status          text NOT NULL CHECK (status IN ('succeeded', 'failed')),
        failure_code    text,
        amount_refunded bigint NOT NULL DEFAULT 0
                        CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
        created_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id),
        FOREIGN KEY (merchant_id, account_id) REFERENCES accounts (merchant_id, id) ON DELETE RESTRICT,
        CHECK ((status = 'failed') = (failure_code IS NOT NULL)),
        CHECK (status = 'succeeded' OR amount_refunded = 0)
      )`);
    await db.query(`
      -- Every movement of a balance, signed. Invariant: an account's balance equals
      -- the sum of its entries. UNIQUE (merchant_id, source_id) makes "exactly one
      -- entry per deposit, charge or refund" a database fact.
      CREATE TABLE ledger_entries (
        merchant_id   text NOT NULL,
        id            text NOT NULL,
        account_id    text NOT NULL,
        type          text NOT NULL CHECK (type IN ('deposit', 'charge', 'refund')),
        amount        bigint NOT NULL CHECK (amount <> 0),
        balance_after bigint NOT NULL CHECK (balance_after >= 0),
        source_id     text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id),
        UNIQUE (merchant_id, source_id),
        FOREIGN KEY (merchant_id, account_id) REFERENCES accounts (merchant_id, id) ON DELETE RESTRICT,
        CHECK ((type = 'charge') = (amount < 0))
      )`);
    await db.query(
      `CREATE INDEX ledger_entries_account_idx ON ledger_entries (merchant_id, account_id, id)`,
    );
    await db.query(`CREATE INDEX charges_account_idx ON charges (merchant_id, account_id, id)`);
    await db.query(`
      -- One row per completed idempotent request, written in the same transaction
      -- as the work it remembers: a row exists if and only if that work committed.
      -- The primary key is the final guard against a second execution; while the
      -- first is running, a transaction-scoped advisory lock on the key turns
      -- duplicates away at once (IdempotencyService).
      CREATE TABLE idempotency_keys (
        merchant_id           text NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
        key                   text NOT NULL CHECK (key ~ '^[\\x21-\\x7e]{1,255}$'),
        request_method        text NOT NULL,
        request_path          text NOT NULL,
        fingerprint           text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
        response_status       int  NOT NULL CHECK (response_status BETWEEN 200 AND 499),
        response_content_type text NOT NULL,
        response_body         text NOT NULL,
        response_location     text,
        created_at            timestamptz NOT NULL DEFAULT now(),
        expires_at            timestamptz NOT NULL,
        PRIMARY KEY (merchant_id, key)
      )`);
    await db.query(`CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at)`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(
      'DROP TABLE idempotency_keys, ledger_entries, charges, deposits, accounts, merchants',
    );
  }
}
