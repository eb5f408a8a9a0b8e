import { createServer, type Server, type Socket, connect } from 'node:net';

export type ProxyMode =
  /** Pass everything through. */
  | 'forward'
  /** Forward the request, then cut the connection as the first byte of the response arrives. */
  | 'drop-response';

/**
 * A loopback TCP proxy for fault injection. In 'drop-response' mode it is the
 * network failure idempotency exists for: the server did the work and answered,
 * but the answer never reached the client.
 */
export class TcpProxy {
  mode: ProxyMode = 'forward';
  /** Responses cut so far. */
  dropped = 0;
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly targetPort: number,
    public port: number,
  ) {}

  static async start(targetPort: number, port = 0): Promise<TcpProxy> {
    const proxy = new TcpProxy(targetPort, port);
    await proxy.listen();
    return proxy;
  }

  /** (Re)opens the listening socket on the same port. */
  async listen(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Stops listening and cuts every open connection: to the app, an outage. */
  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
    this.server = undefined;
  }

  private accept(client: Socket): void {
    const upstream = connect(this.targetPort, '127.0.0.1');
    this.track(client);
    this.track(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => {
      if (this.mode === 'drop-response') {
        this.dropped++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }
}
