import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { buildProcessor, type ProcessorOptions } from '../../processor/app.js';
import { migrate } from '../../processor/schema.js';
import { createTestDatabase, testPool } from './databases.js';

export interface TestProcessor {
  app: FastifyInstance;
  url: string;
  /** The processor's own database, for assertions. */
  db: pg.Pool;
  databaseUrl: string;
  close(): Promise<void>;
}

/** The card processor, in this process, on a database of its own, on a free port. */
export async function startTestProcessor(
  options: Omit<ProcessorOptions, 'db'> = {},
): Promise<TestProcessor> {
  const database = await createTestDatabase({ migrated: false });
  const db = testPool(database.url, 10);
  let app: FastifyInstance;
  try {
    await migrate(db);
    app = await buildProcessor({ db, ...options });
    await app.listen({ port: 0, host: '127.0.0.1' });
  } catch (error) {
    await db.end();
    await database.drop(); // leave nothing behind on a shared server
    throw error;
  }
  const { port } = app.server.address() as { port: number };
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    db,
    databaseUrl: database.url,
    async close() {
      await app.close();
      await db.end();
      await database.drop();
    },
  };
}
