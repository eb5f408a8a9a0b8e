import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { ServerResponse } from 'node:http';

/**
 * Counts requests whose handling has not finished, for graceful shutdown.
 *
 * The HTTP server's close() waits for connections, not for handlers: when a client
 * hangs up mid-request, its socket closes at once while the handler carries on (it
 * may be queued for a database connection, or inside its transaction). Closing the
 * pool then would fail that work. A request counts as finished when its response is
 * ended, which happens for abandoned requests too: the handler's answer, or the
 * error filter's, still goes through res.end().
 */
export class InFlightRequests {
  private count = 0;
  private waiters: Array<() => void> = [];

  /** A Fastify onRequest hook. */
  readonly hook = (
    _req: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void => {
    this.track(reply.raw);
    done();
  };

  /** Counts this response until it is ended. */
  track(res: ServerResponse): void {
    this.count += 1;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    let counted = true;
    res.end = ((...args: unknown[]) => {
      if (counted) {
        counted = false;
        this.finished();
      }
      return end(...args);
    }) as ServerResponse['end'];
  }

  get size(): number {
    return this.count;
  }

  /** Resolves once no request is being handled. */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private finished(): void {
    this.count -= 1;
    if (this.count > 0) return;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}
