import { createServer, type Server, type Socket, connect } from 'node:net';

/**
 * A network that loses responses, for the retry lab (npm run demo:retries) and the
 * chaos tests: a TCP proxy that breaks connections the ways networks do, and a
 * client that retries the way a careful payments client should.
 */

export const FAULTS = [
  'none',
  'drop-request',
  'cut-before-response',
  'cut-mid-headers',
  'cut-mid-body',
  'delay',
] as const;
export type Fault = (typeof FAULTS)[number];

/**
 * A TCP proxy that injects one fault per connection, chosen at random:
 * - drop-request: the request never reaches the app;
 * - cut-before-response: the app does the work, the client gets nothing;
 * - cut-mid-headers / cut-mid-body: the client gets part of the response;
 * - delay: the response arrives late, but whole.
 * Clients send `Connection: close`, so every attempt is a connection of its own.
 */
export class FaultyProxy {
  readonly injected: Record<Fault, number> = Object.fromEntries(
    FAULTS.map((f) => [f, 0]),
  ) as Record<Fault, number>;
  faultRate = 0.5;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly targetPort: number,
    private readonly rng: () => number,
  ) {}

  async start(): Promise<this> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    return this;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }

  private pick(): Fault {
    if (this.rng() >= this.faultRate) return 'none';
    return FAULTS[1 + Math.floor(this.rng() * (FAULTS.length - 1))];
  }

  private accept(client: Socket): void {
    const fault = this.pick();
    this.injected[fault]++;
    this.track(client);
    if (fault === 'drop-request') {
      client.once('data', () => client.destroy());
      return;
    }
    const upstream = connect(this.targetPort, '127.0.0.1');
    this.track(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    client.on('close', () => upstream.destroy());

    if (fault === 'none' || fault === 'delay') {
      // Whole response, possibly late: each chunk and the end are delayed alike.
      const delay = fault === 'delay' ? Math.floor(this.rng() * 200) : 0;
      const later = (action: () => void) => (delay ? setTimeout(action, delay) : action());
      upstream.on('data', (chunk: Buffer) => later(() => client.write(chunk)));
      upstream.on('end', () => later(() => client.end()));
      upstream.on('error', () => client.destroy());
      return;
    }
    upstream.on('close', () => client.destroy());
    let received = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const headerEnd = received.indexOf('\r\n\r\n');
      if (fault === 'cut-before-response') return this.cut(client, upstream);
      if (fault === 'cut-mid-headers') {
        const end = headerEnd === -1 ? received.length : headerEnd;
        client.write(received.subarray(0, Math.max(1, Math.floor(end * this.rng()))));
        return this.cut(client, upstream);
      }
      // cut-mid-body: wait for the end of the headers, then send part of the body.
      if (headerEnd === -1) return;
      const bodyStart = headerEnd + 4;
      const bodyBytes = received.length - bodyStart;
      client.write(
        received.subarray(0, bodyStart + Math.floor(Math.max(0, bodyBytes - 1) * this.rng())),
      );
      this.cut(client, upstream);
    });
  }

  private cut(client: Socket, upstream: Socket): void {
    client.destroy();
    upstream.destroy();
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }
}

export interface Stats {
  attempts: number;
  retries: number;
  networkErrors: number;
  inUse: number;
  unavailable: number;
  replays: number;
  statuses: Record<number, number>;
}

export function newStats(): Stats {
  return {
    attempts: 0,
    retries: 0,
    networkErrors: 0,
    inUse: 0,
    unavailable: 0,
    replays: 0,
    statuses: {},
  };
}

export interface Operation {
  key: string;
  method: 'POST';
  path: string;
  body: Record<string, unknown>;
}

export interface Result {
  status: number;
  body: Record<string, unknown>;
  replayed: boolean;
}

/**
 * Sends an operation until it gets an answer that is not a transient failure,
 * reusing its Idempotency-Key on every attempt, as a payments client should:
 * network errors, 409 (in use) and 503 (unavailable) are retried with a short
 * back-off; anything else is the answer.
 */
export async function sendWithRetries(
  baseUrl: () => string,
  apiKey: string,
  op: Operation,
  stats: Stats,
  { deadlineMs = 60_000, timeoutMs = 15_000 } = {},
): Promise<Result> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) stats.retries++;
    if (Date.now() > deadline) {
      throw new Error(`gave up on ${op.key} after ${attempt} attempts: ${JSON.stringify(stats)}`);
    }
    stats.attempts++;
    try {
      const res = await fetch(`${baseUrl()}${op.path}`, {
        method: op.method,
        headers: {
          Authorization: `Bearer ${apiKey}`,
          'Content-Type': 'application/json',
          'Idempotency-Key': op.key,
          Connection: 'close',
        },
        body: JSON.stringify(op.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
      if (res.status === 409 || res.status === 503) {
        if (res.status === 409) stats.inUse++;
        else stats.unavailable++;
        await pause(attempt);
        continue;
      }
      const replayed = res.headers.get('idempotent-replayed') === 'true';
      if (replayed) stats.replays++;
      return { status: res.status, body: JSON.parse(text) as Record<string, unknown>, replayed };
    } catch (error) {
      if ((error as Error).name === 'TimeoutError') {
        throw new Error(`${op.key}: no answer within ${timeoutMs} ms (a hang)`, { cause: error });
      }
      stats.networkErrors++; // connection refused, reset, or a response cut short
      await pause(attempt);
    }
  }
}

function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.min(20 * 2 ** attempt, 500)));
}

/** mulberry32: small, fast and seedable, so a failing run can be replayed with CHAOS_SEED. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `work` over `items` with `concurrency` workers. */
export async function pool<T, R>(
  items: T[],
  concurrency: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i]);
      }
    }),
  );
  return results;
}
