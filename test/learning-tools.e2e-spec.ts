import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import newman from 'newman';
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { childEnv, projectRoot } from '../tools/api-process.js';
import { freePort } from '../src/common/free-port.js';
import { createTestDatabase } from './support/databases.js';
import { startTestProcessor, type TestProcessor } from './support/processor.js';
import { useTestApp } from './support/test-app.js';

/**
 * What learners run: scripts/demo.sh, the Postman collection (with newman), the
 * retry lab and the reference webhook receiver (npm run receiver).
 */
let processor: TestProcessor;
beforeAll(async () => {
  processor = await startTestProcessor(); // for the card top-ups
});
const t = useTestApp({
  env: () => ({
    PROCESSOR_URL: processor.url,
    WEBHOOK_DISPATCH_INTERVAL_MS: '100',
    WEBHOOK_RETRY_SECONDS: '0',
  }),
});
afterAll(() => processor.close());

function runCollection(): Promise<newman.NewmanRunSummary> {
  return new Promise((resolve, reject) =>
    newman.run(
      {
        collection: path.join(projectRoot, 'postman/idempotent-payments.postman_collection.json'),
        environment: path.join(projectRoot, 'postman/local.postman_environment.json'),
        envVar: [
          { key: 'baseUrl', value: t.baseUrl },
          { key: 'apiKey', value: t.api.apiKey },
        ],
        reporters: [],
      },
      (error, summary) => (error ? reject(error) : resolve(summary)),
    ),
  );
}

describe('scripts/demo.sh', () => {
  it('tells the retry story (one debit, a replay, a 422, a refund, balance 8500), then PUT twice, a stale If-Match and DELETE', async () => {
    const { stdout } = await promisify(execFile)(
      'bash',
      [path.join(projectRoot, 'scripts/demo.sh')],
      {
        env: { ...process.env, API: t.baseUrl, API_KEY: t.api.apiKey },
      },
    );
    expect(stdout.match(/HTTP\/1\.1 201 Created/g)).toHaveLength(6);
    expect(stdout).toMatch(/idempotent-replayed: true/i);
    expect(stdout).toMatch(/HTTP\/1\.1 422/);
    expect(stdout).toContain('"balance":8500');
    // The GET's ETag, then the PUT twice: a new one, then the same again; the stale
    // If-Match: 412; closing: 409, then 204 twice.
    const [read, put, again] = [...stdout.matchAll(/^ {2}< etag: (\S+)/gim)].map((m) => m[1]);
    expect(put).not.toBe(read);
    expect(again).toBe(put);
    expect(stdout).toMatch(/HTTP\/1\.1 412/);
    expect(stdout).toMatch(/HTTP\/1\.1 409[\s\S]*account-not-empty/);
    expect(stdout.match(/HTTP\/1\.1 204/g)).toHaveLength(2);
  });
});

describe('Postman collection', () => {
  it('passes every test of every request, twice in a row (each run with its own keys)', async () => {
    for (const run of [await runCollection(), await runCollection()]) {
      const failures = run.run.failures.map((f) => `${f.source?.name}: ${f.error.message}`);
      expect(failures).toEqual([]);
      expect(run.run.stats.requests.total).toBe(27);
      expect(run.run.stats.assertions.total).toBe(50);
      expect(run.run.stats.assertions.failed).toBe(0);
    }
  }, 60_000);
});

describe('npm run demo:retries (the retry lab)', () => {
  async function lab(env: Record<string, string>): Promise<string> {
    const db = await createTestDatabase();
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ['build/tools/retry-lab.js'], {
        cwd: projectRoot,
        env: childEnv({ DATABASE_URL: db.url, LAB_CHARGES: '60', LAB_RENAMES: '10', ...env }),
      });
      return stdout;
    } finally {
      await db.drop();
    }
  }

  it('with one key per operation: every charge executed exactly once through a lossy network, and the keyless PUTs end right', async () => {
    const stdout = await lab({ LAB_FAULT_RATE: '0.5' });

    expect(stdout).toMatch(/charges in the database\s+60\n/);
    expect(stdout).toMatch(/double charges\s+0\n/);
    expect(stdout).toMatch(/ledger audit\s+sound/);
    expect(stdout).toMatch(
      /renames \(PUT, no key\)\s+10 in \d+ attempts; final name right, version \+10/,
    );
    expect(stdout).toContain('Exactly once: every charge happened once');
    // The events too, through a network as bad: 60 charges, 10 renames, the account
    // and its deposit, each applied once by the receiver, its duplicates ignored.
    expect(stdout).toMatch(
      /webhook events\s+72 sent in \d+ tries, 72 applied, \d+ duplicates ignored\n/,
    );
    expect(stdout).toMatch(
      /the receiver's books\s+debited \d+, credited 1000000: match the ledger/,
    );
    const broken = Number(/connections broken\s+(\d+)/.exec(stdout)?.[1]);
    expect(broken).toBeGreaterThan(0);
  }, 60_000);

  it('with two instances, every retry sent to the other: still exactly once, the replays from the shared database', async () => {
    const stdout = await lab({ LAB_FAULT_RATE: '0.5', LAB_INSTANCES: '2' });

    expect(stdout).toMatch(/instances\s+2, one database; every retry sent to another instance\n/);
    expect(stdout).toMatch(/charges in the database\s+60\n/);
    expect(stdout).toMatch(/double charges\s+0\n/);
    expect(stdout).toMatch(/ledger audit\s+sound/);
    // Retries after a response lost on its way back, answered by the other instance.
    expect(Number(/replays across instances\s+(\d+)/.exec(stdout)?.[1])).toBeGreaterThan(0);
    expect(stdout).toContain('Exactly once: every charge happened once');
  }, 60_000);

  it('with a new key for every attempt: counts the double charges, and the overcharge', async () => {
    const stdout = await lab({ LAB_FAULT_RATE: '0.5', LAB_KEYS: 'per-attempt' });

    const executed = Number(/charges in the database\s+(\d+)/.exec(stdout)?.[1]);
    const doubles = Number(/double charges\s+(\d+)/.exec(stdout)?.[1]);
    expect(doubles).toBeGreaterThan(0);
    expect(executed).toBe(60 + doubles);
    expect(stdout).toMatch(/balance\s+\d+ \(expected \d+: overcharged by \d+\)/);
    expect(stdout).toMatch(/ledger audit\s+sound/); // the books are right: the client asked twice
    expect(stdout).toContain('The key must name the operation, not the attempt.');
  }, 60_000);
});

describe('npm run receiver (the reference webhook receiver)', () => {
  it('registers itself, applies each event once though it loses half its answers, and deletes its endpoint when stopped', async () => {
    const db = await createTestDatabase({ migrated: false });
    const port = await freePort();
    const child = spawn(process.execPath, ['build/examples/webhook-receiver/main.js'], {
      cwd: projectRoot,
      env: childEnv({
        API_URL: t.baseUrl,
        API_KEY: t.api.apiKey,
        DATABASE_URL: db.url,
        PORT: String(port),
        RECEIVER_DROP_RATE: '0.5',
      }),
    });
    const lines: Array<{ msg: string; type?: string; webhookId?: string }> = [];
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line)));
    const seen = (check: () => boolean) =>
      new Promise<void>((resolve) => {
        const poll = () => (check() ? resolve() : setTimeout(poll, 50));
        poll();
      });
    const applied = (type: string) => lines.filter((l) => l.msg === 'applied' && l.type === type);
    try {
      await seen(() => lines.some((l) => l.msg === 'webhook receiver listening'));
      expect((await t.api.get('/webhook-endpoints')).body.data).toEqual([
        expect.objectContaining({ url: `http://127.0.0.1:${port}/webhooks` }),
      ]);

      const account = await t.api.createAccount();
      await t.api.deposit(account, 1_000);
      await t.api.charge(account, 300, randomUUID());
      await seen(() =>
        ['account.created', 'deposit.succeeded', 'charge.succeeded'].every(
          (type) => applied(type).length > 0,
        ),
      );

      for (const type of ['account.created', 'deposit.succeeded', 'charge.succeeded'])
        expect(applied(type)).toHaveLength(1);
      // A duplicate is one the receiver had applied: its answer was the one lost.
      const appliedIds = new Set(lines.filter((l) => l.msg === 'applied').map((l) => l.webhookId));
      for (const duplicate of lines.filter((l) => l.msg === 'duplicate ignored'))
        expect(appliedIds).toContain(duplicate.webhookId);
    } finally {
      child.kill('SIGINT');
      await once(child, 'exit');
      await db.drop();
    }
    expect((await t.api.get('/webhook-endpoints')).body.data).toEqual([]);
  }, 60_000);
});
