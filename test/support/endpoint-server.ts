import { createServer, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

/** What a fake endpoint answers: a status with its headers, or nothing at all (it hangs). */
export type Behaviour = { status: number; headers?: Record<string, string> } | 'hang';

export interface FakeEndpoint {
  /** http://127.0.0.1:<port>/hooks: loopback only, as every test's traffic. */
  url: string;
  port: number;
  /** Changed at will: read on every request. */
  behaviour: Behaviour;
  /** Requests received, and the most that were open at once. */
  received: number;
  open: number;
  maxOpen: number;
  /** The paths requested, in order. */
  paths: string[];
  /** Resolves once `n` requests are open at once. */
  untilOpen(n: number): Promise<void>;
  close(): Promise<void>;
}

/** A webhook endpoint that answers as told, and counts what reaches it. */
export async function startFakeEndpoint(behaviour: Behaviour): Promise<FakeEndpoint> {
  const sockets = new Set<Socket>();
  const waiting: Array<{ n: number; resolve: () => void }> = [];
  const endpoint = {
    behaviour,
    received: 0,
    open: 0,
    maxOpen: 0,
    paths: [] as string[],
  } as FakeEndpoint;
  const server = createServer((req: IncomingMessage, res) => {
    endpoint.received += 1;
    endpoint.open += 1;
    endpoint.maxOpen = Math.max(endpoint.maxOpen, endpoint.open);
    for (const w of waiting.filter((w) => endpoint.open >= w.n)) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
    endpoint.paths.push(req.url ?? '');
    // the response's close: the request's fires once its body is read
    res.on('close', () => (endpoint.open -= 1));
    req.resume();
    const now = endpoint.behaviour;
    if (now === 'hang') return; // until the sender gives up, or the server closes
    req.on('end', () => res.writeHead(now.status, now.headers).end());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return Object.assign(endpoint, {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    untilOpen: (n: number) =>
      endpoint.open >= n
        ? Promise.resolve()
        : new Promise<void>((resolve) => waiting.push({ n, resolve })),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  });
}
