import pg from 'pg';

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
