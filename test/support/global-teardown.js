import pg from 'pg';

export default async function globalTeardown() {
  await globalThis.__PGBOUNCER__?.stop();
  const embedded = globalThis.__EMBEDDED_PG__;
  if (embedded) {
    await embedded.stop(); // not persistent: its data directory goes with it
    return;
  }
  if (process.env.TEST_CITUS) return; // no template there
  // An external server: drop the template (each test file drops its own database).
  const admin = new pg.Client({ connectionString: process.env.TEST_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${process.env.TEST_TEMPLATE_DB} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
