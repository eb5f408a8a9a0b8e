import type { Socket } from 'node:net';
import type { PoolClient } from 'pg';

/**
 * The one place that reaches into node-postgres past its documented API. Held to
 * what it relies on by test/pg-internals.e2e-spec.ts, against a real server: a
 * driver upgrade that moves it fails that test by name instead of quietly costing
 * the service its single writes.
 *
 * node-postgres keeps a connection's socket as `client.connection.stream` (a
 * net.Socket, or a TLS socket over one). TransactionHost corks it so that the
 * statements of one turn of the event loop leave in one write (sendTogether).
 */
export function socketOf(client: PoolClient): Socket | undefined {
  const stream = (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
  return typeof stream?.cork === 'function' ? stream : undefined;
}
