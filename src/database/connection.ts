import pg from 'pg';
import type { ConnectionSettings } from '../config/config.js';

export const DIRECT: ConnectionSettings = { pooler: 'none', preparedStatements: 'named' };

/** A statement stuck on a lock must not hold a connection for ever. */
export const STATEMENT_TIMEOUT_MS = 30_000;
/** Nor may a transaction whose client stopped talking. */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

/**
 * How every connection of the service to PostgreSQL is made: the pool's that the
 * requests use, and the migrations' (data-source.ts). node-postgres's own options,
 * so that nothing in between can change them.
 */
export function connectionOptions(url: string, connection: ConnectionSettings = DIRECT) {
  return {
    connectionString: url,
    // Fail fast when the database is unreachable: the request gets a 503 with
    // Retry-After instead of hanging until the client gives up.
    connectionTimeoutMillis: 5_000,
    // Sent as startup parameters, which PgBouncer refuses ("unsupported startup
    // parameter"); behind a pooler each transaction sets them (TransactionHost).
    ...(connection.pooler === 'none' && {
      statement_timeout: STATEMENT_TIMEOUT_MS,
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
    }),
    application_name: 'payments-api',
    // Send a statement without waiting for the answer to the previous one; the
    // server answers in order (TransactionHost relies on it to save round trips).
    pipeline: true,
    types: { getTypeParser: parseInt8AsNumber },
  } satisfies pg.ClientConfig & { pipeline: boolean };
}

/**
 * BEGIN, and behind a transaction-mode pooler the timeouts that a direct
 * connection sets once at start-up (data-source.ts): SET LOCAL lasts until the
 * transaction ends, so nothing leaks to the pooler's next client. They travel in
 * the same message as BEGIN, so they cost no round trip.
 */
export function beginStatement({ pooler }: ConnectionSettings): string {
  if (pooler === 'none') return 'BEGIN';
  return [
    'BEGIN',
    `SET LOCAL statement_timeout = ${STATEMENT_TIMEOUT_MS}`,
    `SET LOCAL idle_in_transaction_session_timeout = ${IDLE_IN_TRANSACTION_TIMEOUT_MS}`,
  ].join('; ');
}

/** The pool the requests' transactions take their connections from (TransactionHost). */
export function createPool(
  url: string,
  size: number,
  connection: ConnectionSettings = DIRECT,
): pg.Pool {
  const pool = new pg.Pool({ ...connectionOptions(url, connection), max: size });
  // An idle connection that breaks (the server restarted) emits 'error' on the pool;
  // the next query on it reports the failure, so the event needs only a listener.
  pool.on('error', () => undefined);
  return pool;
}

const INT8 = 20;

/**
 * Every `bigint` column as a JavaScript number, in every query, so no service
 * converts by hand. node-postgres returns them as strings by default, because a
 * number cannot hold every 64-bit integer; ours can: the domains keep amounts and
 * balances within Number.MAX_SAFE_INTEGER, and counts are far below it.
 */
function parseInt8AsNumber(oid: number, format?: string): (value: string) => unknown {
  if (oid === INT8 && format !== 'binary') return Number;
  return pg.types.getTypeParser(oid, format as 'text');
}
