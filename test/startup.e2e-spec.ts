import { afterAll, describe, expect, it } from '@jest/globals';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { childEnv, killApis, projectRoot as root, startApi } from '../tools/api-process.js';
import { readmeBlock } from './support/readme.js';
import { createTestDatabase } from './support/databases.js';

/**
 * The two-command promise: the compiled app (what `npm start` runs), with no
 * DATABASE_URL, starts its own PostgreSQL, migrates, serves the demo key, keeps
 * its data between runs and stops cleanly on SIGTERM.
 */
const run = promisify(execFile);
let dataDir: string;

afterAll(async () => {
  killApis();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const accounts = (port: number, key: string) =>
  fetch(`http://127.0.0.1:${port}/accounts`, { headers: { Authorization: `Bearer ${key}` } });

describe('npm start', () => {
  it('serves the demo key on an embedded PostgreSQL, runs the README curl session twice with one debit, creates merchants beside it, keeps data across restarts, and exits 0 on SIGTERM', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'payments-start-'));
    await chmod(dataDir, 0o755);

    // PROCESSOR_URL unset, as with npm start: the local card processor starts too.
    const first = await startApi({ env: { DATA_DIR: dataDir, PROCESSOR_URL: '' } });
    const { port } = first;
    expect((await accounts(port, 'sk_test_demo')).status).toBe(200);
    expect(first.output()).toContain('sk_test_demo');

    // The retry lab, served from the build (dist/browser-lab/page), the demo key in its field.
    expect(first.output()).toMatch(/"retryLab":"http:\/\/localhost:\d+\/lab"/);
    const lab = await fetch(`http://127.0.0.1:${port}/lab`);
    expect(lab.status).toBe(200);
    expect(await lab.text()).toContain('value="sk_test_demo"');
    expect((await fetch(`http://127.0.0.1:${port}/lab/lab.js`)).status).toBe(200);

    const created = await run(
      process.execPath,
      ['dist/merchants/create-merchant.cli.js', '--name', 'Acme'],
      { cwd: root, env: childEnv({ DATA_DIR: dataDir }) },
    );
    const apiKey = created.stdout.trim().split('\n').at(-1)!;
    expect(apiKey).toMatch(/^sk_[A-Za-z0-9_-]{43}$/);
    expect((await accounts(port, apiKey)).status).toBe(200);
    expect(first.output()).not.toContain(apiKey);

    // The README's curl session, pasted twice: the second time is all replays.
    const session = readmeBlock('curl-session');
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
    // Step 5, the PUT: no key, and the second run changes nothing.
    const etag = (out: string) => /^etag: (\S+)/im.exec(out)?.[1];
    expect(once.stdout).toContain('"name":"Readme demo, renamed"');
    expect(etag(once.stdout)).toMatch(/^"\d+"$/);
    expect(etag(twice.stdout)).toBe(etag(once.stdout));

    // JSON access logs: one line per request, with what operators need and no secrets.
    const requestLogs = first
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { message?: Record<string, unknown> })
      .map((entry) => entry.message)
      .filter((m): m is Record<string, unknown> => typeof m === 'object' && m?.msg === 'request');
    const replayedCharge = requestLogs.find((m) => m.route === '/charges' && m.replayed === true);
    expect(replayedCharge).toMatchObject({
      requestId: expect.any(String),
      method: 'POST',
      status: 201,
      latencyMs: expect.any(Number),
      merchantId: expect.stringMatching(/^mch_/),
    });
    expect(first.output()).not.toMatch(/Bearer|sk_[A-Za-z0-9_-]{43}/);

    // The top-up session of docs/card-top-ups.md: 202 while the processor's answer is lost, then
    // the retry with the same key credits once.
    const topUpSession = readmeBlock('top-up-session', 'bash', 'docs/card-top-ups.md');
    const topUps = await run('bash', ['-e', '-c', session + topUpSession], {
      env: { ...process.env, API: `http://127.0.0.1:${port}` },
    });
    const statuses = [...topUps.stdout.matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => m[1]);
    expect(statuses.slice(-2)).toEqual(['202', '201']);
    expect(topUps.stdout).toMatch(/"status":"pending"[\s\S]*"status":"succeeded"/);

    // A card top-up, against the processor npm start runs beside the API.
    const processorUrl = /"msg":"local card processor started","url":"([^"]+)"/.exec(
      first.output(),
    )?.[1];
    expect(processorUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const account = (
      (await (
        await fetch(`http://127.0.0.1:${port}/accounts`, {
          method: 'POST',
          headers: { Authorization: 'Bearer sk_test_demo', 'Content-Type': 'application/json' },
          body: JSON.stringify({ name: 'Top-up', currency: 'USD' }),
        })
      ).json()) as { id: string }
    ).id;
    const topUp = await fetch(`http://127.0.0.1:${port}/accounts/${account}/top-ups`, {
      method: 'POST',
      headers: {
        Authorization: 'Bearer sk_test_demo',
        'Content-Type': 'application/json',
        'Idempotency-Key': `startup-${Date.now()}`,
      },
      body: JSON.stringify({ amount: 5_000, currency: 'USD', card: 'tok_visa' }),
    });
    expect(topUp.status).toBe(201);
    expect(((await topUp.json()) as { status: string }).status).toBe('succeeded');

    first.child.kill('SIGTERM');
    expect(await first.exited()).toBe(0);
    // The processor stopped with it.
    await expect(fetch(`${processorUrl}/health`)).rejects.toThrow();
    expect(existsSync(path.join(dataDir, 'embedded-postgres.json'))).toBe(false);

    const second = await startApi({ env: { DATA_DIR: dataDir } });
    expect((await accounts(second.port, apiKey)).status).toBe(200);
    second.child.kill('SIGINT');
    expect(await second.exited()).toBe(0);
  }, 120_000);

  it('in production: refuses to start without SECRETS_KEY, and creates no demo merchant', async () => {
    const db = await createTestDatabase();
    try {
      const production = {
        NODE_ENV: 'production',
        DATABASE_URL: db.url,
        PROCESSOR_API_KEY: 'sk_processor_of_production',
      };
      await expect(startApi({ env: production })).rejects.toThrow(
        /SECRETS_KEY is required in production/,
      );
      const app = await startApi({
        env: { ...production, SECRETS_KEY: Buffer.alloc(32, 9).toString('base64') },
      });

      expect((await accounts(app.port, 'sk_test_demo')).status).toBe(401);
      expect(app.output()).not.toContain('sk_test_demo');
      expect(app.output()).not.toContain('retryLab');

      app.child.kill('SIGTERM');
      expect(await app.exited()).toBe(0);
    } finally {
      await db.drop();
    }
  });

  it('npm run migration:run migrates an empty database once, then finds nothing to do', async () => {
    const db = await createTestDatabase({ migrated: false });
    try {
      const migrate = () =>
        run(process.execPath, ['dist/database/migrate.js'], {
          cwd: root,
          env: childEnv({ DATABASE_URL: db.url }),
        });

      expect((await migrate()).stdout).toMatch(/^Applied: InitialSchema\d+, Refunds\d+/);
      expect((await migrate()).stdout).toMatch(/^No pending migrations/);
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      const { rows } = await client.query(
        `SELECT table_name FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`,
      );
      await client.end();
      expect(rows.map((r: { table_name: string }) => r.table_name)).toEqual([
        'accounts',
        'charges',
        'deposits',
        'events',
        'idempotency_keys',
        'idempotency_recovery_points',
        'ledger_entries',
        'merchants',
        'migrations',
        'refunds',
        'top_ups',
        'webhook_attempts',
        'webhook_deliveries',
        'webhook_endpoints',
      ]);
    } finally {
      await db.drop();
    }
  });

  it('refuses to start with a bad setting, naming it', async () => {
    const child = spawn(process.execPath, ['dist/main.js'], {
      cwd: root,
      env: childEnv({ PORT: 'eighty' }),
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toContain('PORT=');
  });
});
