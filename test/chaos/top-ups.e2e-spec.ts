import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { type ApiProcess, startApi } from '../../tools/api-process.js';
import { FaultyProxy } from '../../tools/faulty-proxy.js';
import { reconcile } from '../../src/audit/reconciliation.js';
import { useTestDatabase } from '../support/databases.js';
import { createSequence, inject } from '../support/db-faults.js';
import { DEMO_API_KEY, demoFundedAccount, demoPost } from '../support/demo-merchant.js';
import { ledgerViolations } from '../support/invariants.js';
import { startTestProcessor, type TestProcessor } from '../support/processor.js';
import { ITERATIONS, newStats, type Operation, random, report, sendAll } from './chaos-support.js';

/**
 * Money that leaves the database, under fire: the API killed between phases, the
 * processor timing out after charging, dropping its answers, or gone for a while,
 * duplicates spread over three instances. Every time: each top-up charged at the
 * processor once, credited here once, finished within a bounded time (by a retry or
 * the completer), and both the auditor and the reconciliation find nothing.
 *
 * The APIs are child processes (so they can be killed); the processor runs in this
 * process, behind a proxy that can hang its connections or go away.
 */
const db = useTestDatabase();
let processor: TestProcessor;
let toProcessor: FaultyProxy;
const running: ApiProcess[] = [];

beforeAll(async () => {
  processor = await startTestProcessor({ slowMs: 300, holdMs: 1_500 });
  toProcessor = await FaultyProxy.start(Number(new URL(processor.url).port));
  // Phase (c) of one top-up amount sleeps inside its transaction, once: a window to
  // kill the API after the processor charged and before the credit committed.
  await createSequence(db.sql, 'slow_once');
  await inject(
    db.sql,
    `CREATE FUNCTION slow_top_up_credit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.type = 'top_up' AND NEW.amount = 2222 AND nextval('slow_once') = 1 THEN
        PERFORM pg_sleep(3);
      END IF;
      RETURN NEW;
    END $$`,
    `CREATE TRIGGER slow_top_up_credit BEFORE INSERT ON ledger_entries
      FOR EACH ROW EXECUTE FUNCTION slow_top_up_credit()`,
  );
});
afterEach(async () => {
  for (const api of running.splice(0)) {
    if (api.child.exitCode === null) api.child.kill('SIGKILL');
  }
  toProcessor.fault = 'none';
});
afterAll(async () => {
  await toProcessor.stop();
  await processor.close();
});

/** An API on the file's database, calling the processor through the proxy. */
async function api(port?: number): Promise<ApiProcess> {
  const started = await startApi({
    port,
    env: {
      DATABASE_URL: db.url,
      PROCESSOR_URL: `http://127.0.0.1:${toProcessor.port}`,
      PROCESSOR_TIMEOUT_MS: '1000',
      TOP_UP_LEASE_SECONDS: '2',
      COMPLETER_INTERVAL_SECONDS: '1',
      TOP_UP_RETRY_SECONDS: '0',
      TOP_UP_MAX_ATTEMPTS: '100',
    },
  });
  running.push(started);
  return started;
}

const topUp = (base: string, account: string, amount: number, key: string, card = 'tok_visa') =>
  demoPost(base, `/accounts/${account}/top-ups`, { amount, currency: 'USD', card }, key);

/** Polls `check` every 50 ms until it holds; returns the seconds it took. */
async function until(check: () => Promise<boolean>, seconds = 30): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > seconds * 1_000) throw new Error(`not within ${seconds} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return (Date.now() - started) / 1_000;
}

const topUpOf = async (account: string) =>
  (
    await db.sql.query<{ id: string; status: string }>(
      'SELECT id, status FROM top_ups WHERE account_id = $1',
      [account],
    )
  ).rows;

const paymentsFor = async (topUpId: string) =>
  Number(
    (
      await processor.db.query('SELECT count(*) AS n FROM payments WHERE idempotency_key = $1', [
        topUpId,
      ])
    ).rows[0].n,
  );

const balance = async (account: string) =>
  Number(
    (await db.sql.query('SELECT balance FROM accounts WHERE id = $1', [account])).rows[0].balance,
  );

/** The books sound, and ours and the processor's agree. */
async function expectSound(): Promise<void> {
  expect(await ledgerViolations(db.sql)).toEqual([]);
  expect(
    await reconcile(db.sql, { url: processor.url, apiKey: 'sk_processor_test_payments_api' }),
  ).toEqual([]);
}

describe('kill -9 between phases', () => {
  it('between (a) and (b): the intent is recorded, the processor never called; the completer of the next process charges and credits once', async () => {
    const first = await api();
    const account = await demoFundedAccount(first.url, 1);
    toProcessor.fault = 'hang'; // the call leaves, and nothing reaches the processor
    const key = randomUUID();
    const lost = topUp(first.url, account, 1111, key).catch(() => 'connection lost');
    await until(async () => (await topUpOf(account)).length === 1); // phase (a) committed
    first.child.kill('SIGKILL');
    expect(await lost).toBe('connection lost');
    const [{ id }] = await topUpOf(account);
    expect(await paymentsFor(id)).toBe(0);
    toProcessor.fault = 'none';

    const second = await api();
    const seconds = await until(async () => (await topUpOf(account))[0].status === 'succeeded');
    const retry = await topUp(second.url, account, 1111, key);

    expect(retry).toMatchObject({ status: 201, replayed: true, body: { id, status: 'succeeded' } });
    expect(await paymentsFor(id)).toBe(1);
    expect(await balance(account)).toBe(1 + 1111);
    await expectSound();
    report('top-up-kill-between-a-and-b', { finishedBy: 'completer', seconds });
  });

  it('between (b) and (c): the card is charged, the credit not committed; the completer credits once, the processor replaying its payment', async () => {
    const first = await api();
    const account = await demoFundedAccount(first.url, 1);
    const key = randomUUID();
    const lost = topUp(first.url, account, 2222, key).catch(() => 'connection lost');
    // Charged at the processor, and phase (c) asleep in its transaction.
    await until(async () => {
      const [row] = await topUpOf(account);
      return row !== undefined && (await paymentsFor(row.id)) === 1;
    });
    first.child.kill('SIGKILL');
    expect(await lost).toBe('connection lost');
    const [{ id, status }] = await topUpOf(account);
    expect(status).toBe('pending');
    expect(await balance(account)).toBe(1);

    const second = await api();
    const seconds = await until(async () => (await topUpOf(account))[0].status === 'succeeded');

    expect(await paymentsFor(id)).toBe(1);
    expect(await balance(account)).toBe(1 + 2222);
    expect((await topUp(second.url, account, 2222, key)).replayed).toBe(true);
    await expectSound();
    report('top-up-kill-between-b-and-c', { finishedBy: 'completer', seconds });
  });
});

describe('a misbehaving processor, under load', () => {
  it('timeouts after charging, cut connections and slow answers: every top-up charged once and credited once', async () => {
    const app = await api();
    const rng = random();
    const cards = ['tok_visa', 'tok_timeout_after_charge', 'tok_drop_after_charge', 'tok_slow'];
    const accounts: string[] = [];
    for (let i = 0; i < 4; i++) accounts.push(await demoFundedAccount(app.url, 1));
    const ops: Operation[] = Array.from({ length: 40 * ITERATIONS }, (_, i) => ({
      key: `chaos-topup-${randomUUID()}`,
      method: 'POST',
      path: `/accounts/${accounts[i % accounts.length]}/top-ups`,
      body: {
        amount: 1 + Math.floor(rng() * 900),
        currency: 'USD',
        card: cards[Math.floor(rng() * cards.length)],
      },
    }));
    const started = Date.now();

    const { results, stats } = await sendAll(ops, {
      clients: 6,
      baseUrl: () => app.url,
      apiKey: DEMO_API_KEY,
      deadlineMs: 60_000,
    });

    expect(results.every((r) => r.status === 201)).toBe(true);
    const { rows } = await db.sql.query<{ id: string; n: number }>(
      `SELECT t.id, count(l.id)::int AS n
         FROM top_ups t
         LEFT JOIN ledger_entries l ON l.merchant_id = t.merchant_id AND l.source_id = t.id
        WHERE t.account_id = ANY($1)
        GROUP BY t.id`,
      [accounts],
    );
    expect(rows).toHaveLength(ops.length);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    for (const row of rows) expect(await paymentsFor(row.id)).toBe(1);
    const expected = Object.fromEntries(accounts.map((a) => [a, 1]));
    for (const op of ops) expected[op.path.split('/')[2]] += op.body.amount as number;
    for (const account of accounts) expect(await balance(account)).toBe(expected[account]);
    await expectSound();
    report('top-ups-misbehaving-processor', {
      topUps: ops.length,
      attempts: stats.attempts,
      pending202: stats.pending,
      inUse409: stats.inUse,
      seconds: (Date.now() - started) / 1_000,
      violations: 0,
    });
  }, 120_000);

  it('down for a while: every top-up answers 202 pending, and the completer finishes all of them once it is back', async () => {
    const app = await api();
    const account = await demoFundedAccount(app.url, 1);
    await toProcessor.stop(); // connections refused: the outcome is unknown
    const keys = Array.from({ length: 10 }, () => randomUUID());

    const during = await Promise.all(keys.map((key, i) => topUp(app.url, account, 100 + i, key)));

    expect(during.every((r) => r.status === 202 && r.body.status === 'pending')).toBe(true);
    expect(await balance(account)).toBe(1);
    await toProcessor.listen(); // back, on the same port
    const seconds = await until(async () =>
      (await topUpOf(account)).every((t) => t.status === 'succeeded'),
    );
    const after = await Promise.all(keys.map((key, i) => topUp(app.url, account, 100 + i, key)));

    expect(after.every((r) => r.status === 201 && r.replayed)).toBe(true);
    for (const { id } of await topUpOf(account)) expect(await paymentsFor(id)).toBe(1);
    expect(await balance(account)).toBe(1 + keys.reduce((sum, _, i) => sum + 100 + i, 0));
    await expectSound();
    report('top-ups-processor-down', { topUps: keys.length, finishedBy: 'completer', seconds });
  });
});

describe('duplicates across three instances', () => {
  it('30 requests with one key, spread over three APIs: one payment at the processor, one credit', async () => {
    const apps = await Promise.all([api(), api(), api()]);
    const account = await demoFundedAccount(apps[0].url, 1);
    const op: Operation = {
      key: randomUUID(),
      method: 'POST',
      path: `/accounts/${account}/top-ups`,
      body: { amount: 3_333, currency: 'USD', card: 'tok_slow' },
    };
    const stats = newStats();

    const { results } = await sendAll(
      Array.from({ length: 30 }, () => op),
      { clients: 30, baseUrl: (n) => apps[n % 3].url, apiKey: DEMO_API_KEY, stats },
    );

    expect(results.filter((r) => r.status !== 201).map((r) => [r.status, r.body])).toEqual([]);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    const rows = await topUpOf(account);
    expect(rows).toHaveLength(1);
    expect(await paymentsFor(rows[0].id)).toBe(1);
    expect(await balance(account)).toBe(1 + 3_333);
    await expectSound();
    report('top-ups-duplicates-three-instances', {
      requests: 30,
      executed: 1,
      inUse409: stats.inUse,
      pending202: stats.pending,
      replays: stats.replays,
    });
  });
});
