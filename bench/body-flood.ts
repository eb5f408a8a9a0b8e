// npm run bench:body-flood: how /health answers while clients send bodies built to
// be expensive (100 kB, 11,200 unknown properties each, with a valid key), 8 and
// then 48 at a time, without pause. Not part of npm test (its figures are timings).
//
//   FLOOD_SECONDS=5   how long each flood lasts
//   FLOOD_RATE_LIMIT=0  the API's RATE_LIMIT_PER_SECOND (0: none, so that every body
//                     is read and refused; at the default, 100, most are refused unread)
//
// The compiled API (production mode) on a fresh payments_flood database of the
// embedded PostgreSQL, or of DATABASE_URL. Printed, for idle and each flood: the
// bodies answered and how long each took (p50), and /health's latency (p50, max),
// asked once every 50 ms.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { productionEnv, startApi } from '../tools/api-process.js';
import { scratchDatabase } from './scratch-database.js';
import { migrate } from '../src/database/data-source.js';
import { hashApiKey } from '../src/merchants/api-key.js';

const SECONDS = Number(process.env.FLOOD_SECONDS ?? 5);
const BODY = JSON.stringify(
  Object.fromEntries(Array.from({ length: 11_200 }, (_, i) => [i.toString(36), 1])),
);

async function main(): Promise<void> {
  const database = await scratchDatabase('payments_flood');
  await migrate(database.url);
  const apiKey = `sk_flood_${randomUUID().replaceAll('-', '')}`;
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  await db.query(
    `INSERT INTO merchants (id, name, api_key_hash) VALUES ('mch_flood', 'Flood', $1)`,
    [hashApiKey(apiKey)],
  );
  await db.end();
  const api = await startApi({
    env: {
      DATABASE_URL: database.url,
      ...productionEnv(),
      RATE_LIMIT_PER_SECOND: process.env.FLOOD_RATE_LIMIT ?? '0',
    },
    logs: 'errors',
  });
  const rows = [];
  try {
    for (const clients of [0, 8, 48]) rows.push(await flood(api.url, apiKey, clients));
  } finally {
    api.child.kill('SIGTERM');
    await api.exited();
    await database.close();
  }
  console.log(JSON.stringify({ bodyBytes: BODY.length, seconds: SECONDS, rows }, null, 2));
}

async function flood(base: string, apiKey: string, clients: number) {
  const end = performance.now() + SECONDS * 1_000;
  const bodies: number[] = [];
  const statuses = new Map<number, number>();
  const senders = Array.from({ length: clients }, async () => {
    while (performance.now() < end) {
      const started = performance.now();
      const res = await fetch(`${base}/charges`, {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${apiKey}`,
          'Content-Type': 'application/json',
          'Idempotency-Key': randomUUID(),
        },
        body: BODY,
      });
      await res.arrayBuffer();
      bodies.push(performance.now() - started);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  });
  const health: number[] = [];
  while (performance.now() < end) {
    const started = performance.now();
    await (await fetch(`${base}/health`)).arrayBuffer();
    health.push(performance.now() - started);
    await new Promise((r) => setTimeout(r, 50));
  }
  await Promise.all(senders);
  return {
    clients,
    bodiesAnswered: bodies.length,
    statuses: Object.fromEntries(statuses),
    bodyMsP50: round(quantile(bodies, 0.5)),
    healthMsP50: round(quantile(health, 0.5)),
    healthMsMax: round(Math.max(...health)),
  };
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const round = (ms: number) => Math.round(ms * 10) / 10;

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
