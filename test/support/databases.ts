import { afterAll, beforeAll } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { killApis } from '../../tools/api-process.js';
import { createCitusDatabase, dropCitusDatabase } from '../../tools/citus.js';
import { migrate } from '../../src/database/data-source.js';

/**
 * The test run's databases. global-setup.js starts one PostgreSQL for the whole run
 * (or uses DATABASE_URL's server) and migrates a template database once; each test
 * file then gets a fresh copy of it, which takes a few milliseconds.
 */

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** The URL of `database` on the server of `url`. */
export function databaseUrl(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** The same URL on another port: the database through a proxy. */
export function onPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.port = String(port);
  return parsed.toString();
}

/**
 * The URL of `database` for the apps under test: on the server, or through the
 * PgBouncer that TEST_PGBOUNCER=1 put in front of it (global-setup.js).
 */
export function appDatabaseUrl(database: string): string {
  return databaseUrl(process.env.TEST_POOLER_URL ?? required('TEST_ADMIN_URL'), database);
}

/**
 * The settings an app needs for the way the tests reach the server (DB_POOLER and
 * DB_PREPARED_STATEMENTS under TEST_PGBOUNCER=1), for apps started in this process;
 * child processes inherit them.
 */
export function connectionEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ['DB_POOLER', 'DB_PREPARED_STATEMENTS']) {
    if (process.env[key]) env[key] = process.env[key];
  }
  return env;
}

/**
 * A fresh database: a copy of the migrated template, or an empty one. On a Citus
 * cluster (global-setup.js sets TEST_CITUS), one made on every node and migrated.
 */
export async function createTestDatabase({ migrated = true } = {}): Promise<TestDatabase> {
  const adminUrl = required('TEST_ADMIN_URL');
  const name = `payments_test_${randomBytes(6).toString('hex')}`;
  if (process.env.TEST_CITUS) {
    const url = await createCitusDatabase(adminUrl, name);
    if (migrated) await migrate(url);
    return { name, url, drop: () => dropCitusDatabase(adminUrl, name) };
  }
  await onServer(adminUrl, (admin) =>
    admin.query(
      migrated
        ? `CREATE DATABASE ${name} TEMPLATE ${required('TEST_TEMPLATE_DB')}`
        : `CREATE DATABASE ${name}`,
    ),
  );
  return {
    name,
    url: appDatabaseUrl(name),
    drop: () =>
      onServer(adminUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)),
  };
}

/**
 * A pool for a test's own queries. Its idle connections may be cut by the
 * server while the test winds down (DROP DATABASE ... WITH (FORCE) of the test's
 * database, or the server terminating a backend that is already ending): such
 * errors are expected and must not crash the test run as an unhandled 'error'.
 */
export function testPool(connectionString: string, max = 4): pg.Pool {
  const pool = new pg.Pool({ connectionString, max });
  pool.on('error', () => undefined);
  return pool;
}

export interface UsedDatabase {
  url: string;
  /** For the test's own assertions and fault injection. */
  sql: pg.Pool;
}

/**
 * For a test file whose APIs run as child processes (crashes, shutdown, several
 * instances): a fresh database for the file and a pool on it (beforeAll); every
 * API the file started killed, the pool closed and the database dropped (afterAll).
 * The object is filled in beforeAll: use it in tests and hooks.
 */
export function useTestDatabase(options: { migrated?: boolean } = {}): UsedDatabase {
  const used = {} as UsedDatabase;
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(options);
    Object.assign(used, { url: database.url, sql: testPool(database.url, 2) });
  });
  afterAll(async () => {
    killApis();
    await used.sql?.end();
    await database?.drop();
  });
  return used;
}

async function onServer(url: string, work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the e2e tests through npm test`);
  return value;
}
