// npm run bench: throughput and latency of the API against the ceiling that matters,
// PostgreSQL running the same durable idempotent charge as ONE statement, with no
// HTTP and no framework, at the same concurrency. Not part of npm test.
//
//   BENCH_DURATION=10 BENCH_CONCURRENCY=8,32,128 BENCH_WARMUP=15 npm run bench
//   BENCH_API_DATABASE_URL=...  the API reaches the database this way (e.g. PgBouncer);
//                    the bench's own queries and the ceiling go to DATABASE_URL
//   BENCH_PGBOUNCER=unnamed|named  the API goes through a PgBouncer started here
//                    (tools/pgbouncer.ts; transaction mode, DB_POOLER=transaction): with
//                    unnamed statements, or named ones tracked by PgBouncer 1.21+
//                    (max_prepared_statements; PGBOUNCER_BIN names such a build)
//   DATABASE_URL=<a Citus coordinator>  a fresh payments_bench database on every node
//                    of the cluster, distributed by the migrations; DB CPU is the
//                    coordinator's and the workers' backends
//   BENCH_PEER=<dir> side by side: a built copy of ../shared/peers/node-idempotency
//                    (bench/peer.ts), with its key store in memory and in Redis
//                    (BENCH_PEER_STORES=memory,redis; REDIS_URL), gets the same fresh
//                    charges and replays as the API at each concurrency; its rows are
//                    peer-<store>-charge and peer-<store>-replay, Redis's CPU in its own column
//   bare-*           the bare anchor (bench/bare-api.ts): the same charge, statements and
//                    round trips in plain Fastify without NestJS, on the same database and
//                    accounts; the table's `× bare` is the service's share of its rate
//   BENCH_WEBHOOK=1  the merchant has a webhook endpoint (a sink in this process that
//                    answers 204): every event is delivered while the load runs
//
// Starts the compiled API (production mode) on a fresh `payments_bench` database of
// the embedded PostgreSQL, or on DATABASE_URL; seeds a merchant and 1,000 funded
// accounts; runs each scenario; prints a table and writes bench/results.json.
import autocannon from 'autocannon';
import { randomBytes, randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import {
  type ApiProcess,
  NODE_FLAGS,
  projectRoot,
  productionEnv,
  startApi,
} from '../tools/api-process.js';
import { freePort } from '../src/common/free-port.js';
import { citusWorkers, createCitusDatabase, dropCitusDatabase } from '../tools/citus.js';
import { startPgBouncer } from '../tools/pgbouncer.js';
import {
  type Peer,
  type PeerStorage,
  peerChargeBody,
  peerCompletedKeys,
  peerDatabase,
  seedPeerAccounts,
  startPeer,
} from './peer.js';
import { migrate } from '../src/database/data-source.js';
import { openDatabase } from '../src/database/open-database.js';
import { ACCOUNTS, BALANCE, MERCHANT, ceilingQuery, chargeBody, seed } from './workload.js';

/** One line of the table, and of bench/results.json. */
interface Result {
  name: string;
  concurrency: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  apiRssMb: number | null;
  apiCpuMs: number | null;
  dbCpuMs: number | null;
  /** BENCH_PGBOUNCER: PgBouncer's CPU per request. */
  poolerCpuMs?: number | null;
  /** BENCH_PEER, the peer with its key store in Redis: Redis's CPU per request. */
  redisCpuMs?: number | null;
}

/** The requests of one autocannon scenario (everything but connections and duration). */
type Load = Pick<autocannon.Options, 'url' | 'requests'>;

const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 15);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '8,32,128').split(',').map(Number);
const SCENARIOS = process.env.BENCH_SCENARIOS?.split(',');
const WEBHOOK = process.env.BENCH_WEBHOOK === '1';
const PGBOUNCER = process.env.BENCH_PGBOUNCER as 'unnamed' | 'named' | undefined;
const PEER_DIR = process.env.BENCH_PEER;
const PEER_STORES = (process.env.BENCH_PEER_STORES ?? 'memory,redis').split(',') as PeerStorage[];
const API_KEY = `sk_bench_${randomUUID().replaceAll('-', '')}`;

const results: Result[] = [];

/** What one stored idempotency key costs on disk, measured after the run. */
interface KeyStorage {
  keys: number;
  tableBytesPerKey: number;
  indexBytesPerKey: number;
  totalBytesPerKey: number;
}
let keyStorage: KeyStorage | undefined;
/** BENCH_WEBHOOK=1: deliveries the sink received, and what was left pending at the end. */
let webhooks: { received: number; pending: number; events: number } | undefined;

async function main(): Promise<void> {
  const database = await benchDatabase();
  const db = new pg.Pool({ connectionString: database.url, max: Math.max(...CONCURRENCY) + 2 });
  db.on('error', () => undefined);
  log(`database: ${database.label}`);
  await migrate(database.url);
  const accounts = await seedBench(db);
  const hot = accounts[0];
  const sink = WEBHOOK ? await webhookSink(db) : undefined;
  const bouncer = PGBOUNCER ? await benchPgBouncer(database.url, PGBOUNCER) : undefined;
  poolerPid = bouncer?.pid;

  const api = await startApi({
    env: {
      // BENCH_API_DATABASE_URL: the API's way to the same database, e.g. through
      // PgBouncer (with DB_POOLER and DB_PREPARED_STATEMENTS set for it, inherited).
      DATABASE_URL: bouncer?.url ?? process.env.BENCH_API_DATABASE_URL ?? database.url,
      ...productionEnv(),
      // BENCH_WEBHOOK's sink is plain http on this machine's loopback, which production refuses.
      WEBHOOK_ALLOW_LOOPBACK: 'true',
      WEBHOOK_REQUIRE_HTTPS: 'false',
      DB_POOL_SIZE: process.env.DB_POOL_SIZE ?? '10',
      ...(bouncer ? { DB_POOLER: 'transaction', DB_PREPARED_STATEMENTS: PGBOUNCER } : {}),
    },
    // e.g. BENCH_API_NODE_ARGS='--cpu-prof --cpu-prof-dir=bench/profiles' to profile the API
    nodeArgs: process.env.BENCH_API_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
    logs: 'errors',
  });
  const base = api.url;
  log(`API: pid ${api.child.pid} on ${base}, ${cpus().length} CPUs, ${DURATION} s per scenario`);
  const peers: PeerSetUp[] = [];
  const bare = ['bare-spread', 'bare-hot', 'bare-replay'].some(selected)
    ? await startBare({
        DATABASE_URL: bouncer?.url ?? process.env.BENCH_API_DATABASE_URL ?? database.url,
        ...(bouncer ? { DB_POOLER: 'transaction', DB_PREPARED_STATEMENTS: PGBOUNCER } : {}),
      })
    : undefined;
  try {
    if (PEER_DIR) peers.push(...(await startPeers(PEER_DIR, database.url)));
    await warmUp(base, db, accounts);
    if (bare) await warmUp(bare.url, db, accounts, 'the bare anchor');
    for (const c of CONCURRENCY) {
      // Each charge scenario next to its ceiling and the bare anchor: the ratios
      // compare runs minutes apart at most, on a machine whose speed drifts.
      await run('charge-spread', c, api, db, () => chargeRequests(base, () => pick(accounts)));
      if (bare) {
        await run('bare-spread', c, bare, db, () => chargeRequests(bare.url, () => pick(accounts)));
      }
      await ceiling('ceiling-spread', c, db, () => pick(accounts));
      for (const peer of peers) {
        await runPeer(`peer-${peer.storage}-charge`, c, peer, db, () =>
          peerChargeRequests(peer.url, peer.accounts),
        );
      }
      await run('charge-hot', c, api, db, () => chargeRequests(base, () => hot));
      if (bare) await run('bare-hot', c, bare, db, () => chargeRequests(bare.url, () => hot));
      await ceiling('ceiling-hot', c, db, () => hot);
      if (selected('replay')) {
        const keys = await completedKeys(base, accounts, 500);
        await run('replay', c, api, db, () => replayRequests(base, keys));
      }
      if (bare && selected('bare-replay')) {
        const keys = await completedKeys(bare.url, accounts, 500);
        await run('bare-replay', c, bare, db, () => replayRequests(bare.url, keys));
      }
      for (const peer of peers) {
        await runPeer(`peer-${peer.storage}-replay`, c, peer, db, () =>
          replayRequests(peer.url, peer.replays),
        );
      }
      await run('duplicates', c, api, db, () => duplicateRequests(base, accounts));
      await run('get-account', c, api, db, () => ({
        url: base,
        requests: [
          {
            method: 'GET',
            setupRequest: (req: autocannon.Request) => ({
              ...req,
              path: `/accounts/${pick(accounts)}`,
            }),
          },
        ],
      }));
    }
    keyStorage = await measureKeyStorage(db);
    if (sink) {
      const { rows } = await db.query<{ pending: number; events: number }>(
        `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*)::int AS events
           FROM webhook_deliveries`,
      );
      webhooks = { received: sink.received(), ...rows[0] };
    }
  } finally {
    for (const peer of peers) await peer.stop();
    await bare?.stop();
    api.child.kill('SIGTERM');
    await api.exited();
    await bouncer?.stop();
    sink?.close();
    await db.end();
    await database.close();
  }
  report();
}

// ---- the API scenarios ---------------------------------------------------------

/**
 * Unmeasured traffic first, on both sides: a fresh Node process spends its first
 * seconds compiling hot code and growing its heap (measured here, API CPU per
 * charge over consecutive 6 s windows: 2.4, 1.7, 1.45 ms, then steady), which would
 * be charged to whichever scenario happened to run first.
 */
async function warmUp(
  base: string,
  db: pg.Pool,
  accounts: string[],
  what = 'the API',
): Promise<void> {
  if (WARMUP <= 0) return;
  progress(`warm-up of ${what} ${WARMUP} s`);
  await Promise.all([
    autocannon({
      ...chargeRequests(base, () => pick(accounts)),
      connections: 8,
      duration: WARMUP,
      headers,
    }),
    ceilingLoad(4, db, () => pick(accounts), WARMUP),
  ]);
  process.stdout.write('\r'.padEnd(60) + '\r');
}

const headers = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' };

function chargeRequests(base: string, account: () => string): Load {
  return freshCharges(base, () => chargeBody(account()));
}

/** POST /charges with a new key each time, and `body()` as the body. */
function freshCharges(url: string, body: () => string): Load {
  return {
    url,
    requests: [
      {
        method: 'POST',
        path: '/charges',
        setupRequest: (req: autocannon.Request) => ({
          ...req,
          headers: { ...headers, 'idempotency-key': randomUUID() },
          body: body(),
        }),
      },
    ],
  };
}

/** `count` completed charges, to replay: key and body, so the fingerprint matches. */
async function completedKeys(
  base: string,
  accounts: string[],
  count: number,
): Promise<Array<{ key: string; body: string }>> {
  const keys: Array<{ key: string; body: string }> = [];
  for (let i = 0; i < count; i++) {
    const key = randomUUID();
    const body = JSON.stringify({ accountId: pick(accounts), amount: 1, currency: 'USD' });
    const res = await fetch(`${base}/charges`, {
      method: 'POST',
      headers: { ...headers, 'idempotency-key': key },
      body,
    });
    if (res.status !== 201) throw new Error(`seeding replays: ${res.status}`);
    keys.push({ key, body });
  }
  return keys;
}

function replayRequests(base: string, keys: Array<{ key: string; body: string }>): Load {
  return {
    url: base,
    requests: [
      {
        method: 'POST',
        path: '/charges',
        setupRequest: (req: autocannon.Request) => {
          const { key, body } = pick(keys);
          return { ...req, headers: { ...headers, 'idempotency-key': key }, body };
        },
      },
    ],
  };
}

/** Every client sends the same key: one execution, then replays (and 409s while it runs). */
function duplicateRequests(base: string, accounts: string[]): Load {
  const key = randomUUID();
  const body = JSON.stringify({ accountId: pick(accounts), amount: 1, currency: 'USD' });
  return {
    url: base,
    requests: [
      { method: 'POST', path: '/charges', headers: { ...headers, 'idempotency-key': key }, body },
    ],
  };
}

async function run(
  name: string,
  connections: number,
  api: Pick<ApiProcess, 'child'>,
  db: pg.Pool,
  options: () => Load,
): Promise<void> {
  if (!selected(name)) return;
  progress(`${name} c=${connections}`);
  await settle(db);
  const pid = api.child.pid!;
  let peakRss = rssMb(pid);
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMb(pid))), 250);
  const ticker = ticking(`${name} c=${connections}`);
  const cpu = await cpuMeter(db, pid);
  const result = await autocannon({ ...options(), connections, duration: DURATION, headers });
  const { apiCpuMs, dbCpuMs, poolerCpuMs, redisCpuMs } = await cpu.perRequest(
    result.requests.total,
  );
  clearInterval(sampler);
  clearInterval(ticker);
  const expected = name === 'duplicates' ? [409] : [];
  const errors =
    result.errors +
    result.timeouts +
    Object.entries(result.statusCodeStats ?? {})
      .filter(([code]) => Number(code) >= 400 && !expected.includes(Number(code)))
      .reduce((n, [, s]) => n + (s.count ?? 0), 0);
  record({
    name,
    concurrency: connections,
    rps: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors,
    apiRssMb: Math.round(peakRss),
    apiCpuMs,
    dbCpuMs,
    ...(poolerPid ? { poolerCpuMs } : {}),
    ...(redisPid ? { redisCpuMs } : {}),
  });
}

// ---- the bare anchor ---------------------------------------------------------------

interface Bare {
  child: ReturnType<typeof spawn>;
  url: string;
  stop(): Promise<void>;
}

/**
 * bench/bare-api.ts in a process of its own, with the API's Node flags and pool size,
 * on the API's way to the database (`env`: its URL, and the pooler's settings behind
 * PgBouncer); resolves once it answers.
 */
async function startBare(env: Record<string, string>): Promise<Bare> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [...NODE_FLAGS, new URL('./bare-api.js', import.meta.url).pathname],
    {
      env: {
        ...process.env,
        ...env,
        PORT: String(port),
        DB_POOL_SIZE: process.env.DB_POOL_SIZE ?? '10',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error('the bare anchor exited at start');
    const up = await fetch(`${url}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error('the bare anchor did not start');
    await new Promise((resolve) => setTimeout(resolve, 100)); // no event to wait for
  }
  log(`bare anchor: pid ${child.pid} on ${url}`);
  return {
    child,
    url,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

// ---- the peer, side by side (BENCH_PEER) --------------------------------------------

interface PeerSetUp extends Peer {
  accounts: number[];
  replays: Array<{ key: string; body: string }>;
}

/**
 * Each store's peer on the peers' own database, funded accounts (made through the
 * first, shared by both: the same tables), 500 completed keys each to replay, and
 * the same unmeasured warm-up as the API's.
 */
async function startPeers(dir: string, benchUrl: string): Promise<PeerSetUp[]> {
  const databaseUrl = await peerDatabase(benchUrl);
  const peers: PeerSetUp[] = [];
  for (const storage of PEER_STORES) {
    const peer = await startPeer(dir, storage, databaseUrl);
    const accounts = peers[0]?.accounts ?? (await seedPeerAccounts(peer, ACCOUNTS, BALANCE));
    const replays = await peerCompletedKeys(peer, accounts, 500);
    log(`peer (${storage} store): pid ${peer.child.pid} on ${peer.url}`);
    peers.push({ ...peer, accounts, replays });
  }
  for (const peer of peers) {
    if (WARMUP <= 0) break;
    progress(`warm-up of the peer (${peer.storage}) ${WARMUP} s`);
    await autocannon({
      ...peerChargeRequests(peer.url, peer.accounts),
      connections: 8,
      duration: WARMUP,
      headers,
    });
  }
  return peers;
}

function peerChargeRequests(url: string, accounts: number[]): Load {
  return freshCharges(url, () => peerChargeBody(pick(accounts)));
}

/** One peer scenario; with the Redis store, Redis's CPU is measured too. */
async function runPeer(
  name: string,
  connections: number,
  peer: PeerSetUp,
  db: pg.Pool,
  options: () => Load,
): Promise<void> {
  redisPid = peer.storage === 'redis' ? redisServerPid() : undefined;
  try {
    await run(name, connections, peer, db, options);
  } finally {
    redisPid = undefined;
  }
}

/** The local redis-server's pid, from /proc (undefined when it is elsewhere). */
function redisServerPid(): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'redis-server')
        return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/**
 * Every scenario starts on a settled database: the dead rows and dirty pages the
 * previous one left are cleaned up now, not by an autovacuum or a checkpoint that
 * happens to fall in the next scenario's measurement.
 */
async function settle(db: pg.Pool): Promise<void> {
  await db.query('VACUUM ANALYZE');
  await db.query('CHECKPOINT');
}

// ---- the ceiling: one statement per charge, straight to PostgreSQL ---------------

async function ceiling(
  name: string,
  connections: number,
  db: pg.Pool,
  account: () => string,
): Promise<void> {
  if (!selected(name)) return;
  progress(`${name} c=${connections}`);
  await settle(db);
  const ticker = ticking(`${name} c=${connections}`);
  const cpu = await cpuMeter(db);
  const { latencies, errors } = await ceilingLoad(connections, db, account, DURATION);
  const { dbCpuMs } = await cpu.perRequest(latencies.length);
  clearInterval(ticker);
  latencies.sort((a, b) => a - b);
  record({
    name,
    concurrency: connections,
    rps: Math.round(latencies.length / DURATION),
    p50Ms: round(latencies[Math.floor(latencies.length * 0.5)]),
    p99Ms: round(latencies[Math.floor(latencies.length * 0.99)]),
    errors,
    apiRssMb: null,
    apiCpuMs: null,
    dbCpuMs,
  });
}

/**
 * CPU per request of the API process, of PostgreSQL's processes (every backend and
 * background process pg_stat_activity lists; on Citus, the workers' too) and of the
 * PgBouncer, read from /proc: where the time goes. Null where /proc does not have
 * them (another OS, a remote database).
 */
async function cpuMeter(db: pg.Pool, apiPid?: number) {
  const pids = async () => [apiPid, poolerPid, redisPid, ...(await databasePids(db))];
  const before = cpuSeconds(await pids());
  return {
    async perRequest(requests: number) {
      const after = cpuSeconds(await pids());
      const used = (pid: number) => (after.get(pid) ?? 0) - (before.get(pid) ?? 0);
      const msPerRequest = (seconds: number) =>
        requests > 0 && seconds > 0 ? round((seconds * 1000) / requests) : null;
      const dbSeconds = [...after.keys()]
        .filter((pid) => pid !== apiPid && pid !== poolerPid && pid !== redisPid)
        .map(used);
      return {
        apiCpuMs: apiPid ? msPerRequest(used(apiPid)) : null,
        dbCpuMs: msPerRequest(dbSeconds.reduce((a, b) => a + b, 0)),
        poolerCpuMs: poolerPid ? msPerRequest(used(poolerPid)) : null,
        redisCpuMs: redisPid ? msPerRequest(used(redisPid)) : null,
      };
    },
  };
}

/** BENCH_PGBOUNCER: the PgBouncer's process, whose CPU is reported on its own. */
let poolerPid: number | undefined;
/** While a peer with the Redis store runs: redis-server's process, reported on its own. */
let redisPid: number | undefined;

/** PostgreSQL's processes: the server's, or on Citus the coordinator's and every worker's. */
async function databasePids(db: pg.Pool): Promise<number[]> {
  const local = (await db.query<{ pid: number }>('SELECT pid FROM pg_stat_activity')).rows;
  if (!citus) return local.map((r) => r.pid);
  const { rows } = await db.query<{ result: string }>(
    `SELECT result FROM run_command_on_workers('SELECT string_agg(pid::text, '','') FROM pg_stat_activity')`,
  );
  return [...local.map((r) => r.pid), ...rows.flatMap((r) => r.result.split(',').map(Number))];
}

/** CPU seconds (user + system, all threads) each process has used so far, from /proc. */
function cpuSeconds(pids: Array<number | undefined>): Map<number, number> {
  const seconds = new Map<number, number>();
  for (const pid of pids.filter((p): p is number => p !== undefined)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      seconds.set(pid, (Number(fields[11]) + Number(fields[12])) / 100); // USER_HZ is 100
    } catch {
      // gone, or not on this machine
    }
  }
  return seconds;
}

/** `connections` clients, each issuing the one-statement charge back to back for `seconds`. */
async function ceilingLoad(
  connections: number,
  db: pg.Pool,
  account: () => string,
  seconds: number,
): Promise<{ latencies: number[]; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      const client = await db.connect();
      try {
        while (Date.now() < end) {
          const started = process.hrtime.bigint();
          try {
            await client.query(ceilingQuery(account()));
          } catch {
            errors++;
          }
          latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        }
      } finally {
        client.release();
      }
    }),
  );
  return { latencies, errors };
}

// ---- the cost of remembering ------------------------------------------------------

/**
 * Bytes per stored key: the keys the API stored during the run (not the ceiling's,
 * whose stored response is a stub), copied into a table of the same shape with
 * the same indexes, then measured: heap, indexes, TOAST. A freshly written table,
 * so this is the floor; one that has been purged carries dead space until VACUUM
 * reuses it.
 */
async function measureKeyStorage(db: pg.Pool): Promise<KeyStorage> {
  progress('measuring stored keys');
  await db.query('DROP TABLE IF EXISTS key_storage_probe');
  await db.query('CREATE TABLE key_storage_probe (LIKE idempotency_keys INCLUDING ALL)');
  try {
    await db.query(
      `INSERT INTO key_storage_probe SELECT * FROM idempotency_keys WHERE key NOT LIKE 'ceiling-%'`,
    );
    await db.query('VACUUM ANALYZE key_storage_probe');
    const { rows } = await db.query<{
      keys: string;
      table: string;
      indexes: string;
      total: string;
    }>(
      `SELECT (SELECT count(*) FROM key_storage_probe) AS keys,
              pg_table_size('key_storage_probe') AS table,
              pg_indexes_size('key_storage_probe') AS indexes,
              pg_total_relation_size('key_storage_probe') AS total`,
    );
    const keys = Number(rows[0].keys);
    const per = (bytes: string) => (keys > 0 ? Math.round(Number(bytes) / keys) : 0);
    return {
      keys,
      tableBytesPerKey: per(rows[0].table),
      indexBytesPerKey: per(rows[0].indexes),
      totalBytesPerKey: per(rows[0].total),
    };
  } finally {
    await db.query('DROP TABLE key_storage_probe');
  }
}

// ---- set-up -------------------------------------------------------------------

/** Whether the bench database is on a Citus cluster. */
let citus = false;

async function benchDatabase(): Promise<{ url: string; label: string; close(): Promise<void> }> {
  if (process.env.DATABASE_URL) {
    const workers = await citusWorkers(process.env.DATABASE_URL);
    if (!workers) {
      return {
        url: process.env.DATABASE_URL,
        label: 'DATABASE_URL',
        close: () => Promise.resolve(),
      };
    }
    // Citus: a fresh database on every node, as the tests make theirs (tools/citus.ts).
    citus = true;
    await dropCitusDatabase(process.env.DATABASE_URL, 'payments_bench');
    const url = await createCitusDatabase(process.env.DATABASE_URL, 'payments_bench');
    return {
      url,
      label: `Citus coordinator and ${workers.length} workers, fresh payments_bench database`,
      close: () => Promise.resolve(),
    };
  }
  const embedded = await openDatabase({ DATA_DIR: process.env.DATA_DIR ?? '.data' });
  const admin = new pg.Client({ connectionString: embedded.url });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS payments_bench WITH (FORCE)');
  await admin.query('CREATE DATABASE payments_bench');
  await admin.end();
  const url = new URL(embedded.url);
  url.pathname = '/payments_bench';
  return {
    url: url.toString(),
    label: 'embedded PostgreSQL, fresh payments_bench database',
    close: () => embedded.close(),
  };
}

/**
 * BENCH_PGBOUNCER: a PgBouncer in transaction mode between the API and the database,
 * with more server connections than the API's pool, so that it never makes it wait.
 */
async function benchPgBouncer(target: string, statements: 'unnamed' | 'named') {
  const bouncer = await startPgBouncer({
    target,
    poolSize: 20,
    ...(statements === 'named' ? { maxPreparedStatements: 200 } : {}),
  });
  log(
    `PgBouncer ${bouncer.version}, transaction mode, ${statements} statements, on ${bouncer.port}`,
  );
  return bouncer;
}

/**
 * BENCH_WEBHOOK=1: an endpoint of the bench merchant, pointing at a sink here that
 * answers 204 to everything (it verifies nothing: the cost measured is the API's).
 */
async function webhookSink(db: pg.Pool) {
  let received = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  await db.query(
    `INSERT INTO webhook_endpoints (merchant_id, id, url, secrets)
     VALUES ($1, 'we_bench', $2, jsonb_build_array(jsonb_build_object('secret', $3::text, 'expiresAt', null)))
     ON CONFLICT (merchant_id, id) DO UPDATE SET url = EXCLUDED.url, secrets = EXCLUDED.secrets`,
    [MERCHANT, `http://127.0.0.1:${port}/webhooks`, secret],
  );
  log(`webhook endpoint: a sink on port ${port}`);
  return { received: () => received, close: () => server.close() };
}

/** The bench merchant with this run's key, and its funded accounts. */
async function seedBench(db: pg.Pool): Promise<string[]> {
  const { accounts, deposits } = await seed(db, API_KEY);
  log(`seeded ${accounts.length} accounts (${deposits} deposits this run)`);
  return accounts;
}

// ---- output -------------------------------------------------------------------

function record(row: Result): void {
  results.push(row);
  process.stdout.write(
    `\r${row.name.padEnd(15)} c=${String(row.concurrency).padEnd(4)} ${String(row.rps).padStart(6)} req/s  p50 ${row.p50Ms} ms  p99 ${row.p99Ms} ms  errors ${row.errors}\n`,
  );
}

function report(): void {
  const ceilingOf = (name: string, c: number) =>
    results.find(
      (r) =>
        r.name === (name === 'charge-hot' ? 'ceiling-hot' : 'ceiling-spread') &&
        r.concurrency === c,
    )?.rps;
  const bareOf = (name: string, c: number) =>
    results.find((r) => r.name === name.replace(/^charge-/, 'bare-') && r.concurrency === c)?.rps;
  const pooled = results.some((r) => r.poolerCpuMs !== undefined);
  const redis = results.some((r) => r.redisCpuMs !== undefined);
  console.log(
    '\n| scenario | c | req/s | p50 ms | p99 ms | errors | API RSS MB | API CPU ms/req | DB CPU ms/req |' +
      (pooled ? ' PgBouncer CPU ms/req |' : '') +
      (redis ? ' Redis CPU ms/req |' : '') +
      ' × ceiling | × bare |',
  );
  console.log(
    `|---|---|---|---|---|---|---|---|---|${pooled ? '---|' : ''}${redis ? '---|' : ''}---|---|`,
  );
  for (const r of results) {
    const ceilingRps = /^(charge|peer-.*-charge)/.test(r.name)
      ? ceilingOf(r.name, r.concurrency)
      : undefined;
    const ratio = ceilingRps ? (r.rps / ceilingRps).toFixed(2) : '';
    const bareRps = /^(charge-|replay$)/.test(r.name)
      ? bareOf(r.name === 'replay' ? 'bare-replay' : r.name, r.concurrency)
      : undefined;
    const toBare = bareRps ? (r.rps / bareRps).toFixed(2) : '';
    const pooler = pooled ? ` ${r.poolerCpuMs ?? ''} |` : '';
    const store = redis ? ` ${r.redisCpuMs ?? ''} |` : '';
    console.log(
      `| ${r.name} | ${r.concurrency} | ${r.rps} | ${r.p50Ms} | ${r.p99Ms} | ${r.errors} | ${r.apiRssMb ?? ''} | ${r.apiCpuMs ?? ''} | ${r.dbCpuMs ?? ''} |${pooler}${store} ${ratio} | ${toBare} |`,
    );
  }
  if (keyStorage) {
    console.log(
      `\nStored keys: ${keyStorage.keys} of the API's, ${keyStorage.totalBytesPerKey} bytes each ` +
        `(table ${keyStorage.tableBytesPerKey}, indexes ${keyStorage.indexBytesPerKey}), freshly written.`,
    );
  }
  if (webhooks) {
    console.log(
      `\nWebhooks: ${webhooks.events} events queued for the endpoint, ${webhooks.received} ` +
        `deliveries received by the sink, ${webhooks.pending} pending when the run ended.`,
    );
  }
  writeFileSync(
    path.join(projectRoot, 'bench/results.json'),
    JSON.stringify({ scenarios: results, keyStorage, webhooks }, null, 2) + '\n',
  );
  console.log('\nwritten: bench/results.json');
}

function log(message: string): void {
  console.log(`[bench] ${message}`);
}

function progress(label: string): void {
  process.stdout.write(`\r${label.padEnd(40)} running...`);
}

function ticking(label: string): NodeJS.Timeout {
  const started = Date.now();
  return setInterval(() => {
    const s = Math.round((Date.now() - started) / 1000);
    process.stdout.write(`\r${label.padEnd(40)} ${s}/${DURATION} s `);
  }, 1000);
}

function rssMb(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** BENCH_SCENARIOS=charge-spread,ceiling-spread runs only those. */
function selected(name: string): boolean {
  return !SCENARIOS || SCENARIOS.includes(name);
}

function pick<T>(items: T[]): T {
  return items[Math.floor(Math.random() * items.length)];
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
