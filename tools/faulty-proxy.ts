import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A loopback TCP proxy that breaks connections the ways networks do: the failures
 * idempotency exists for. In front of the API, for the retry lab (npm run
 * demo:retries) and the tests that lose responses; in front of PostgreSQL, for the
 * tests of an outage (stop() it, then listen() again).
 */

export const FAULTS = [
  'none',
  'drop-request',
  'cut-before-response',
  'cut-mid-headers',
  'cut-mid-body',
  'delay',
  'hang',
] as const;
/**
 * What happens to one connection:
 * - none: everything passes, both ways;
 * - drop-request: the request never reaches the server;
 * - cut-before-response: the server does the work and answers, the client gets nothing;
 * - cut-mid-headers / cut-mid-body: the client gets part of the response;
 * - delay: the response arrives late, but whole;
 * - hang: the connection is taken, and then nothing: the request never reaches the
 *   server, and no answer ever comes (the caller's own timeout ends it).
 * 'random' picks among all but 'hang'.
 */
export type Fault = (typeof FAULTS)[number];
const RANDOM = FAULTS.filter((f) => f !== 'none' && f !== 'hang');

export interface ProxyOptions {
  /** One fault for every connection, or 'random': a fault at `faultRate`, picked by `rng`. */
  fault?: Fault | 'random';
  faultRate?: number;
  /** A seedable random source (see random()), so that a run can be replayed. */
  rng?: () => number;
}

export class FaultyProxy {
  /** Faults injected so far, by kind ('none': connections passed whole). */
  readonly injected = Object.fromEntries(FAULTS.map((f) => [f, 0])) as Record<Fault, number>;
  fault: Fault | 'random';
  faultRate: number;
  private readonly rng: () => number;
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly targetPort: number,
    public port: number,
    options: ProxyOptions,
  ) {
    this.fault = options.fault ?? 'none';
    this.faultRate = options.faultRate ?? 0.5;
    this.rng = options.rng ?? Math.random;
  }

  /** A proxy to 127.0.0.1:`targetPort`, listening on a free port. */
  static async start(targetPort: number, options: ProxyOptions = {}): Promise<FaultyProxy> {
    const proxy = new FaultyProxy(targetPort, 0, options);
    await proxy.listen();
    return proxy;
  }

  /** (Re)opens the listening socket, on the same port as before. */
  async listen(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Stops listening and cuts every open connection: to the side behind it, an outage. */
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
    this.server = undefined;
  }

  private pick(): Fault {
    if (this.fault !== 'random') return this.fault;
    if (this.rng() >= this.faultRate) return 'none';
    return RANDOM[Math.floor(this.rng() * RANDOM.length)];
  }

  private accept(client: Socket): void {
    const fault = this.pick();
    this.injected[fault]++;
    this.track(client);
    if (fault === 'drop-request') {
      client.once('data', () => client.destroy());
      return;
    }
    if (fault === 'hang') return;
    const upstream = connect(this.targetPort, '127.0.0.1');
    this.track(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    client.on('close', () => upstream.destroy());

    if (fault === 'none' || fault === 'delay') {
      // Whole responses, possibly late: each chunk and the end are delayed alike.
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
      if (fault === 'cut-before-response') return this.cut(client, upstream);
      received = Buffer.concat([received, chunk]);
      const headerEnd = received.indexOf('\r\n\r\n');
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

/** mulberry32: small, fast and seedable, so a failing run can be replayed from its seed. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
