import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { killApis, startApi } from '../tools/api-process.js';
import {
  findPgBouncer,
  type PgBouncer,
  startPgBouncer,
  tracksPreparedStatements,
} from '../tools/pgbouncer.js';
import { MIGRATIONS } from '../src/database/data-source.js';
import { TransactionHost } from '../src/database/transaction-host.js';
import { createTestDatabase, onPort, testPool } from './support/databases.js';
import { advisoryLocks } from './support/db-faults.js';
import { ledgerViolations } from './support/invariants.js';
import { startTestApp, type TestApp } from './support/test-app.js';

/**
 * The service behind PgBouncer in transaction mode, as Debian ships it (1.18: no
 * tracking of prepared statements), with the settings docs/scaling-out.md gives:
 * DB_POOLER=transaction DB_PREPARED_STATEMENTS=unnamed. The server pool is
 * smaller than the app's, so every transaction may land on another server
 * connection than the one before.
 */
const found = findPgBouncer();
if (!found) {
  console.warn(
    'SKIPPED test/pgbouncer.e2e-spec.ts: no pgbouncer binary (apt-get install pgbouncer; .ci/run installs it)',
  );
}
const describeWithPgBouncer = found ? describe : describe.skip;

const POOLED = { DB_POOLER: 'transaction', DB_PREPARED_STATEMENTS: 'unnamed' };

describeWithPgBouncer(`PgBouncer ${found?.version ?? ''} in transaction mode`, () => {
  let bouncer: PgBouncer;
  let t: TestApp;

  beforeAll(async () => {
    // PgBouncer serves every database of the test server, each by its name.
    bouncer = await startPgBouncer({ target: process.env.TEST_ADMIN_URL!, poolSize: 4 });
    t = await startTestApp({ env: POOLED, appDatabaseUrl: (url) => onPort(url, bouncer.port) });
  });

  afterAll(async () => {
    killApis();
    await t?.close();
    await bouncer?.stop();
  });

  it('takes 16 clients making distinct charges, each retried once: every one 201, debited once, the books sound', async () => {
    const api = await t.merchant();
    const account = await api.fundedAccount(1_000_000);
    const charge = (key: string) =>
      fetch(`${t.baseUrl}/charges`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${api.apiKey}`,
          'Content-Type': 'application/json',
          'Idempotency-Key': key,
        },
        body: JSON.stringify({ accountId: account, amount: 100, currency: 'USD' }),
      }).then(async (res) => ({
        status: res.status,
        replayed: res.headers.get('idempotent-replayed'),
        id: ((await res.json()) as { id?: string }).id,
      }));

    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = 0; i < 10; i++) {
          const key = randomUUID();
          const first = await charge(key);
          const retry = await charge(key);
          statuses.push(first.status, retry.status);
          expect(retry.replayed).toBe('true');
          expect(retry.id).toBe(first.id);
        }
      }),
    );

    expect(statuses.filter((s) => s !== 201)).toEqual([]);
    expect(await api.balance(account)).toBe(1_000_000 - 160 * 100);
    expect(await ledgerViolations(t.db)).toEqual([]);
  });

  it('sets the timeouts inside each transaction, and leaves nothing on the server connection for the next client', async () => {
    const tx = t.app.get(TransactionHost);
    const inside = await tx.run(() =>
      tx.query<{ statement: string; idle: string }>(
        `SELECT current_setting('statement_timeout') AS statement,
                current_setting('idle_in_transaction_session_timeout') AS idle`,
      ),
    );
    expect(inside).toEqual([{ statement: '30s', idle: '1min' }]);

    // Outside a transaction, on whichever server connection PgBouncer lends: the
    // server's defaults, so SET LOCAL did not outlive its transaction.
    const outside = await tx.query<{ statement: string }>(
      `SELECT current_setting('statement_timeout') AS statement`,
    );
    expect(outside).toEqual([{ statement: '0' }]);
  });

  it('migrates an empty database through PgBouncer with two instances starting at once, each migration applied once', async () => {
    const empty = await createTestDatabase({ migrated: false });
    const db = testPool(empty.url, 1);
    try {
      const env = { ...POOLED, DATABASE_URL: onPort(empty.url, bouncer.port) };
      const [a, b] = await Promise.all([startApi({ env }), startApi({ env })]);
      for (const api of [a, b]) expect((await fetch(`${api.url}/health`)).status).toBe(200);

      const { rows } = await db.query<{ name: string; n: number }>(
        'SELECT name, count(*)::int AS n FROM migrations GROUP BY name ORDER BY name',
      );
      expect(rows.map((r) => r.n)).toEqual(MIGRATIONS.map(() => 1));
      // The migration lock was transaction-scoped: no server connection still holds it.
      expect(await advisoryLocks(db)).toBe(0);
    } finally {
      killApis();
      await db.end();
      await empty.drop();
    }
  });
});

describeWithPgBouncer('prepared statements through a pooler that does not track them', () => {
  let bouncer: PgBouncer;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const pools: pg.Pool[] = [];

  beforeAll(async () => {
    database = await createTestDatabase({ migrated: false });
    // One server connection for every client: the second client's statement runs
    // where the first one's was prepared. A PgBouncer that can track statements
    // (1.21+, PGBOUNCER_BIN) is told not to, to be the 1.18 that Debian ships.
    bouncer = await startPgBouncer({
      target: process.env.TEST_ADMIN_URL!,
      poolSize: 1,
      ...(tracksPreparedStatements(found!.version) && { maxPreparedStatements: 0 }),
    });
  });

  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    await bouncer?.stop();
    await database?.drop();
  });

  /** Two services' hosts, each with a pool of its own, through the one-connection PgBouncer. */
  function twoHosts(preparedStatements: 'named' | 'unnamed'): TransactionHost[] {
    return [1, 2].map(() => {
      const pool = testPool(onPort(database.url, bouncer.port), 1);
      pools.push(pool);
      return new TransactionHost(pool, { pooler: 'transaction', preparedStatements });
    });
  }

  it('named: the second client is told the statement already exists (the 500s behind PgBouncer 1.18)', async () => {
    const [first, second] = twoHosts('named');
    const sql = `SELECT $1::int AS n -- named ${randomUUID()}`;
    expect(await first.query(sql, [1])).toEqual([{ n: 1 }]);
    await expect(second.query(sql, [2])).rejects.toThrow(/prepared statement .* already exists/);
  });

  it('unnamed (DB_PREPARED_STATEMENTS=unnamed): both clients run it, in and out of transactions', async () => {
    const [first, second] = twoHosts('unnamed');
    const sql = `SELECT $1::int AS n -- unnamed ${randomUUID()}`;
    expect(await first.query(sql, [1])).toEqual([{ n: 1 }]);
    expect(await second.query(sql, [2])).toEqual([{ n: 2 }]);
    expect(await second.run(() => second.query(sql, [3]))).toEqual([{ n: 3 }]);
    expect(await first.run(() => first.query(sql, [4]))).toEqual([{ n: 4 }]);
  });
});
