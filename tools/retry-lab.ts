// npm run demo:retries: the retry lab. Starts the API, puts a network that loses
// responses in front of it, and lets retrying clients charge an account through
// it, showing live what happens, then whether every charge happened exactly once.
// Then one client renames the account through the same network, retrying PUTs
// without any key, and the lab shows that the final state is right. All along,
// the API sends its events to the reference webhook receiver (examples/), through
// a network as bad, and the lab shows them arriving, the duplicates ignored, and
// the receiver's books matching the ledger.
//
//   LAB_KEYS=per-operation  one Idempotency-Key per charge, reused on every retry (right)
//   LAB_KEYS=per-attempt    a new key for every attempt: the bug that double-charges
//   LAB_INSTANCES=2         two API processes on the one database, each behind its own
//                           lossy network, and every retry sent to the other one: as
//                           behind a load balancer, where a retry often lands elsewhere
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { auditLedger } from '../src/audit/ledger-audit.js';
import { loadConfig } from '../src/config/config.js';
import { openDatabase } from '../src/database/open-database.js';
import {
  buildReceiver,
  migrateReceiver,
  type EventOutcome,
} from '../examples/webhook-receiver/receiver.js';
import { startApi } from './api-process.js';
import { FAULTS, FaultyProxy, random } from './faulty-proxy.js';
import {
  type KeyMode,
  newStats,
  type Operation,
  sendAll,
  sendWithRetries,
  type Stats,
} from './retrying-client.js';

const CHARGES = Number(process.env.LAB_CHARGES ?? 200);
const CLIENTS = Number(process.env.LAB_CLIENTS ?? 8);
const FAULT_RATE = Number(process.env.LAB_FAULT_RATE ?? 0.4);
const RENAMES = Number(process.env.LAB_RENAMES ?? 20);
const SEED = Number(process.env.LAB_SEED ?? Date.now() % 1_000_000);
const KEYS = (process.env.LAB_KEYS ?? 'per-operation') as KeyMode;
const INSTANCES = Number(process.env.LAB_INSTANCES ?? 1);
const API_KEY = 'sk_test_demo';
const START = 1_000_000;
const tty = process.stdout.isTTY;
const bold = (s: string) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const row = (label: string, value: string) => console.log(`  ${label.padEnd(26)}${value}`);

async function main(): Promise<number> {
  if (KEYS !== 'per-operation' && KEYS !== 'per-attempt') {
    console.error('LAB_KEYS must be per-operation or per-attempt');
    return 2;
  }
  if (!Number.isInteger(INSTANCES) || INSTANCES < 1 || INSTANCES > 4) {
    console.error('LAB_INSTANCES must be 1, 2, 3 or 4');
    return 2;
  }
  const config = loadConfig();
  console.log(bold('Retry lab: exactly-once charges through a network that loses responses'));
  console.log(
    `${CHARGES} charges, ${CLIENTS} clients at a time, ${Math.round(FAULT_RATE * 100)}% of connections broken, seed ${SEED}.`,
  );
  console.log(
    KEYS === 'per-operation'
      ? 'Keys: one Idempotency-Key per charge, reused on every retry (LAB_KEYS=per-operation).'
      : 'Keys: a NEW Idempotency-Key for every attempt, the most common client bug (LAB_KEYS=per-attempt).',
  );
  console.log(
    INSTANCES === 1
      ? 'One API instance (LAB_INSTANCES=2: two, and every retry sent to the other one).\n'
      : `${INSTANCES} API instances on one database, each retry sent to the next one (LAB_INSTANCES=${INSTANCES}).\n`,
  );

  // The database: DATABASE_URL, or the embedded PostgreSQL in DATA_DIR.
  const database = await openDatabase(config);
  const apis = await Promise.all(
    Array.from({ length: INSTANCES }, () =>
      startApi({
        env: {
          DATABASE_URL: database.url,
          LOG_LEVEL: 'error',
          NODE_ENV: 'development',
          // The lab tries failed deliveries again at once; by default the wait starts at 30 s.
          WEBHOOK_DISPATCH_INTERVAL_MS: '200',
          WEBHOOK_RETRY_SECONDS: '0',
          WEBHOOK_TIMEOUT_MS: '2000',
        },
        logs: 'errors',
      }),
    ),
  );
  const api = apis[0];
  const receiver = await startReceiver(database.url, SEED);
  // Each instance behind a lossy network of its own, as behind a load balancer.
  const proxies = await Promise.all(
    apis.map((instance, i) =>
      FaultyProxy.start(instance.port, {
        fault: 'random',
        faultRate: FAULT_RATE,
        rng: random(SEED + 10 * i),
      }),
    ),
  );
  // The n-th operation's k-th attempt goes to instance (n + k) mod INSTANCES: with two,
  // every retry lands on the other one.
  const tries = new Map<number, number>();
  const viaProxy = (n = 0) => {
    const k = tries.get(n) ?? 0;
    tries.set(n, k + 1);
    return `http://127.0.0.1:${proxies[(n + k) % proxies.length].port}`;
  };
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  try {
    const endpoint = await postFor<{ id: string; secret: string }>(api.url, '/webhook-endpoints', {
      url: receiver.url,
      description: 'retry lab',
    });
    receiver.secrets.push(endpoint.secret);
    const account = await post(api.url, '/accounts', { name: 'Retry lab', currency: 'USD' });
    await post(api.url, `/accounts/${account}/deposits`, { amount: START, currency: 'USD' });

    // 1. Charges, through the lossy network.
    const charges: Operation[] = Array.from({ length: CHARGES }, (_, i) => ({
      key: `lab-${randomUUID()}`,
      method: 'POST',
      path: '/charges',
      body: { accountId: account, amount: 100 + (i % 7) * 25, currency: 'USD' },
    }));
    const intended = charges.reduce((sum, op) => sum + (op.body.amount as number), 0);
    const stats = newStats();
    let done = 0;
    const progress = setInterval(() => draw(done, stats, proxies, receiver.seen), 100);
    const started = Date.now();
    await sendAll(charges, {
      clients: CLIENTS,
      baseUrl: viaProxy,
      apiKey: API_KEY,
      stats,
      keys: KEYS,
      onAnswer: () => done++,
    });
    clearInterval(progress);
    draw(done, stats, proxies, receiver.seen);
    const seconds = (Date.now() - started) / 1000;
    const afterCharges = await accountRow(db, account);

    // 2. Renames, one after the other, retried without any key: a PUT sets a value.
    const versionBefore = afterCharges.version;
    const putStats = newStats();
    const names = Array.from({ length: RENAMES }, (_, i) => `Retry lab, name ${i + 1}`);
    for (const name of names) {
      await sendWithRetries(
        () => viaProxy(CHARGES),
        API_KEY,
        { key: null, method: 'PUT', path: `/accounts/${account}`, body: { name } },
        putStats,
      );
    }
    const final = await accountRow(db, account);
    const violations = await auditLedger(db);

    // 3. The events: wait until every delivery is done, then compare the books.
    const eventsDone = await deliveredWithin(db, endpoint.id, 60_000);
    const books = await receiver.books(account);
    const { rows: sent } = await db.query<{ events: number; tries: number }>(
      `SELECT count(*)::int AS events, coalesce(sum(attempts), 0)::int AS tries
         FROM webhook_deliveries WHERE endpoint_id = $1`,
      [endpoint.id],
    );
    await fetch(`${api.url}/webhook-endpoints/${endpoint.id}`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${API_KEY}` },
    });

    const injected = (fault: (typeof FAULTS)[number]) =>
      proxies.reduce((n, proxy) => n + proxy.injected[fault], 0);
    const lost = FAULTS.filter((f) => f !== 'none' && f !== 'delay' && f !== 'hang').reduce(
      (n, f) => n + injected(f),
      0,
    );
    const crossed = await replaysFromTheDatabase(apis.map((instance) => instance.url));
    const executed = final.charges;
    const expected = START - intended;
    const doubles = executed - CHARGES;
    console.log(`\n\n${bold('Summary')}`);
    row('keys', KEYS);
    if (INSTANCES > 1) {
      row('instances', `${INSTANCES}, one database; every retry sent to another instance`);
    }
    row('charges intended', String(CHARGES));
    row('HTTP attempts', `${stats.attempts} (${stats.retries} retries) in ${seconds.toFixed(1)} s`);
    row(
      'connections broken',
      `${lost}: ${FAULTS.filter((f) => f !== 'none' && f !== 'hang')
        .map((f) => `${f} ${injected(f)}`)
        .join(', ')}`,
    );
    row('network errors seen', `${stats.networkErrors} (the client never learnt the outcome)`);
    row(
      'replayed responses',
      `${stats.replays} (the work was done; the retry got the stored answer)`,
    );
    if (INSTANCES > 1) {
      row(
        'replays across instances',
        `${crossed} (by an instance that had never seen the key: from the shared database)`,
      );
    }
    row('409 in use', `${stats.inUse} (a retry overtook its original)`);
    row('charges in the database', `${executed}`);
    row(
      'double charges',
      `${doubles}${doubles > 0 ? ' (retries the server took for new charges)' : ''}`,
    );
    row(
      'balance',
      `${afterCharges.balance} (expected ${expected}${afterCharges.balance < expected ? `: overcharged by ${expected - afterCharges.balance}` : ''})`,
    );
    row('ledger audit', violations.length === 0 ? 'sound' : `${violations.length} violation(s)`);
    const namesRight = final.name === names.at(-1) && final.version - versionBefore === RENAMES;
    row(
      'renames (PUT, no key)',
      `${RENAMES} in ${putStats.attempts} attempts; final name ${namesRight ? 'right' : `WRONG (${final.name})`}, version +${final.version - versionBefore} (a retried set changed nothing)`,
    );
    const { events, tries } = sent[0];
    const booksRight =
      eventsDone &&
      receiver.seen.applied === events &&
      books.debited === START - final.balance &&
      books.credited === START;
    row(
      'webhook events',
      `${events} sent in ${tries} tries, ${receiver.seen.applied} applied, ${receiver.seen['duplicate ignored']} duplicates ignored${eventsDone ? '' : ' (NOT all delivered within 60 s)'}`,
    );
    row(
      "the receiver's books",
      `debited ${books.debited}, credited ${books.credited}: ${booksRight ? 'match the ledger' : 'DO NOT match the ledger'}`,
    );

    const exactlyOnce = doubles === 0 && afterCharges.balance === expected;
    const sound = violations.length === 0 && namesRight && booksRight;
    if (KEYS === 'per-operation') {
      console.log(
        `\n${bold(exactlyOnce && sound ? 'Exactly once: every charge happened once, whatever the network did.' : 'NOT exactly once: see above.')}`,
      );
      return exactlyOnce && sound ? 0 : 1;
    }
    console.log(
      `\n${bold(`${doubles} double charge(s): with a new key for every attempt, a retry after a lost response is a new charge. The key must name the operation, not the attempt.`)}`,
    );
    return sound ? 0 : 1;
  } finally {
    await db.end();
    for (const proxy of proxies) await proxy.stop();
    for (const instance of apis) instance.child.kill('SIGTERM');
    await Promise.all(apis.map((instance) => instance.exited()));
    await receiver.close();
    await database.close();
  }
}

/** What the database holds for the account: its charges, balance, name and version. */
async function accountRow(db: pg.Client, account: string) {
  const { rows } = await db.query<{
    balance: number;
    name: string;
    version: number;
    charges: number;
  }>(
    `SELECT balance::int AS balance, name, version::int AS version,
            (SELECT count(*)::int FROM charges WHERE account_id = $1) AS charges
       FROM accounts WHERE id = $1`,
    [account],
  );
  return rows[0];
}

/**
 * The reference receiver, in this process, on a fresh database of its own beside
 * the lab's, behind a proxy as lossy as the clients' network, and answering 503 or
 * losing its answer after applying now and then. Its database goes with it.
 */
async function startReceiver(databaseUrl: string, seed: number) {
  const url = new URL(databaseUrl);
  const name = `${url.pathname.slice(1)}_lab_receiver`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  url.pathname = `/${name}`;
  const db = new pg.Pool({ connectionString: url.toString() });
  // Its connections are cut when its database is dropped (close()): expected, not a crash.
  db.on('error', () => undefined);
  await migrateReceiver(db);
  const secrets: string[] = [];
  const seen: Record<EventOutcome, number> = { received: 0, applied: 0, 'duplicate ignored': 0 };
  const app = await buildReceiver({
    db,
    secrets: () => secrets,
    faults: { failRate: FAULT_RATE / 4, dropAfterApplyRate: FAULT_RATE / 2 },
    rng: random(seed + 1),
    onEvent: ({ outcome }) => seen[outcome]++,
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const proxy = await FaultyProxy.start((app.server.address() as { port: number }).port, {
    fault: 'random',
    faultRate: FAULT_RATE / 2,
    rng: random(seed + 2),
  });
  return {
    url: `http://127.0.0.1:${proxy.port}/webhooks`,
    secrets,
    seen,
    async books(account: string) {
      const { rows } = await db.query<{ credited: string; debited: string }>(
        'SELECT credited, debited FROM account_totals WHERE account_id = $1',
        [account],
      );
      return { credited: Number(rows[0]?.credited ?? 0), debited: Number(rows[0]?.debited ?? 0) };
    },
    /** Stops it, and drops its database: the lab's scratch. */
    async close() {
      await proxy.stop();
      await app.close();
      await db.end();
      // FORCE: a pooler in front of the server may still hold connections to it.
      await admin.query(`DROP DATABASE ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** Polls until every delivery to the endpoint is done; false if `ms` went by first. */
async function deliveredWithin(db: pg.Client, endpointId: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM webhook_deliveries WHERE endpoint_id = $1 AND status <> 'delivered'`,
      [endpointId],
    );
    if (rows[0].n === 0) return true;
    await new Promise((r) => setTimeout(r, 100)); // polling: the API tells no one when it is done
  }
  return false;
}

/**
 * The replays that crossed instances: those an instance answered from the shared
 * database, its memory not having the key. An instance remembers every response
 * it stores or replays (decision 15), so a replay from the database is always one
 * of a key that another instance executed (idempotency_outcomes_total{replayed}
 * less idempotency_memory_replays_total, on each instance's /metrics).
 */
async function replaysFromTheDatabase(instances: string[]): Promise<number> {
  let total = 0;
  for (const url of instances) {
    const text = await (await fetch(`${url}/metrics`)).text();
    const value = (line: RegExp) => Number(line.exec(text)?.[1] ?? 0);
    total +=
      value(/^idempotency_outcomes_total\{outcome="replayed"\} (\d+)/m) -
      value(/^idempotency_memory_replays_total (\d+)/m);
  }
  return total;
}

function draw(
  done: number,
  stats: Stats,
  proxies: FaultyProxy[],
  seen: Record<EventOutcome, number>,
): void {
  const width = 30;
  const filled = Math.round((done / CHARGES) * width);
  const broken = proxies
    .flatMap((proxy) => Object.entries(proxy.injected))
    .filter(([f]) => f !== 'none')
    .reduce((n, [, v]) => n + v, 0);
  const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${CHARGES} charges · ${stats.attempts} requests · ${broken} broken · ${stats.retries} retries · ${stats.replays} replays · ${stats.inUse} × 409 · events ${seen.applied} applied, ${seen['duplicate ignored']} dup. ignored`;
  process.stdout.write(tty ? `\r${line}` : done === CHARGES || done % 50 === 0 ? `${line}\n` : '');
}

async function post(base: string, path: string, body: object): Promise<string> {
  return (await postFor<{ id: string }>(base, path, body)).id;
}

async function postFor<T>(base: string, path: string, body: object): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${API_KEY}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': randomUUID(),
    },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
