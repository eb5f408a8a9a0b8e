import pg from 'pg';
import { DataSource, type DataSourceOptions, MigrationExecutor } from 'typeorm';
import { Account } from '../accounts/account.entity.js';
import { Charge } from '../charges/charge.entity.js';
import { Deposit } from '../deposits/deposit.entity.js';
import { IdempotencyKey } from '../idempotency/idempotency-key.entity.js';
import { LedgerEntry } from '../ledger/ledger-entry.entity.js';
import { Merchant } from '../merchants/merchant.entity.js';
import { InitialSchema1764403200000 } from './migrations/1764403200000-initial-schema.js';
import { Refunds1764489600000 } from './migrations/1764489600000-refunds.js';
import { IdempotencyKeyLock1764576000000 } from './migrations/1764576000000-idempotency-key-lock.js';
import { AccountLifecycle1764662400000 } from './migrations/1764662400000-account-lifecycle.js';
import { TopUps1764748800000 } from './migrations/1764748800000-top-ups.js';
import { Events1764835200000 } from './migrations/1764835200000-events.js';
import { DistributeByMerchant1764921600000 } from './migrations/1764921600000-distribute-by-merchant.js';
import { ClaimChecksCompleted1765008000000 } from './migrations/1765008000000-claim-checks-completed.js';
import { CheaperKeyChecks1765094400000 } from './migrations/1765094400000-cheaper-key-checks.js';
import { RulesOfOneColumnAsDomains1765180800000 } from './migrations/1765180800000-rules-of-one-column-as-domains.js';
import { Refund } from '../refunds/refund.entity.js';

export const ENTITIES = [Merchant, Account, Deposit, Charge, Refund, LedgerEntry, IdempotencyKey];
export const MIGRATIONS = [
  InitialSchema1764403200000,
  Refunds1764489600000,
  IdempotencyKeyLock1764576000000,
  AccountLifecycle1764662400000,
  TopUps1764748800000,
  Events1764835200000,
  DistributeByMerchant1764921600000,
  ClaimChecksCompleted1765008000000,
  CheaperKeyChecks1765094400000,
  RulesOfOneColumnAsDomains1765180800000,
];

/**
 * How the service's connections reach PostgreSQL (settings DB_POOLER and
 * DB_PREPARED_STATEMENTS; docs/scaling-out.md#connection-poolers).
 */
export interface ConnectionSettings {
  /**
   * `transaction`: through a pooler that lends a server connection for one
   * transaction at a time (PgBouncer's transaction mode). Such a pooler refuses
   * or cannot keep per-connection settings, so the timeouts travel with each
   * transaction instead (TransactionHost's BEGIN).
   */
  pooler: 'none' | 'transaction';
  /**
   * `unnamed`: statements with parameters go as the protocol's unnamed statement,
   * which a pooler that does not track prepared statements (PgBouncer before
   * 1.21, or without max_prepared_statements) passes through safely.
   */
  preparedStatements: 'named' | 'unnamed';
}

export const DIRECT: ConnectionSettings = { pooler: 'none', preparedStatements: 'named' };

/** A statement stuck on a lock must not hold a connection for ever. */
export const STATEMENT_TIMEOUT_MS = 30_000;
/** Nor may a transaction whose client stopped talking. */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;

/**
 * The one data source definition, shared by the app, the migration command and
 * the tests. Classes are listed rather than globbed, so the same list works from
 * src/ under Jest and from dist/ in production.
 */
export function dataSourceOptions(
  url: string,
  poolSize = 10,
  connection: ConnectionSettings = DIRECT,
): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    synchronize: false,
    logging: false,
    poolSize,
    extra: {
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
    },
  };
}

const INT8 = 20;

/**
 * Every `bigint` column as a JavaScript number, in every query of the pool (raw
 * SQL and TypeORM's alike), so no service converts by hand. node-postgres returns
 * them as strings by default, because a number cannot hold every 64-bit integer;
 * ours can: CHECK constraints keep amounts and balances within
 * Number.MAX_SAFE_INTEGER, and counts are far below it.
 */
function parseInt8AsNumber(oid: number, format?: string): (value: string) => unknown {
  if (oid === INT8 && format !== 'binary') return Number;
  return pg.types.getTypeParser(oid, format as 'text');
}

/** Serialises concurrent start-ups: only one process applies a migration. */
const MIGRATION_LOCK = 7_106_321;

/**
 * Applies pending migrations, all in one transaction that first takes a
 * transaction-scoped advisory lock, so that many instances can start at once:
 * the others wait, then find nothing pending. A transaction-scoped lock (not a
 * session one) also holds through a transaction-mode pooler, which may hand each
 * statement outside a transaction to another server connection. And a failed
 * migration leaves the schema as it was, with none of the batch applied.
 */
export async function runMigrations(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  try {
    await runner.startTransaction();
    await runner.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    const executor = new MigrationExecutor(dataSource, runner);
    executor.transaction = 'all'; // ours: the executor joins it and leaves COMMIT to us
    const applied = await executor.executePendingMigrations();
    await runner.commitTransaction();
    return applied.map((m) => m.name);
  } catch (error) {
    if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
    throw error;
  } finally {
    await runner.release();
  }
}

/** Opens a data source on `url`, migrates it and closes it. */
export async function migrate(
  url: string,
  connection: ConnectionSettings = DIRECT,
): Promise<string[]> {
  const dataSource = await new DataSource(dataSourceOptions(url, 2, connection)).initialize();
  try {
    return await runMigrations(dataSource);
  } finally {
    await dataSource.destroy();
  }
}
