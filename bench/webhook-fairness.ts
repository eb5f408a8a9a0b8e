// npm run bench:webhook-fairness: how long one merchant's webhooks wait while another
// merchant's endpoints hang. Not part of npm test (its figures are timings).
//
//   FAIRNESS_SECONDS=20   how long the load runs
//   FAIRNESS_HANGING=60   merchant B's endpoints, every one accepts and never answers
//   WEBHOOK_TIMEOUT_MS=…  passed to the API (its default otherwise)
//
// The compiled API (production mode, loopback allowed for the bench's own endpoints)
// on a fresh payments_fairness database of the embedded PostgreSQL, or of DATABASE_URL.
// Merchant B makes an event every 2 s, each a delivery to every one of its hanging
// endpoints; merchant A makes one every 500 ms, to one endpoint that answers 204 at
// once. Printed: how long after A's request its event reached A's endpoint (p50, p99,
// max), how many of A's events arrived within the run and a drain of 30 s, and the
// most sockets B's endpoints held open at once.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import pg from 'pg';
import { productionEnv, startApi } from '../tools/api-process.js';
import { scratchDatabase } from './scratch-database.js';
import { migrate } from '../src/database/data-source.js';
import { hashApiKey } from '../src/merchants/api-key.js';

const SECONDS = Number(process.env.FAIRNESS_SECONDS ?? 20);
const HANGING = Number(process.env.FAIRNESS_HANGING ?? 60);
const DRAIN_MS = 30_000;

async function main(): Promise<void> {
  const database = await scratchDatabase('payments_fairness');
  await migrate(database.url);
  const keyA = `sk_fair_${randomUUID().replaceAll('-', '')}`;
  const keyB = `sk_fair_${randomUUID().replaceAll('-', '')}`;
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  await db.query(
    `INSERT INTO merchants (id, name, api_key_hash) VALUES ('mch_fair_a', 'A', $1), ('mch_fair_b', 'B', $2)`,
    [hashApiKey(keyA), hashApiKey(keyB)],
  );
  await db.end();

  const hanging = await listen((_req, _res) => {
    // never answers
  });
  const arrived = new Map<string, number>();
  const healthy = await listen((req, res) => {
    arrived.set(String(req.headers['webhook-id']), performance.now());
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });

  const api = await startApi({
    env: {
      DATABASE_URL: database.url,
      ...productionEnv(),
      WEBHOOK_ALLOW_LOOPBACK: 'true', // the bench's endpoints: plain http on loopback
      WEBHOOK_REQUIRE_HTTPS: 'false',
      WEBHOOK_MAX_ENDPOINTS: String(Math.max(HANGING, 1)),
      ...(process.env.WEBHOOK_TIMEOUT_MS
        ? { WEBHOOK_TIMEOUT_MS: process.env.WEBHOOK_TIMEOUT_MS }
        : {}),
    },
    logs: 'errors',
  });
  const call = async (key: string, method: string, path: string, body: unknown) => {
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${key}`,
        'Content-Type': 'application/json',
        'Idempotency-Key': randomUUID(),
      },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<{ id: string }>;
  };
  try {
    for (let i = 0; i < HANGING; i++) {
      await call(keyB, 'POST', '/webhook-endpoints', { url: `${hanging.url}/${i}` });
    }
    await call(keyA, 'POST', '/webhook-endpoints', { url: healthy.url });

    const sent: Array<{ accountId: string; at: number }> = [];
    const end = performance.now() + SECONDS * 1_000;
    let nextB = 0;
    while (performance.now() < end) {
      const now = performance.now();
      if (now >= nextB) {
        await call(keyB, 'POST', '/accounts', { name: 'B', currency: 'USD' });
        nextB = now + 2_000;
      }
      const at = performance.now();
      const account = await call(keyA, 'POST', '/accounts', { name: 'A', currency: 'USD' });
      sent.push({ accountId: account.id, at });
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    const { rows } = await db.query<{ id: string; accountId: string }>(
      `SELECT id, data->'object'->>'id' AS "accountId" FROM events WHERE merchant_id = 'mch_fair_a'`,
    );
    await db.end();
    const eventOf = new Map(rows.map((r) => [r.accountId, r.id]));
    const events = sent.map((s) => ({ ...s, eventId: eventOf.get(s.accountId)! }));
    const drainEnd = performance.now() + DRAIN_MS;
    while (events.some((e) => !arrived.has(e.eventId)) && performance.now() < drainEnd) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const delays = events
      .filter((e) => arrived.has(e.eventId))
      .map((e) => arrived.get(e.eventId)! - e.at)
      .sort((x, y) => x - y);
    const at = (q: number) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))];
    console.log(
      JSON.stringify(
        {
          seconds: SECONDS,
          hangingEndpoints: HANGING,
          aEvents: events.length,
          aDelivered: delays.length,
          aDelayMs: {
            p50: Math.round(at(0.5)),
            p99: Math.round(at(0.99)),
            max: Math.round(delays.at(-1) ?? NaN),
          },
          bMaxOpenSockets: hanging.maxOpen,
        },
        null,
        2,
      ),
    );
  } finally {
    api.child.kill('SIGTERM');
    await api.exited();
    await hanging.close();
    await healthy.close();
    await database.close();
  }
}

interface Listening {
  url: string;
  maxOpen: number;
  close(): Promise<void>;
}

/** A loopback HTTP server that counts the requests open at once. */
async function listen(handler: Parameters<typeof createServer>[1]): Promise<Listening> {
  const sockets = new Set<Socket>();
  let open = 0;
  const server: Server = createServer((req, res) => {
    open += 1;
    listening.maxOpen = Math.max(listening.maxOpen, open);
    res.on('close', () => (open -= 1));
    handler!(req, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const listening: Listening = {
    url: `http://127.0.0.1:${port}/hooks`,
    maxOpen: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return listening;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
