import { afterAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { slowCharges, untilAdvisoryLocks } from './support/db-faults.js';
import { testPool } from './support/test-pool.js';
import { killChildren, scratchDatabase, startChildApp } from './support/child-app.js';
import { ledgerViolations } from './support/invariants.js';

afterAll(() => killChildren());

describe('graceful shutdown', () => {
  it('on SIGTERM during 20 in-flight charges, finishes and commits every one, then exits 0', async () => {
    const db = await scratchDatabase('shutdown');
    const pool = testPool(db.url, 2);
    try {
      // Each charge of 555 sleeps 1 s inside its transaction, after its debit.
      await slowCharges(pool, { 555: 1 });
      const app = await startChildApp({ DATABASE_URL: db.url, DB_POOL_SIZE: '25' });
      const base = `http://127.0.0.1:${app.port}`;
      const call = (path: string, body: object, key?: string) =>
        // Node's fetch keeps connections alive: the drain must not wait for them.
        fetch(`${base}${path}`, {
          method: 'POST',
          headers: {
            Authorization: 'Bearer sk_test_demo',
            'Content-Type': 'application/json',
            ...(key ? { 'Idempotency-Key': key } : {}),
          },
          body: JSON.stringify(body),
        });
      const accounts: string[] = [];
      for (let i = 0; i < 20; i++) {
        const account = (await (
          await call('/accounts', { name: `a${i}`, currency: 'USD' })
        ).json()) as { id: string };
        await call(
          `/accounts/${account.id}/deposits`,
          { amount: 1_000, currency: 'USD' },
          randomUUID(),
        );
        accounts.push(account.id);
      }

      const inFlight = accounts.map((id) =>
        call('/charges', { accountId: id, amount: 555, currency: 'USD' }, randomUUID()).then(
          (r) => r.status,
        ),
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
});
