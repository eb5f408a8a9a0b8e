import { DataSource, type DataSourceOptions, MigrationExecutor } from 'typeorm';
import type { ConnectionSettings } from '../config/config.js';
import { connectionOptions, DIRECT } from './connection.js';
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
import { RecoveryPointsUnderTheKey1765267200000 } from './migrations/1765267200000-recovery-points-under-the-key.js';
import { TableComments1765353600000 } from './migrations/1765353600000-table-comments.js';
import { WebhookEndpointLifecycle1765440000000 } from './migrations/1765440000000-webhook-endpoint-lifecycle.js';

/** Every migration, in order: the schema's history (docs/schema.sql is where it leads). */
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
  RecoveryPointsUnderTheKey1765267200000,
  TableComments1765353600000,
  WebhookEndpointLifecycle1765440000000,
];

/**
 * TypeORM's part in the service (docs/decisions/0019): the migrations, and the
 * data source that runs them, at start-up, from `npm run migration:run`, and for
 * the tests' template database. The requests' queries go through TransactionHost,
 * on a pool of node-postgres made with the same connection options.
 */
export function dataSourceOptions(
  url: string,
  connection: ConnectionSettings = DIRECT,
): DataSourceOptions {
  const { connectionString: _url, ...options } = connectionOptions(url, connection);
  return {
    type: 'postgres',
    url,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    synchronize: false,
    logging: false,
    poolSize: 2,
    extra: options,
  };
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
async function runMigrations(dataSource: DataSource): Promise<string[]> {
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
  const dataSource = await new DataSource(dataSourceOptions(url, connection)).initialize();
  try {
    return await runMigrations(dataSource);
  } finally {
    await dataSource.destroy();
  }
}
