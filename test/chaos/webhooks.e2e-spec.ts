import { afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { type ApiProcess, startApi } from '../../tools/api-process.js';
import { FaultyProxy } from '../../tools/faulty-proxy.js';
import { useTestDatabase } from '../support/databases.js';
import { createSequence, inject, sleepingBackends } from '../support/db-faults.js';
import { DEMO_API_KEY, demoFundedAccount, demoPost } from '../support/demo-merchant.js';
import { ledgerViolations } from '../support/invariants.js';
import { startTestReceiver, type TestReceiver } from '../support/receiver.js';
import { ITERATIONS, plan, random, report, sendAll } from './chaos-support.js';

/**
 * Events that leave exactly once, under fire: the receiver down, slow past the
 * sender's timeout, answering 5xx, or applying an event and losing its answer; the
 * API killed while a delivery is in flight and a charge is mid-transaction; three
 * instances delivering at once. Every time: each committed movement has exactly one
 * event, each event reaches the receiver at least once and is applied by it exactly
 * once, the receiver's books match the ledger, and a movement that rolled back has
 * no event at all.
 *
 * The APIs are child processes (so they can be killed); the reference receiver runs
 * in this process, behind a proxy that can go away.
 */
const db = useTestDatabase();
const running: ApiProcess[] = [];
const receivers: Array<{ receiver: TestReceiver; proxy: FaultyProxy }> = [];

beforeAll(async () => {
  // A charge of 4,242 sleeps inside its transaction, once: a window to kill its API.
  await createSequence(db.sql, 'slow_once');
  await inject(
    db.sql,
    `CREATE FUNCTION slow_charge() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.type = 'charge' AND NEW.amount = -4242 AND nextval('slow_once') = 1 THEN
        PERFORM pg_sleep(3);
      END IF;
      RETURN NEW;
    END $$`,
    `CREATE TRIGGER slow_charge BEFORE INSERT ON ledger_entries
      FOR EACH ROW EXECUTE FUNCTION slow_charge()`,
  );
});
afterEach(async () => {
  for (const api of running.splice(0)) {
    if (api.child.exitCode === null) api.child.kill('SIGKILL');
  }
  for (const { receiver, proxy } of receivers.splice(0)) {
    await proxy.stop();
    await receiver.close();
  }
});

/** An API on the file's database that delivers webhooks every 50 ms, trying again at once. */
async function api(env: Record<string, string> = {}): Promise<ApiProcess> {
  const started = await startApi({
    env: {
      DATABASE_URL: db.url,
      WEBHOOK_DISPATCH_INTERVAL_MS: '50',
      WEBHOOK_RETRY_SECONDS: '0',
      WEBHOOK_MAX_ATTEMPTS: '1000',
      WEBHOOK_TIMEOUT_MS: '1000',
      ...env,
    },
  });
  running.push(started);
  return started;
}

interface Subscribed {
  receiver: TestReceiver;
  /** In front of the receiver: stop() it and the receiver is down. */
  proxy: FaultyProxy;
  endpointId: string;
  /** How often the receiver saw each webhook-id after applying it (duplicates ignored). */
  duplicates: Map<string, number>;
  /** Verified and not yet applied (or found a duplicate), by webhook-id. */
  inFlight: Set<string>;
}

/** A fresh reference receiver, registered (through its proxy) as an endpoint of the demo merchant. */
async function subscribe(base: string, seed: number): Promise<Subscribed> {
  const duplicates = new Map<string, number>();
  const inFlight = new Set<string>();
  const receiver = await startTestReceiver({
    rng: random(seed),
    onEvent: ({ webhookId, outcome }) => {
      if (outcome === 'received') inFlight.add(webhookId);
      else inFlight.delete(webhookId);
      if (outcome === 'duplicate ignored')
        duplicates.set(webhookId, (duplicates.get(webhookId) ?? 0) + 1);
    },
  });
  const proxy = await FaultyProxy.start(receiver.port);
  receivers.push({ receiver, proxy });
  const endpoint = await demoPost(base, '/webhook-endpoints', {
    url: `http://127.0.0.1:${proxy.port}/webhooks`,
  });
  expect(endpoint.status).toBe(201);
  receiver.secrets.push(endpoint.body.secret as string);
  return { receiver, proxy, endpointId: endpoint.body.id as string, duplicates, inFlight };
}

/** Polls `check` every 50 ms until it holds; returns the seconds it took. */
async function until(check: () => Promise<boolean>, seconds = 60): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > seconds * 1_000) throw new Error(`not within ${seconds} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return (Date.now() - started) / 1_000;
}

const allDelivered = (endpointId: string) => async () =>
  Number(
    (
      await db.sql.query(
        `SELECT count(*) AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status <> 'delivered'`,
        [endpointId],
      )
    ).rows[0].n,
  ) === 0;

/**
 * Exactly once, end to end, for the accounts given: each charge and deposit on them
 * has exactly one event and no event lacks its record; each event queued for the
 * endpoint was delivered and sits once in the receiver's inbox, which holds nothing
 * else; and the receiver's books (credited, debited per account) match the ledger.
 */
async function expectEachEventAppliedOnce(
  { receiver, endpointId }: Subscribed,
  accounts: string[],
): Promise<{ events: number; attempts: number }> {
  // Matched here rather than joined in SQL: an event's object id is no column Citus
  // could join its shards on.
  const { rows: movements } = await db.sql.query<{ id: string }>(
    `SELECT id FROM charges WHERE account_id = ANY($1)
     UNION ALL SELECT id FROM deposits WHERE account_id = ANY($1)`,
    [accounts],
  );
  const { rows: events } = await db.sql.query<{
    type: string;
    objectId: string;
    accountId: string;
  }>(
    `SELECT type, data -> 'object' ->> 'id' AS "objectId",
            data -> 'object' ->> 'accountId' AS "accountId" FROM events`,
  );
  const eventsAbout = new Map<string, number>();
  for (const e of events) eventsAbout.set(e.objectId, (eventsAbout.get(e.objectId) ?? 0) + 1);
  expect(movements.filter((m) => eventsAbout.get(m.id) !== 1)).toEqual([]);
  const known = new Set(movements.map((m) => m.id));
  const orphans = events.filter(
    (e) =>
      ['charge.succeeded', 'charge.failed', 'deposit.succeeded'].includes(e.type) &&
      accounts.includes(e.accountId) &&
      !known.has(e.objectId),
  );
  expect(orphans).toEqual([]);

  const { rows: queued } = await db.sql.query<{ eventId: string; status: string }>(
    `SELECT event_id AS "eventId", status FROM webhook_deliveries WHERE endpoint_id = $1`,
    [endpointId],
  );
  expect(queued.filter((d) => d.status !== 'delivered')).toEqual([]);
  const inbox = (await receiver.db.query<{ webhook_id: string }>('SELECT webhook_id FROM inbox'))
    .rows;
  expect(inbox.map((r) => r.webhook_id).sort()).toEqual(queued.map((d) => d.eventId).sort());

  const { rows: ledger } = await db.sql.query<{
    account: string;
    credited: string;
    debited: string;
  }>(
    `SELECT account_id AS account,
            sum(amount) FILTER (WHERE amount > 0) AS credited,
            coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS debited
       FROM ledger_entries WHERE account_id = ANY($1) GROUP BY account_id ORDER BY 1`,
    [accounts],
  );
  const { rows: books } = await receiver.db.query<{
    account: string;
    credited: string;
    debited: string;
  }>(
    `SELECT account_id AS account, credited, debited FROM account_totals
      WHERE account_id = ANY($1) ORDER BY 1`,
    [accounts],
  );
  expect(books.map((b) => ({ ...b }))).toEqual(
    ledger.map((l) => ({ account: l.account, credited: l.credited, debited: l.debited })),
  );
  expect(await ledgerViolations(db.sql)).toEqual([]);
  const { rows } = await db.sql.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM webhook_attempts WHERE endpoint_id = $1',
    [endpointId],
  );
  return { events: queued.length, attempts: rows[0].n };
}

describe('a receiver that misbehaves, under load', () => {
  it('5xx, slow past the timeout, answers lost after applying, and down for a while: each event applied once', async () => {
    const app = await api();
    const subscribed = await subscribe(app.url, 1);
    const { receiver, proxy } = subscribed;
    const accounts: string[] = [];
    for (let i = 0; i < 4; i++) accounts.push(await demoFundedAccount(app.url, 2_000));
    const rng = random();
    const ops = plan(accounts, 80 * ITERATIONS, rng);
    Object.assign(receiver.faults, { failRate: 0.25, dropAfterApplyRate: 0.25 });

    // The merchant's side is unreliable too: its retried requests must not make
    // a second event.
    const toApi = await FaultyProxy.start(app.port, { fault: 'random', faultRate: 0.2, rng });
    const load = sendAll(ops, {
      clients: 6,
      baseUrl: () => `http://127.0.0.1:${toApi.port}`,
      apiKey: DEMO_API_KEY,
    });
    // Partway through: slow past the sender's 1 s timeout (it applies anyway, later),
    // then gone altogether (connections refused), then back.
    await until(async () => (await inboxSize(receiver)) >= 10);
    receiver.faults.slowMs = 1_200;
    await until(async () => (await attemptsWith(subscribed.endpointId, 'no answer in time')) >= 3);
    receiver.faults.slowMs = 0;
    const cutBefore = await attemptsWith(subscribed.endpointId, 'connection refused');
    await proxy.stop();
    await until(
      async () =>
        (await attemptsWith(subscribed.endpointId, 'connection refused')) >= cutBefore + 3,
    );
    await proxy.listen();
    const { results, stats } = await load;
    const answered = Date.now();
    await toApi.stop();
    expect(results.filter((r) => r.status !== 201 && r.status !== 402)).toEqual([]);
    const seconds = await until(allDelivered(subscribed.endpointId));

    const { events, attempts } = await expectEachEventAppliedOnce(subscribed, accounts);
    const duplicatesIgnored = [...subscribed.duplicates.values()].reduce((a, b) => a + b, 0);
    expect(duplicatesIgnored).toBeGreaterThan(0); // the lost answers were sent again
    expect(attempts).toBeGreaterThan(events);
    report('webhooks-misbehaving-receiver', {
      movements: ops.length,
      requestAttempts: stats.attempts,
      events,
      attempts,
      timeouts: await attemptsWith(subscribed.endpointId, 'no answer in time'),
      cutOrRefused: await attemptsWith(subscribed.endpointId, 'connection refused'),
      answered5xx: await attemptsWith(subscribed.endpointId, 'answered 503'),
      duplicatesIgnored,
      secondsToDeliverAllAfterLastAnswer: (Date.now() - answered) / 1_000,
      secondsPolled: seconds,
    });
  }, 120_000);
});

describe('kill -9 mid-delivery', () => {
  it('a delivery in flight goes out again from the next process (the receiver ignores it), and the charge that rolled back has no event', async () => {
    // The sender waits 4 s for an answer (so its lease lasts 9 s); the receiver takes
    // 3 s: the try stays in flight, leased, however long the kill below takes to set up.
    const first = await api({ WEBHOOK_TIMEOUT_MS: '4000' });
    const subscribed = await subscribe(first.url, 2);
    const account = await demoFundedAccount(first.url, 10_000);
    await until(allDelivered(subscribed.endpointId)); // account.created, deposit.succeeded
    subscribed.receiver.faults.slowMs = 3_000;
    const deposit = await demoPost(
      first.url,
      `/accounts/${account}/deposits`,
      { amount: 100, currency: 'USD' },
      randomUUID(),
    );
    const eventId = (await eventOf(deposit.body.id as string)).id;
    // Its delivery at a receiver that takes 3 s to apply it; and a charge asleep in
    // its transaction.
    await until(async () => subscribed.inFlight.has(eventId));
    expect(await leased(eventId, subscribed.endpointId)).toBe(true);
    const charge = demoPost(
      first.url,
      '/charges',
      { accountId: account, amount: 4_242, currency: 'USD', description: 'rolled back' },
      randomUUID(),
    ).catch(() => 'connection lost');
    await until(async () => (await sleepingBackends(db.sql)) === 1);
    first.child.kill('SIGKILL');
    expect(await charge).toBe('connection lost');
    subscribed.receiver.faults.slowMs = 0;

    const second = await api();
    const seconds = await until(allDelivered(subscribed.endpointId));

    expect(subscribed.duplicates.get(eventId)).toBe(1); // applied once, sent twice
    const { rows: rolledBack } = await db.sql.query(
      `SELECT id FROM charges WHERE description = 'rolled back'
        UNION ALL SELECT id FROM events WHERE (data -> 'object' ->> 'amount')::bigint = 4242`,
    );
    expect(rolledBack).toEqual([]);
    await expectEachEventAppliedOnce(subscribed, [account]);
    expect((await demoPost(second.url, '/events/' + eventId + '/redeliver', {})).status).toBe(202);
    report('webhooks-kill-mid-delivery', {
      resentByNextProcessAfterSeconds: seconds,
      duplicatesIgnored: 1,
      eventsForRolledBackCharge: 0,
    });
  }, 60_000);
});

describe('three instances delivering at once', () => {
  it('leases what it sends, and the others respect the lease: every event sent once, by one of them, none twice', async () => {
    // No faults here, and the default 10 s timeout: on a loaded machine a 1 s one
    // would time out tries the receiver then applies, and send them again.
    const apps = await Promise.all([1, 2, 3].map(() => api({ WEBHOOK_TIMEOUT_MS: '10000' })));
    const subscribed = await subscribe(apps[0].url, 3);
    subscribed.receiver.faults.slowMs = 100; // batches overlap
    const accounts: string[] = [];
    for (let i = 0; i < 3; i++) accounts.push(await demoFundedAccount(apps[i].url, 1_000_000));
    const ops = plan(accounts, 120 * ITERATIONS, random());

    await sendAll(ops, { clients: 9, baseUrl: (n) => apps[n % 3].url, apiKey: DEMO_API_KEY });
    await until(allDelivered(subscribed.endpointId));

    const { events, attempts } = await expectEachEventAppliedOnce(subscribed, accounts);
    expect(attempts).toBe(events); // no faults: one try each, never two at once
    expect(subscribed.duplicates.size).toBe(0);
    const perInstance = await Promise.all(apps.map((a) => deliveredBy(a)));
    expect(perInstance.reduce((a, b) => a + b, 0)).toBe(events);
    report('webhooks-three-instances', { events, attempts, perInstance, duplicates: 0 });
  }, 120_000);
});

const inboxSize = async (receiver: TestReceiver) =>
  Number((await receiver.db.query('SELECT count(*) AS n FROM inbox')).rows[0].n);

const attemptsWith = async (endpointId: string, error: string) =>
  Number(
    (
      await db.sql.query(
        `SELECT count(*) AS n FROM webhook_attempts WHERE endpoint_id = $1 AND error LIKE $2`,
        [endpointId, `%${error}%`],
      )
    ).rows[0].n,
  );

const eventOf = async (objectId: string) =>
  (
    await db.sql.query<{ id: string }>(
      `SELECT id FROM events WHERE data -> 'object' ->> 'id' = $1`,
      [objectId],
    )
  ).rows[0];

const leased = async (eventId: string, endpointId: string) =>
  (
    await db.sql.query(
      `SELECT 1 FROM webhook_deliveries
        WHERE event_id = $1 AND endpoint_id = $2 AND locked_until > now()`,
      [eventId, endpointId],
    )
  ).rowCount === 1;

/** What an instance's /metrics says it delivered. */
async function deliveredBy(app: ApiProcess): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('webhook_deliveries_total{outcome="delivered"}'));
  return line ? Number(line.split(' ').pop()) : 0;
}
