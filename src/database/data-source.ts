import pg from 'pg';
import { DataSource, type DataSourceOptions } from 'typeorm';
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
import { Refund } from '../refunds/refund.entity.js';

export const ENTITIES = [Merchant, Account, Deposit, Charge, Refund, LedgerEntry, IdempotencyKey];
export const MIGRATIONS = [
  InitialSchema1764403200000,
  Refunds1764489600000,
  IdempotencyKeyLock1764576000000,
  AccountLifecycle1764662400000,
  TopUps1764748800000,
  Events1764835200000,
];

/**
 * The one data source definition, shared by the app, the migration command and
 * the tests. Classes are listed rather than globbed, so the same list works from
 * src/ under Jest and from dist/ in production.
 */
export function dataSourceOptions(url: string, poolSize = 10): DataSourceOptions {
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
      // A statement stuck on a lock must not hold a connection for ever.
      statement_timeout: 30_000,
      idle_in_transaction_session_timeout: 60_000,
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
 * Applies pending migrations, holding a session advisory lock so that many
 * instances can start at once. Uses two connections: the pool needs at least two.
 */
export async function runMigrations(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    return applied.map((m) => m.name);
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await runner.release();
  }
}

/** Opens a data source on `url`, migrates it and closes it. */
export async function migrate(url: string): Promise<string[]> {
  const dataSource = await new DataSource(dataSourceOptions(url, 2)).initialize();
  try {
    return await runMigrations(dataSource);
  } finally {
    await dataSource.destroy();
  }
}
