import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import {
  buildReceiver,
  migrateReceiver,
  type ReceiverFaults,
  type ReceiverOptions,
} from '../../examples/webhook-receiver/receiver.js';
import { createTestDatabase, testPool } from './databases.js';

export interface TestReceiver {
  app: FastifyInstance;
  /** Where to register it: http://127.0.0.1:<port>/webhooks */
  url: string;
  port: number;
  /** The secrets it accepts; set them once the endpoint is created. */
  secrets: string[];
  /** What it does wrong, changed at will. */
  faults: ReceiverFaults;
  db: pg.Pool;
  close(): Promise<void>;
}

/** The reference receiver, in this process, on a database of its own. */
export async function startTestReceiver(
  options: Omit<ReceiverOptions, 'db' | 'secrets' | 'faults'> = {},
): Promise<TestReceiver> {
  const database = await createTestDatabase({ migrated: false });
  const db = testPool(database.url, 10);
  const secrets: string[] = [];
  const faults: ReceiverFaults = {};
  let app: FastifyInstance;
  try {
    await migrateReceiver(db);
    app = await buildReceiver({ db, secrets: () => secrets, faults, ...options });
    await app.listen({ port: 0, host: '127.0.0.1' });
  } catch (error) {
    await db.end();
    await database.drop();
    throw error;
  }
  const { port } = app.server.address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${port}/webhooks`,
    port,
    secrets,
    faults,
    db,
    async close() {
      await app.close();
      await db.end();
      await database.drop();
    },
  };
}
