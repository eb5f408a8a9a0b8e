// What both benchmarks load the database with: the bench merchant, its funded
// accounts, and the ceiling, the same durable idempotent charge as ONE statement
// (the same rows as the API's charge writes, in one round trip).
// npm run bench (bench/run.ts) times them; npm run bench:instructions
// (bench/instructions.ts) counts the instructions PostgreSQL spends on them.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { hashApiKey } from '../src/merchants/api-key.js';

export const MERCHANT = 'mch_bench';
export const ACCOUNTS = 1_000;
/** 1e12 cents each: one deposit, never runs out during a run. */
export const BALANCE = 1_000_000_000_000;

/**
 * The merchant with `apiKey` as its key, and ACCOUNTS accounts funded through
 * deposits (so the books stay sound); returns the accounts' ids.
 */
export async function seed(
  db: pg.Pool | pg.Client,
  apiKey: string,
): Promise<{ accounts: string[]; deposits: number }> {
  await db.query(
    `INSERT INTO merchants (id, name, api_key_hash) VALUES ($1, 'Bench', $2)
     ON CONFLICT (id) DO UPDATE SET api_key_hash = EXCLUDED.api_key_hash`,
    [MERCHANT, hashApiKey(apiKey)],
  );
  const { rowCount } = await db.query(
    `WITH a AS (
       INSERT INTO accounts (merchant_id, id, name, currency, balance)
       SELECT $1, 'acct_bench' || lpad(g::text, 22, '0'), 'bench ' || g, 'USD', $2::bigint
         FROM generate_series(1, $3) g
       ON CONFLICT DO NOTHING
       RETURNING id),
     d AS (
       INSERT INTO deposits (merchant_id, id, account_id, amount, currency)
       SELECT $1, 'dep_' || a.id, a.id, $2::bigint, 'USD' FROM a
       RETURNING id, account_id, amount)
     INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
     SELECT $1, 'le_' || d.id, d.account_id, 'deposit', d.amount, d.amount, d.id FROM d`,
    [MERCHANT, BALANCE, ACCOUNTS],
  );
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM accounts WHERE merchant_id = $1 ORDER BY id`,
    [MERCHANT],
  );
  return { accounts: rows.map((r) => r.id), deposits: rowCount ?? 0 };
}

/** The body of a fresh charge of 1 cent from `account`, as the API's scenarios send it. */
export function chargeBody(account: string): string {
  return JSON.stringify({ accountId: account, amount: 1, currency: 'USD' });
}

const CEILING_SQL = `
  WITH k AS (
         INSERT INTO idempotency_keys (merchant_id, key, request_method, request_path, fingerprint,
                                       response_status, response_content_type, response_body,
                                       response_location, expires_at)
         VALUES ($1, $2, 'POST', '/charges', repeat('0', 64), 201, 'application/json', $7,
                 '/charges/' || $5, now() + interval '1 day')
         RETURNING key),
       d AS (
         UPDATE accounts SET balance = balance - $4::bigint, updated_at = now()
          WHERE merchant_id = $1 AND id = $3 AND balance >= $4::bigint
         RETURNING balance),
       c AS (
         INSERT INTO charges (merchant_id, id, account_id, amount, currency, status)
         SELECT $1, $5, $3, $4, 'USD', 'succeeded' FROM d
         RETURNING id),
       e AS (
         INSERT INTO events (merchant_id, id, type, data)
         SELECT $1, $8, 'charge.succeeded', $9 FROM c),
       w AS (
         INSERT INTO webhook_deliveries (merchant_id, event_id, endpoint_id)
         SELECT $1, $8, endpoint.id FROM webhook_endpoints endpoint, c
          WHERE endpoint.merchant_id = $1 AND endpoint.enabled AND endpoint.deleted_at IS NULL)
  INSERT INTO ledger_entries (merchant_id, id, account_id, type, amount, balance_after, source_id)
  SELECT $1, $6, $3, 'charge', -$4::bigint, d.balance, c.id FROM d, c`;

/**
 * One ceiling charge of 1 cent from `account`, with no HTTP and no framework: in one
 * statement, the rows the API's charge writes, of the same sizes (the stored key with
 * the response a client gets, the debit, the charge, its ledger entry, its event and
 * a delivery per webhook endpoint). A named prepared statement, as the API's
 * statements are: parsed once per connection.
 */
export function ceilingQuery(account: string): pg.QueryConfig {
  const id = randomUUID().replaceAll('-', '');
  const charge = {
    id: `ch_c${id}`,
    object: 'charge',
    accountId: account,
    amount: 1,
    currency: 'USD',
    description: null,
    metadata: {},
    status: 'succeeded',
    amountRefunded: 0,
    createdAt: new Date().toISOString(),
  };
  return {
    name: 'ceiling',
    text: CEILING_SQL,
    values: [
      MERCHANT,
      `ceiling-${id}`,
      account,
      1,
      charge.id,
      `le_c${id}`,
      JSON.stringify(charge),
      `evt_c${id}`,
      JSON.stringify({ object: charge }),
    ],
  };
}
