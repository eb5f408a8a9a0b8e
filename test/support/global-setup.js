// Runs once before the e2e tests, outside Jest's module system, so it uses the
// compiled app in dist/ (npm test builds it first, in "pretest").
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../dist/database/data-source.js';
import { startEmbeddedPostgres } from '../../dist/database/embedded-postgres.js';
import { citusWorkers } from '../../build/tools/citus.js';
import {
  findPgBouncer,
  startPgBouncer,
  tracksPreparedStatements,
} from '../../build/tools/pgbouncer.js';

/**
 * One PostgreSQL for the whole run: the embedded one by default, or the server of
 * DATABASE_URL. A template database is migrated once; every test file then gets a
 * fresh copy of it (CREATE DATABASE ... TEMPLATE), which takes a few milliseconds.
 */
export default async function globalSetup() {
  let adminUrl = process.env.DATABASE_URL;
  if (adminUrl) {
    const name = new URL(adminUrl).pathname.slice(1);
    // The suite creates and drops databases: only on a server meant for tests.
    if (!/test/i.test(name)) {
      throw new Error(
        `Refusing to run the e2e tests against database '${name}': DATABASE_URL must name a database whose name contains "test".`,
      );
    }
  } else {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'payments-test-pg-'));
    const embedded = await startEmbeddedPostgres({
      dataDir,
      persistent: false,
      database: 'postgres',
    });
    globalThis.__EMBEDDED_PG__ = embedded;
    adminUrl = embedded.adminUrl;
  }

  const workers = process.env.DATABASE_URL ? await citusWorkers(adminUrl) : undefined;
  if (workers) {
    // A Citus coordinator: each test file's database is made on every node
    // (test/support/databases.ts); a template cannot be copied there.
    process.env.TEST_ADMIN_URL = adminUrl;
    process.env.TEST_CITUS = '1';
    console.log(`\n  e2e on a Citus coordinator with ${workers.length} workers`);
    return;
  }

  const template = `payments_test_template_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${template}`);
    await admin.query(`CREATE DATABASE ${template}`);
  } finally {
    await admin.end();
  }
  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${template}`;
  await migrate(templateUrl.toString());

  process.env.TEST_ADMIN_URL = adminUrl;
  process.env.TEST_TEMPLATE_DB = template;
  if (process.env.TEST_PGBOUNCER === '1') await throughPgBouncer(adminUrl);
}

/**
 * TEST_PGBOUNCER=1: every app the tests start reaches its database through a
 * PgBouncer in transaction mode, and so do the tests' own queries (creating and
 * dropping databases still goes straight to the server). A PgBouncer that tracks prepared
 * statements (1.21+) is given max_prepared_statements and the service keeps its
 * named statements; an older one gets DB_PREPARED_STATEMENTS=unnamed.
 */
async function throughPgBouncer(adminUrl) {
  const tracks = tracksPreparedStatements(findPgBouncer()?.version ?? '0');
  const bouncer = await startPgBouncer({
    target: adminUrl,
    ...(tracks && { maxPreparedStatements: 200 }),
  });
  globalThis.__PGBOUNCER__ = bouncer;
  process.env.TEST_POOLER_URL = bouncer.url;
  process.env.DB_POOLER = 'transaction';
  process.env.DB_PREPARED_STATEMENTS ||= tracks ? 'named' : 'unnamed';
  console.log(
    `\n  e2e through PgBouncer ${bouncer.version} (transaction mode, ${process.env.DB_PREPARED_STATEMENTS} statements) on port ${bouncer.port}`,
  );
}
