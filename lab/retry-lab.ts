// npm run demo:retries: the retry lab. Starts the API, puts a network that loses
// responses in front of it, and lets retrying clients charge an account through
// it, showing live what happens, then whether every charge happened exactly once.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { auditLedger } from '../src/audit/ledger-audit.js';
import { loadConfig } from '../src/config/config.js';
import { openDatabase } from '../src/database/open-database.js';
import { startApi } from './api-process.js';
import { FAULTS, FaultyProxy, random } from './faulty-proxy.js';
import { newStats, type Operation, sendAll } from './retrying-client.js';

const CHARGES = Number(process.env.LAB_CHARGES ?? 200);
const CLIENTS = Number(process.env.LAB_CLIENTS ?? 8);
const FAULT_RATE = Number(process.env.LAB_FAULT_RATE ?? 0.4);
const API_KEY = 'sk_test_demo';
const tty = process.stdout.isTTY;
const bold = (s: string) => (tty ? `\x1b[1m${s}\x1b[0m` : s);

async function main(): Promise<number> {
  const config = loadConfig();
  console.log(bold('Retry lab: exactly-once charges through a network that loses responses'));
  console.log(
    `${CHARGES} charges, ${CLIENTS} clients at a time, ${Math.round(FAULT_RATE * 100)}% of connections broken.\n`,
  );

  // The database: DATABASE_URL, or the embedded PostgreSQL in DATA_DIR.
  const database = await openDatabase(config);
  const api = await startApi({
    env: { DATABASE_URL: database.url, LOG_LEVEL: 'error', NODE_ENV: 'development' },
    logs: 'errors',
  });
  const proxy = await FaultyProxy.start(api.port, {
    fault: 'random',
    faultRate: FAULT_RATE,
    rng: random(Date.now() % 1_000_000),
  });
  const direct = api.url;
  const viaProxy = () => `http://127.0.0.1:${proxy.port}`;
  try {
    const account = await post(direct, '/accounts', { name: 'Retry lab', currency: 'USD' });
    const START = 1_000_000;
    await post(direct, `/accounts/${account}/deposits`, { amount: START, currency: 'USD' });
    const charges: Operation[] = Array.from({ length: CHARGES }, (_, i) => ({
      key: `lab-${randomUUID()}`,
      method: 'POST',
      path: '/charges',
      body: { accountId: account, amount: 100 + (i % 7) * 25, currency: 'USD' },
    }));
    const expected = START - charges.reduce((sum, op) => sum + (op.body.amount as number), 0);

    const stats = newStats();
    let done = 0;
    const progress = setInterval(() => draw(done, stats, proxy), 100);
    const started = Date.now();
    await sendAll(charges, {
      clients: CLIENTS,
      baseUrl: viaProxy,
      apiKey: API_KEY,
      stats,
      onAnswer: () => done++,
    });
    clearInterval(progress);
    draw(done, stats, proxy);
    const seconds = (Date.now() - started) / 1000;

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    const balance = Number(
      (
        await client.query<{ balance: string }>('SELECT balance FROM accounts WHERE id = $1', [
          account,
        ])
      ).rows[0].balance,
    );
    const executed = (
      await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM charges WHERE account_id = $1',
        [account],
      )
    ).rows[0].n;
    const violations = await auditLedger(client);
    await client.end();

    const ok = balance === expected && executed === CHARGES && violations.length === 0;
    const lost = FAULTS.filter((f) => f !== 'none' && f !== 'delay').reduce(
      (n, f) => n + proxy.injected[f],
      0,
    );
    console.log(`\n\n${bold('Summary')}`);
    console.log(`  charges intended          ${CHARGES}`);
    console.log(
      `  HTTP attempts             ${stats.attempts} (${stats.retries} retries) in ${seconds.toFixed(1)} s`,
    );
    console.log(
      `  connections broken        ${lost}: ${FAULTS.filter((f) => f !== 'none')
        .map((f) => `${f} ${proxy.injected[f]}`)
        .join(', ')}`,
    );
    console.log(
      `  network errors seen       ${stats.networkErrors} (the client never learnt the outcome)`,
    );
    console.log(
      `  replayed responses        ${stats.replays} (the work was done; the retry got the stored answer)`,
    );
    console.log(`  409 in use                ${stats.inUse} (a retry overtook its original)`);
    console.log(`  charges in the database   ${executed}`);
    console.log(`  balance                   ${balance} (expected ${expected})`);
    console.log(
      `  ledger audit              ${violations.length === 0 ? 'sound' : `${violations.length} violation(s)`}`,
    );
    console.log(
      `\n${bold(ok ? 'Exactly once: every charge happened once, whatever the network did.' : 'NOT exactly once: see above.')}`,
    );
    return ok ? 0 : 1;
  } finally {
    await proxy.stop();
    api.child.kill('SIGTERM');
    await api.exited();
    await database.close();
  }
}

function draw(done: number, stats: ReturnType<typeof newStats>, proxy: FaultyProxy): void {
  const width = 30;
  const filled = Math.round((done / CHARGES) * width);
  const broken = Object.entries(proxy.injected)
    .filter(([f]) => f !== 'none')
    .reduce((n, [, v]) => n + v, 0);
  const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${CHARGES} charges · ${stats.attempts} requests · ${broken} broken · ${stats.retries} retries · ${stats.replays} replays · ${stats.inUse} × 409`;
  process.stdout.write(tty ? `\r${line}` : done === CHARGES || done % 50 === 0 ? `${line}\n` : '');
}

async function post(base: string, path: string, body: object): Promise<string> {
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
  return ((await res.json()) as { id: string }).id;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
