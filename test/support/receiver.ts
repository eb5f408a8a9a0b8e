import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { Webhook as SvixWebhook } from 'svix';
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
  /**
   * Every request received, checked with the `svix` package's own verifier too
   * (svix 1.82, the last with a verifier of its own: later ones wrap the
   * standardwebhooks package, which is what signs here): how many it found
   * signed by one of `secrets`, and how many not.
   */
  svix: { verified: number; refused: number };
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
  const svix = { verified: 0, refused: 0 };
  let app: FastifyInstance;
  try {
    await migrateReceiver(db);
    app = await buildReceiver({ db, secrets: () => secrets, faults, ...options });
    app.addHook('preHandler', (req, _reply, done) => {
      const verified = secrets.some((secret) => {
        try {
          new SvixWebhook(secret).verify(req.body as string, {
            'webhook-id': String(req.headers['webhook-id'] ?? ''),
            'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
            'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
          });
          return true;
        } catch {
          return false;
        }
      });
      svix[verified ? 'verified' : 'refused'] += 1;
      done();
    });
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
    svix,
    async close() {
      await app.close();
      await db.end();
      await database.drop();
    },
  };
}
