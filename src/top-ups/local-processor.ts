import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { freePort } from '../common/free-port.js';

export interface LocalProcessor {
  url: string;
  stop(): Promise<void>;
}

/**
 * `npm start` without PROCESSOR_URL: the stand-in card processor of processor/, as
 * a process of its own, on a database of its own (`<database>_processor`, on the
 * same PostgreSQL server, created when missing), so that card top-ups can be tried
 * locally. It is a separate service: the API reaches it over HTTP only, as it would
 * reach a real provider, whose URL PROCESSOR_URL names in production. Its URL is
 * written to DATA_DIR/local-processor.json while it runs, for npm run audit.
 */
export async function startLocalProcessor(
  databaseUrl: string,
  dataDir: string,
  apiKey: string,
): Promise<LocalProcessor> {
  const url = new URL(databaseUrl);
  const name = `${url.pathname.slice(1)}_processor`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  url.pathname = `/${name}`;

  const port = await freePort();
  const main = fileURLToPath(new URL('../processor/main.js', import.meta.url));
  const child: ChildProcess = spawn(process.execPath, [main], {
    env: {
      ...process.env,
      DATABASE_URL: url.toString(),
      PORT: String(port),
      HOST: '127.0.0.1',
      PROCESSOR_API_KEYS: apiKey, // the API's PROCESSOR_API_KEY: its only caller
      PROCESSOR_EXIT_WITH_PARENT: '1',
    },
    // Its stdin is a pipe from us: when this process dies, it sees the pipe close.
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error('the card processor exited at start');
    const up = await fetch(`${base}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) {
      const marker = markerIn(dataDir);
      await mkdir(path.dirname(marker), { recursive: true });
      await writeFile(marker, JSON.stringify({ url: base, pid: process.pid }));
      return {
        url: base,
        async stop() {
          await rm(marker, { force: true });
          if (child.exitCode === null) child.kill('SIGTERM');
          await exited;
        },
      };
    }
    await new Promise((r) => setTimeout(r, 100)); // polling /health: there is no event to wait for
  }
  child.kill('SIGKILL');
  throw new Error('the card processor did not answer /health within 30 s');
}

/** The URL of the local processor a running npm start has up in DATA_DIR, if any. */
export async function findLocalProcessor(dataDir: string): Promise<string | undefined> {
  try {
    const { url } = JSON.parse(await readFile(markerIn(dataDir), 'utf8')) as { url?: string };
    return url;
  } catch {
    return undefined;
  }
}

function markerIn(dataDir: string): string {
  return path.resolve(dataDir, 'local-processor.json');
}
