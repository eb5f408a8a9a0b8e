import { afterAll, describe, expect, it } from '@jest/globals';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * The two-command promise: the compiled app (what `npm start` runs), with no
 * DATABASE_URL, starts its own PostgreSQL, migrates, serves the demo key, keeps
 * its data between runs and stops cleanly on SIGTERM.
 */
const root = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);
let dataDir: string;
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  const { DATABASE_URL: _ignored, ...rest } = process.env;
  return { ...rest, NODE_ENV: 'development', LOG_LEVEL: 'info', DATA_DIR: dataDir, ...extra };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function start(
  port: number,
  extra: Record<string, string> = {},
): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: root,
    env: env({ PORT: String(port), ...extra }),
  });
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the app exited: ${output}`);
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { child, output: () => output };
    await new Promise((r) => setTimeout(r, 200)); // polling the health endpoint
  }
  throw new Error(`the app did not become healthy: ${output}`);
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

/** The bash block between the curl-session markers of README.md. */
function readmeCurlSession(): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const block =
    /<!-- curl-session:start -->\s*```bash\n([\s\S]*?)```\s*<!-- curl-session:end -->/.exec(readme);
  if (!block) throw new Error('README.md has no curl session between its markers');
  return block[1];
}

const accounts = (port: number, key: string) =>
  fetch(`http://127.0.0.1:${port}/accounts`, { headers: { Authorization: `Bearer ${key}` } });

describe('npm start', () => {
  it('serves the demo key on an embedded PostgreSQL, runs the README curl session twice with one debit, creates merchants beside it, keeps data across restarts, and exits 0 on SIGTERM', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'payments-start-'));
    await chmod(dataDir, 0o755);
    const port = await freePort();

    const first = await start(port);
    expect((await accounts(port, 'sk_test_demo')).status).toBe(200);
    expect(first.output()).toContain('sk_test_demo');

    const created = await run(
      process.execPath,
      ['dist/merchants/create-merchant.cli.js', '--name', 'Acme'],
      {
        cwd: root,
        env: env({}),
      },
    );
    const apiKey = created.stdout.trim().split('\n').at(-1)!;
    expect(apiKey).toMatch(/^sk_[A-Za-z0-9_-]{43}$/);
    expect((await accounts(port, apiKey)).status).toBe(200);
    expect(first.output()).not.toContain(apiKey);

    // The README's curl session, pasted twice: the second time is all replays.
    const session = readmeCurlSession();
    const shell = () =>
      run('bash', ['-e', '-c', session], {
        env: { ...process.env, API: `http://127.0.0.1:${port}` },
      });
    const once = await shell();
    const twice = await shell();
    expect(once.stdout).toMatch(/HTTP\/1\.1 201 Created/);
    expect(once.stdout).not.toMatch(/Idempotent-Replayed/i);
    expect(twice.stdout).toMatch(/Idempotent-Replayed: true/i);
    expect(once.stdout).toMatch(/"balance":7500/);
    expect(twice.stdout).toMatch(/"balance":7500/);

    first.child.kill('SIGTERM');
    expect(await exited(first.child)).toBe(0);
    expect(existsSync(path.join(dataDir, 'embedded-postgres.json'))).toBe(false);

    const second = await start(port);
    expect((await accounts(port, apiKey)).status).toBe(200);
    second.child.kill('SIGINT');
    expect(await exited(second.child)).toBe(0);
  }, 120_000);

  it('creates no demo merchant in production, on the database of DATABASE_URL', async () => {
    const admin = new pg.Client({ connectionString: process.env.TEST_ADMIN_URL });
    await admin.connect();
    const name = `payments_test_prod_${process.pid}`;
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${process.env.TEST_TEMPLATE_DB}`);
    try {
      const url = new URL(process.env.TEST_ADMIN_URL!);
      url.pathname = `/${name}`;
      const port = await freePort();
      const app = await start(port, { NODE_ENV: 'production', DATABASE_URL: url.toString() });

      expect((await accounts(port, 'sk_test_demo')).status).toBe(401);
      expect(app.output()).not.toContain('sk_test_demo');

      app.child.kill('SIGTERM');
      expect(await exited(app.child)).toBe(0);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });

  it('npm run migration:run migrates an empty database once, then finds nothing to do', async () => {
    const admin = new pg.Client({ connectionString: process.env.TEST_ADMIN_URL });
    await admin.connect();
    const name = `payments_test_migrate_${process.pid}`;
    await admin.query(`CREATE DATABASE ${name}`);
    try {
      const url = new URL(process.env.TEST_ADMIN_URL!);
      url.pathname = `/${name}`;
      const migrate = () =>
        run(process.execPath, ['dist/database/migrate.js'], {
          cwd: root,
          env: env({ DATABASE_URL: url.toString() }),
        });

      expect((await migrate()).stdout).toMatch(/^Applied: InitialSchema\d+, Refunds\d+/);
      expect((await migrate()).stdout).toMatch(/^No pending migrations/);
      const db = new pg.Client({ connectionString: url.toString() });
      await db.connect();
      const { rows } = await db.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
      );
      await db.end();
      expect(rows.map((r: { table_name: string }) => r.table_name)).toEqual([
        'accounts',
        'charges',
        'deposits',
        'idempotency_keys',
        'ledger_entries',
        'merchants',
        'migrations',
        'refunds',
      ]);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });

  it('refuses to start with a bad setting, naming it', async () => {
    const child = spawn(process.execPath, ['dist/main.js'], {
      cwd: root,
      env: env({ PORT: 'eighty' }),
    });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    expect(await exited(child)).toBe(1);
    expect(stderr).toContain('PORT=');
  });
});
