import { afterAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { killApis, startApi } from '../tools/api-process.js';
import { createTestDatabase, testPool } from './support/databases.js';
import { slowCharges, untilAdvisoryLocks } from './support/db-faults.js';
import { demoFundedAccount, demoPost } from './support/demo-merchant.js';
import { ledgerViolations } from './support/invariants.js';

afterAll(() => killApis());

describe('graceful shutdown', () => {
  it('on SIGTERM during 20 in-flight charges, finishes and commits every one, then exits 0', async () => {
    const db = await createTestDatabase();
    const pool = testPool(db.url, 2);
    try {
      // Each charge of 555 sleeps 1 s inside its transaction, after its debit.
      await slowCharges(pool, { 555: 1 });
      const app = await startApi({ env: { DATABASE_URL: db.url, DB_POOL_SIZE: '25' } });
      const base = app.url;
      const accounts: string[] = [];
      for (let i = 0; i < 20; i++) accounts.push(await demoFundedAccount(base, 1_000));

      const inFlight = accounts.map((id) =>
        demoPost(
          base,
          '/charges',
          { accountId: id, amount: 555, currency: 'USD' },
          randomUUID(),
        ).then((r) => r.status),
      );
      // Poll until all 20 are inside their transactions (each holds its key's lock).
      await untilAdvisoryLocks(pool, (n) => n === 20);
      app.child.kill('SIGTERM');

      const statuses = await Promise.all(inFlight);
      const code = await app.exited();

      expect(statuses).toEqual(Array.from({ length: 20 }, () => 201));
      expect(code).toBe(0);
      await expect(fetch(`${base}/health`)).rejects.toThrow();
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM charges WHERE status = 'succeeded' AND amount = 555`,
      );
      expect(rows[0].n).toBe(20);
      const balances = await pool.query<{ balance: string }>(
        'SELECT balance FROM accounts WHERE id = ANY($1)',
        [accounts],
      );
      expect(balances.rows.map((r) => Number(r.balance))).toEqual(
        Array.from({ length: 20 }, () => 445),
      );
      expect(await ledgerViolations(pool)).toEqual([]);
    } finally {
      await pool.end();
      await db.drop();
    }
  }, 60_000);

  it('on SIGTERM, also finishes requests whose clients hung up, before it closes the pool', async () => {
    // server.close() waits for connections, not handlers. Here both clients hang up:
    // the first charge is inside its transaction on the only pooled connection, the
    // second waits for that connection. Both were received, so both must complete.
    const db = await createTestDatabase();
    const pool = testPool(db.url, 2);
    try {
      await slowCharges(pool, { 556: 1 });
      const app = await startApi({ env: { DATABASE_URL: db.url, DB_POOL_SIZE: '1' } });
      const base = app.url;
      const account = await demoFundedAccount(base, 1_000);

      const abort = new AbortController();
      const charge = () =>
        demoPost(
          base,
          '/charges',
          { accountId: account, amount: 556, currency: 'USD' },
          randomUUID(),
          abort.signal,
        ).catch(() => 'aborted');
      const first = charge();
      await untilAdvisoryLocks(pool, (n) => n === 1);
      const second = charge();
      await untilInFlight(base, 2);
      abort.abort();
      expect(await Promise.all([first, second])).toEqual(['aborted', 'aborted']);
      app.child.kill('SIGTERM');
      const code = await app.exited();

      expect(code).toBe(0);
      expect(app.output()).not.toMatch(/"level":"error"/);
      const { rows } = await pool.query<{ charges: number; keys: number }>(
        `SELECT (SELECT count(*)::int FROM charges WHERE amount = 556) AS charges,
                (SELECT count(*)::int FROM idempotency_keys WHERE request_path = '/charges') AS keys`,
      );
      expect(rows[0]).toEqual({ charges: 2, keys: 2 });
      expect(await ledgerViolations(pool)).toEqual([]);
    } finally {
      await pool.end();
      await db.drop();
    }
  }, 60_000);

  it('on SIGTERM, does not wait for connections that never sent a request', async () => {
    // Clients and load balancers open connections ahead of time. Node counts such
    // a connection as busy until its headers timeout, a minute, past the
    // shutdown deadline: the app used to exit 1 after 25 s here.
    const db = await createTestDatabase();
    try {
      const app = await startApi({ env: { DATABASE_URL: db.url } });
      const silent = await openSocket(app.port);
      const closedByServer = new Promise<void>((resolve) => silent.once('close', () => resolve()));
      app.child.kill('SIGTERM');

      expect(await app.exited()).toBe(0);
      await closedByServer;
      expect(app.output()).not.toMatch(/"level":"error"/);
    } finally {
      await db.drop();
    }
  }, 60_000);
});

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Polls the app's /metrics until `n` requests besides the scrape itself are in flight. */
async function untilInFlight(base: string, n: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const text = await (await fetch(`${base}/metrics`)).text();
    const value = Number(/^http_requests_in_flight (\d+)/m.exec(text)?.[1] ?? 0);
    if (value - 1 >= n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${n} requests never were in flight`);
}
