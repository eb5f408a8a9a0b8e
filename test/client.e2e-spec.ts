import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import {
  type AttemptEvent,
  createPaymentsClient,
  PaymentsApiError,
  type PaymentsClient,
} from '../client/src/index.js';
import { FaultyProxy, random } from '../tools/faulty-proxy.js';
import { pool } from '../tools/retrying-client.js';
import { ledgerViolations } from './support/invariants.js';
import { readmeBlock } from './support/readme.js';
import { useTestApp } from './support/test-app.js';

/**
 * The client in client/ against the real API, through the fault-injecting proxy:
 * whatever the network does to an attempt, each operation executes once.
 */
const t = useTestApp();
let proxy: FaultyProxy;
let events: AttemptEvent[];
const rng = random(Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000));

beforeAll(async () => {
  proxy = await FaultyProxy.start(Number(new URL(t.baseUrl).port), { rng });
});
afterAll(() => proxy.stop());
beforeEach(() => {
  proxy.fault = 'none';
  events = [];
});

/** A client that goes through the proxy, on a fresh connection per attempt (as after a fault). */
function client(options: Partial<Parameters<typeof createPaymentsClient>[0]> = {}): PaymentsClient {
  return createPaymentsClient({
    baseUrl: `http://127.0.0.1:${proxy.port}`,
    apiKey: t.api.apiKey,
    headers: { Connection: 'close' },
    retry: { maxAttempts: 30, baseDelayMs: 5, maxDelayMs: 100 },
    timeoutMs: 2_000,
    onAttempt: (e) => events.push(e),
    ...options,
  });
}

async function balance(account: string): Promise<number> {
  const { rows } = await t.db.query<{ balance: string }>(
    'SELECT balance FROM accounts WHERE id = $1',
    [account],
  );
  return Number(rows[0].balance);
}

async function chargesOf(account: string): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM charges WHERE account_id = $1',
    [account],
  );
  return rows[0].n;
}

describe('the client through a network that loses responses', () => {
  it('retries a lost response with the same key and gets the replay: charged once', async () => {
    const account = await t.api.fundedAccount(10_000);
    proxy.fault = 'cut-before-response'; // the server charges, the answer never arrives
    const payments = client({
      onAttempt: (e) => {
        events.push(e);
        proxy.fault = 'none'; // the network heals after the first attempt
      },
    });

    const result = await payments.charges.create({
      accountId: account,
      amount: 2_500,
      currency: 'USD',
    });

    expect(events.map((e) => e.failure ?? e.status)).toEqual(['network', 201]);
    expect(events[0].idempotencyKey).toBe(events[1].idempotencyKey);
    expect(result).toMatchObject({ status: 201, replayed: true, attempts: 2 });
    expect(result.data).toMatchObject({ amount: 2_500, status: 'succeeded' });
    expect(await balance(account)).toBe(7_500);
    expect(await chargesOf(account)).toBe(1);
  });

  it('retries an attempt that hangs, after its timeout', async () => {
    const account = await t.api.fundedAccount(10_000);
    proxy.fault = 'hang';
    const payments = client({
      timeoutMs: 500,
      onAttempt: (e) => {
        events.push(e);
        proxy.fault = 'none';
      },
    });
    const result = await payments.charges.create({
      accountId: account,
      amount: 100,
      currency: 'USD',
    });
    expect(events[0]).toMatchObject({ failure: 'timeout', retry: { reason: 'timeout' } });
    expect(result).toMatchObject({ status: 201, replayed: false, attempts: 2 });
    expect(await balance(account)).toBe(9_900);
  });

  it('executes every charge, deposit and refund once when a third of the connections break', async () => {
    proxy.fault = 'random';
    proxy.faultRate = 0.35;
    const START = 1_000_000;
    const accounts = [await t.api.fundedAccount(START), await t.api.fundedAccount(START)];
    const payments = client();
    const amounts = Array.from({ length: 60 }, (_, i) => 100 + i);
    const expected = Object.fromEntries(accounts.map((a) => [a, START]));

    const charges = await pool(amounts, 6, async (amount) => {
      const accountId = accounts[amount % 2];
      expected[accountId] -= amount;
      return payments.charges.create({ accountId, amount, currency: 'USD' });
    });
    await pool(accounts, 2, async (accountId) => {
      expected[accountId] += 5_000;
      return payments.deposits.create(accountId, { amount: 5_000, currency: 'USD' });
    });
    const refunds = await pool(charges.slice(0, 10), 5, async ({ data }) => {
      expected[data.accountId] += 50;
      return payments.refunds.create(data.id, { amount: 50 });
    });

    expect(new Set(charges.map((c) => c.data.id)).size).toBe(60);
    expect(refunds.every((r) => r.status === 201)).toBe(true);
    for (const account of accounts) expect(await balance(account)).toBe(expected[account]);
    expect((await chargesOf(accounts[0])) + (await chargesOf(accounts[1]))).toBe(60);
    expect(await ledgerViolations(t.db)).toEqual([]);
    // The network did break, and the client did retry, replays included.
    expect(events.filter((e) => e.failure).length).toBeGreaterThan(0);
    expect(charges.some((c) => c.replayed)).toBe(true);
  }, 120_000);
});

describe('the client and duplicates', () => {
  it.each([
    ['retrying 409s after Retry-After', undefined],
    ['with Prefer: wait', 5],
  ])('sends one operation from many places at once (%s): it executes once', async (_, wait) => {
    const account = await t.api.fundedAccount(10_000);
    const key = `order-${randomUUID()}`;
    const payments = client({ preferWait: wait });
    const body = { accountId: account, amount: 1_000, currency: 'USD' };

    const results = await Promise.all(
      Array.from({ length: 8 }, () => payments.charges.create(body, { idempotencyKey: key })),
    );

    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => r.data.id)).size).toBe(1);
    expect(await balance(account)).toBe(9_000);
    if (wait) expect(events.filter((e) => e.code === 'idempotency-key-in-use')).toEqual([]);
  });
});

describe('the client and final answers', () => {
  it('does not retry a 402; and its typed error is replayed to a retry with the same key', async () => {
    const account = await t.api.fundedAccount(500);
    const payments = client();
    const key = `order-${randomUUID()}`;
    const body = { accountId: account, amount: 1_000, currency: 'USD' };

    const first = (await payments.charges
      .create(body, { idempotencyKey: key })
      .catch((e: unknown) => e)) as PaymentsApiError;
    const again = (await payments.charges
      .create(body, { idempotencyKey: key })
      .catch((e: unknown) => e)) as PaymentsApiError;

    expect(first).toBeInstanceOf(PaymentsApiError);
    expect(first.is('insufficient-funds') && first.problem.chargeId).toMatch(/^ch_/);
    expect([first.replayed, again.replayed]).toEqual([false, true]);
    expect(again.problem).toEqual(first.problem);
    expect(events).toHaveLength(2); // one attempt each
    expect(await balance(account)).toBe(500);
  });

  it('does not retry a key reused for another payload (422), nor a stale If-Match (412)', async () => {
    const account = await t.api.fundedAccount(10_000);
    const payments = client();
    const key = `order-${randomUUID()}`;
    await payments.charges.create(
      { accountId: account, amount: 10, currency: 'USD' },
      { idempotencyKey: key },
    );
    const reused = await payments.charges
      .create({ accountId: account, amount: 99, currency: 'USD' }, { idempotencyKey: key })
      .catch((e: unknown) => e);
    expect(reused).toMatchObject({ status: 422, code: 'idempotency-key-reused' });

    const { headers } = await payments.accounts.replace(account, { name: 'Renamed once' });
    const etag = headers.get('ETag')!;
    await payments.accounts.replace(account, { name: 'Renamed twice' }, { ifMatch: etag });
    const stale = await payments.accounts
      .replace(account, { name: 'Lost update' }, { ifMatch: etag })
      .catch((e: unknown) => e);
    expect(stale).toMatchObject({ status: 412, code: 'precondition-failed' });
    expect((await payments.accounts.get(account)).data.name).toBe('Renamed twice');
    expect(events.filter((e) => e.retry)).toEqual([]);
    expect(await balance(account)).toBe(9_990);
  });

  it('reads what it wrote: the ledger and the key record', async () => {
    const account = await t.api.fundedAccount(1_000);
    const payments = client();
    const { idempotencyKey } = await payments.charges.create({
      accountId: account,
      amount: 300,
      currency: 'USD',
    });
    const ledger = await payments.accounts.ledger(account);
    expect(ledger.data.data.map((e) => (e as { amount: number }).amount)).toEqual([-300, 1_000]);
    const record = await payments.idempotencyKeys.get(idempotencyKey!);
    expect(record.data).toMatchObject({
      key: idempotencyKey,
      requestPath: '/charges',
      responseStatus: 201,
    });
  });
});

describe('the client example of docs/client-side.md', () => {
  it('runs as printed against the API, with the package as built (client/dist)', async () => {
    const block = readmeBlock('client-example', 'ts', 'docs/client-side.md');
    expect(block).toContain("from '@idempotent-payments/client'");
    const built = pathToFileURL(path.resolve('client/dist/index.js')).href;
    const source = block
      .replace("'@idempotent-payments/client'", `'${built}'`)
      .replace("'http://localhost:3000'", `'${t.baseUrl}'`)
      .replace("'sk_test_demo'", `'${t.api.apiKey}'`);
    expect(typeErrors(block)).toEqual([]);
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const dir = await mkdtemp(path.join(tmpdir(), 'readme-client-'));
    try {
      await writeFile(path.join(dir, 'example.mjs'), js);
      const { stdout } = await promisify(execFile)(process.execPath, [
        path.join(dir, 'example.mjs'),
      ]);
      expect(stdout).toMatch(/^ch_\w+ \{ replayed: false, attempts: 1 \}$/m);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** What tsc says of the README's example, its import pointed at client/src. */
function typeErrors(example: string): string[] {
  const file = path.resolve('build', 'readme-client-example.mts');
  const source = example.replace("'@idempotent-payments/client'", "'../client/src/index.js'");
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2023,
    lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
    types: [],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (path.resolve(name) === file ? source : readFile(name));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts
    .getPreEmitDiagnostics(program)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}
