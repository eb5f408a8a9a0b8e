import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import type { AppConfig } from '../config/config.js';
import { startEmbeddedPostgres } from './embedded-postgres.js';

export interface OpenDatabase {
  url: string;
  /** True when this process started the embedded server (and will stop it). */
  startedEmbedded: boolean;
  close(): Promise<void>;
}

/**
 * Finds the database to use: DATABASE_URL when set; otherwise the embedded
 * PostgreSQL in DATA_DIR, reusing the one a running `npm start` has up (so that
 * `npm run merchant:create` works beside it), or starting it.
 */
export async function openDatabase(
  config: Pick<AppConfig, 'DATABASE_URL' | 'DATA_DIR'>,
  onLog?: (message: string) => void,
): Promise<OpenDatabase> {
  if (config.DATABASE_URL) {
    return { url: config.DATABASE_URL, startedEmbedded: false, close: () => Promise.resolve() };
  }
  const marker = path.resolve(config.DATA_DIR, 'embedded-postgres.json');
  const running = await readRunning(marker);
  if (running && (await answers(running))) {
    return { url: running, startedEmbedded: false, close: () => Promise.resolve() };
  }
  const embedded = await startEmbeddedPostgres({ dataDir: config.DATA_DIR, onLog });
  await writeFile(marker, JSON.stringify({ url: embedded.url, pid: process.pid }));
  return {
    url: embedded.url,
    startedEmbedded: true,
    async close() {
      await rm(marker, { force: true });
      await embedded.stop();
    },
  };
}

async function readRunning(marker: string): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(marker, 'utf8')) as { url?: string }).url;
  } catch {
    return undefined;
  }
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}
