import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Refunds: money back to the account of a succeeded charge, never more than it took. */
export class Refunds1764489600000 implements MigrationInterface {
  name = 'Refunds1764489600000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      -- A refund credits the charged account; its ledger entry is of type 'refund'.
      -- charges.amount_refunded (CHECK amount_refunded <= amount) is the running
      -- total, updated under the charge's row lock in the refund's transaction.
      CREATE TABLE refunds (
        merchant_id text NOT NULL,
        id          text NOT NULL,
        charge_id   text NOT NULL,
        account_id  text NOT NULL,
        amount      bigint NOT NULL CHECK (amount > 0 AND amount <= 1000000000000),
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id),
        FOREIGN KEY (merchant_id, charge_id) REFERENCES charges (merchant_id, id) ON DELETE RESTRICT,
        FOREIGN KEY (merchant_id, account_id) REFERENCES accounts (merchant_id, id) ON DELETE RESTRICT
      )`);
    await db.query(`CREATE INDEX refunds_charge_idx ON refunds (merchant_id, charge_id)`);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query('DROP TABLE refunds');
  }
}
