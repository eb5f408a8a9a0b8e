// BENCH_PEER=<dir>: the library a reader would install instead, measured in the same
// sitting: a built copy of ../shared/peers/node-idempotency (NestJS 10, TypeORM and
// @node-idempotency/nestjs, its key store in memory or in Redis). The bench starts it
// here, on a database of its own on the same PostgreSQL server, seeds its accounts
// through its API, and sends it the same load as the API. Nothing of it is in this
// repository: copy it somewhere writable, `npm ci && npm run build`, and name the copy.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../src/common/free-port.js';

export type PeerStorage = 'memory' | 'redis';

export interface Peer {
  storage: PeerStorage;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** A fresh database for the peers, beside the bench's, on the same server; its URL. */
export async function peerDatabase(benchUrl: string): Promise<string> {
  const admin = new pg.Client({ connectionString: benchUrl });
  await admin.connect();
  try {
    await admin.query('DROP DATABASE IF EXISTS payments_peer WITH (FORCE)');
    await admin.query('CREATE DATABASE payments_peer');
  } finally {
    await admin.end();
  }
  return peerDatabaseUrl(benchUrl);
}

/** The URL of the peers' database on the server of `url`. */
export function peerDatabaseUrl(url: string | URL): string {
  const peer = new URL(url);
  peer.pathname = '/payments_peer';
  return peer.toString();
}

/** Starts the peer's compiled app (it creates its tables itself) and waits for /health. */
export async function startPeer(
  dir: string,
  storage: PeerStorage,
  databaseUrl: string,
): Promise<Peer> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(dir, 'dist/main.js')], {
    cwd: dir,
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      IDEM_STORAGE: storage,
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      NODE_ENV: 'production',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the peer (${storage}) exited`);
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the peer (${storage}) did not start`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    storage,
    url,
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function post(url: string, body: object, key?: string): Promise<{ id: number }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`peer ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: number };
}

/** `count` funded accounts, made through the peer's own API; returns their ids. */
export async function seedPeerAccounts(
  peer: Peer,
  count: number,
  balance: number,
): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < count; i++) {
    const { id } = await post(`${peer.url}/accounts`, { currency: 'USD' });
    await post(`${peer.url}/accounts/${id}/deposits`, { amount: balance }, randomUUID());
    ids.push(id);
  }
  return ids;
}

/** The peer's charge body: its account ids are numbers. */
export function peerChargeBody(accountId: number): string {
  return JSON.stringify({ accountId, amount: 1, currency: 'USD' });
}

/** `count` completed charges on the peer, to replay: key and body. */
export async function peerCompletedKeys(
  peer: Peer,
  accounts: number[],
  count: number,
): Promise<Array<{ key: string; body: string }>> {
  const keys: Array<{ key: string; body: string }> = [];
  for (let i = 0; i < count; i++) {
    const key = randomUUID();
    const body = peerChargeBody(accounts[i % accounts.length]);
    await post(`${peer.url}/charges`, JSON.parse(body) as object, key);
    keys.push({ key, body });
  }
  return keys;
}
