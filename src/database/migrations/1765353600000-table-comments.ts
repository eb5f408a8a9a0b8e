import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What each table is for, in the catalog itself (COMMENT ON TABLE), so that psql's
 * `\dt+` and docs/schema.sql, which is generated from the catalog, say it beside the
 * columns. Metadata only: no row and no statement of the service changes.
 */
export class TableComments1765353600000 implements MigrationInterface {
  name = 'TableComments1765353600000';

  async up(db: QueryRunner): Promise<void> {
    for (const [table, comment] of Object.entries(TABLE_COMMENTS)) {
      await db.query(`COMMENT ON TABLE ${table} IS ${quote(comment)}`);
    }
  }

  async down(db: QueryRunner): Promise<void> {
    for (const table of Object.keys(TABLE_COMMENTS)) {
      await db.query(`COMMENT ON TABLE ${table} IS NULL`);
    }
  }
}

export const TABLE_COMMENTS: Record<string, string> = {
  merchants: `The API's clients. Each has one API key, kept only as its SHA-256.
Every other table carries merchant_id and leads its primary key with it: a request
touches one merchant's rows only (and, on Citus, one node).`,
  accounts: `Balances in minor units. A balance changes only by LedgerService.post(): one
conditional UPDATE that refuses to leave [0, 2^53 - 1], with the ledger entry that
explains it. version is the ETag of PUT and DELETE (If-Match).`,
  ledger_entries: `Append-only: one entry per succeeded deposit, charge, refund and top-up
(UNIQUE source_id), written in the statement that moves the balance. A balance always
equals the sum of its account's entries (npm run audit).`,
  deposits: `Money in, credited in the request's transaction with the key that names it.`,
  charges: `Money out. A charge without the funds is recorded too, as failed, and its 402 is
stored with the key like a success. amount_refunded adds up the refunds.`,
  refunds: `Money back to the account, of all or part of a succeeded charge; the charge's
row lock makes concurrent refunds take turns, so they never exceed it.`,
  idempotency_keys: `Completed requests: written in the transaction of the work they remember, so a
row exists if and only if that work committed. The exact response is replayed to
every retry with the same key and fingerprint until expires_at; after that the key
counts as unused. Claimed by claim_idempotency_key() under a transaction-scoped lock.`,
  idempotency_recovery_points: `Requests under way in atomic phases (card top-ups, decision 12): where each rests
between two phases, who holds it (a lease), and its tries. Written only by the
idempotency module; deleted in the transaction that stores the request's answer.`,
  top_ups: `Money in from a card, charged at a processor that no transaction of ours can roll
back. pending while its request is under way; the processor's key is the top-up's id.`,
  events: `The outbox: what happened, written in the transaction of the change it tells of, so
it exists if and only if that change committed.`,
  webhook_endpoints: `Where a merchant wants its events, and the secrets that sign them (a rotated one
signs beside the new one for a while).`,
  webhook_deliveries: `One per event and endpoint, queued in the event's own statement; sent at least
once, tried again with back-off until a 2xx, given up after a bound.`,
  webhook_attempts: `Every try of a delivery: what the endpoint answered, how fast, or what failed.`,
};

function quote(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
