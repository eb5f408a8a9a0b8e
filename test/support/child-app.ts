import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { databaseUrl } from './database-names.js';

/** The compiled app, run as users run it: `node dist/main.js`, in its own process. */
export const projectRoot = path.resolve(import.meta.dirname, '../..');

export interface ChildApp {
  child: ChildProcess;
  port: number;
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited(): Promise<number | null>;
}

const children: ChildProcess[] = [];

/** Kills whatever a test left running (call from afterAll). */
export function killChildren(): void {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The test run's environment without DATABASE_URL (so the child decides), plus `env`. */
export function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const { DATABASE_URL: _ignored, ...rest } = process.env;
  return { ...rest, NODE_ENV: 'development', LOG_LEVEL: 'info', ...env };
}

/** Starts dist/main.js and polls /health until it answers 200. */
export async function startChildApp(env: Record<string, string>, port?: number): Promise<ChildApp> {
  port ??= await freePort();
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: projectRoot,
    env: childEnv({ PORT: String(port), ...env }),
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const app = { child, port, output: () => output, exited: () => exit };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the app exited: ${output}`);
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return app;
    await new Promise((r) => setTimeout(r, 200)); // polling the health endpoint
  }
  throw new Error(`the app did not become healthy: ${output}`);
}

/** A fresh database copied from the migrated template, and a way to drop it. */
export async function scratchDatabase(
  label: string,
  { migrated = true } = {},
): Promise<{ url: string; drop(): Promise<void> }> {
  const adminUrl = process.env.TEST_ADMIN_URL!;
  const name = `payments_test_${label}_${process.pid}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(
      migrated
        ? `CREATE DATABASE ${name} TEMPLATE ${process.env.TEST_TEMPLATE_DB}`
        : `CREATE DATABASE ${name}`,
    );
  } finally {
    await admin.end();
  }
  return {
    url: databaseUrl(adminUrl, name),
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
