import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { projectRoot } from '../tools/api-process.js';
import { freePort } from '../src/common/free-port.js';
import { startTestProcessor, type TestProcessor } from './support/processor.js';

/**
 * The card processor on its own: a payment service provider that honours its own
 * Idempotency-Key, scoped to the caller, and can be told to misbehave by test card.
 */
let p: TestProcessor;
beforeAll(async () => {
  p = await startTestProcessor({
    slowMs: 300,
    holdMs: 1_500,
    apiKeys: ['sk_caller_a', 'sk_caller_b', 'sk_caller_pages'],
  });
});
afterAll(() => p.close());

interface Sent {
  status: number;
  replayed: boolean;
  body: Record<string, unknown>;
}

function pay(
  body: object,
  key: string,
  { caller = 'sk_caller_a', timeoutMs = 5_000 } = {},
): Promise<Sent> {
  return send('POST', '/payments', body, key, caller, timeoutMs);
}

async function send(
  method: string,
  path: string,
  body: object | undefined,
  key: string | undefined,
  caller = 'sk_caller_a',
  timeoutMs = 5_000,
): Promise<Sent> {
  const res = await fetch(`${p.url}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${caller}`,
      'Content-Type': 'application/json',
      ...(key ? { 'Idempotency-Key': key } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeoutMs),
  });
  return {
    status: res.status,
    replayed: res.headers.get('idempotent-replayed') === 'true',
    body: (await res.json()) as Record<string, unknown>,
  };
}

const payments = async (key: string) =>
  Number(
    (await p.db.query('SELECT count(*) AS n FROM payments WHERE idempotency_key = $1', [key]))
      .rows[0].n,
  );

describe('payments, idempotent by key', () => {
  it('charges a card once: the same key and body get the same payment, replayed', async () => {
    const key = randomUUID();
    const first = await pay({ amount: 1_000, currency: 'USD', card: 'tok_visa' }, key);
    const again = await pay({ amount: 1_000, currency: 'USD', card: 'tok_visa' }, key);

    expect(first).toMatchObject({
      status: 201,
      replayed: false,
      body: { object: 'payment', status: 'succeeded', amount: 1_000, currency: 'USD' },
    });
    expect(again).toMatchObject({ status: 201, replayed: true, body: first.body });
    expect(await payments(key)).toBe(1);
  });

  it('scopes keys to the caller, and refuses a key reused for another request (422)', async () => {
    const key = randomUUID();
    const a = await pay({ amount: 10, currency: 'USD', card: 'tok_visa' }, key);
    const b = await pay({ amount: 10, currency: 'USD', card: 'tok_visa' }, key, {
      caller: 'sk_caller_b',
    });
    const reused = await pay({ amount: 11, currency: 'USD', card: 'tok_visa' }, key);

    expect(b.body.id).not.toBe(a.body.id);
    expect(reused).toMatchObject({ status: 422, body: { error: 'idempotency_key_reused' } });
    const other = await send(
      'GET',
      `/payments/${a.body.id as string}`,
      undefined,
      undefined,
      'sk_caller_b',
    );
    expect(other.status).toBe(404);
  });

  it('makes one payment of 30 concurrent requests with one key', async () => {
    const key = randomUUID();
    const all = await Promise.all(
      Array.from({ length: 30 }, () => pay({ amount: 5, currency: 'EUR', card: 'tok_visa' }, key)),
    );

    expect(new Set(all.map((r) => r.body.id)).size).toBe(1);
    expect(all.every((r) => r.status === 201)).toBe(true);
    expect(await payments(key)).toBe(1);
  });

  it('declines the test cards that decline, and remembers the decline', async () => {
    const key = randomUUID();
    const declined = await pay({ amount: 10, currency: 'USD', card: 'tok_declined' }, key);
    const again = await pay({ amount: 10, currency: 'USD', card: 'tok_declined' }, key);
    const poor = await pay(
      { amount: 10, currency: 'USD', card: 'tok_insufficient_funds' },
      randomUUID(),
    );

    expect(declined.body).toMatchObject({ status: 'declined', declineCode: 'card_declined' });
    expect(again).toMatchObject({ replayed: true, body: declined.body });
    expect(poor.body).toMatchObject({ status: 'declined', declineCode: 'insufficient_funds' });
  });

  it('refuses what is not a payment request with 400, and a missing key or caller', async () => {
    expect(
      (await pay({ amount: 1.5, currency: 'USD', card: 'tok_visa' }, randomUUID())).status,
    ).toBe(400);
    expect((await pay({ amount: 1, currency: 'usd', card: 'tok_visa' }, randomUUID())).status).toBe(
      400,
    );
    expect((await pay({ amount: 1, currency: 'USD', card: '4242' }, randomUUID())).status).toBe(
      400,
    );
    expect(
      (await send('POST', '/payments', { amount: 1, currency: 'USD', card: 'tok_visa' }, undefined))
        .status,
    ).toBe(400);
    expect((await send('POST', '/payments', {}, randomUUID(), '')).status).toBe(401);
  });

  it('serves only the callers it has keys for (401), and declines a card token it never issued', async () => {
    const stranger = await pay({ amount: 10, currency: 'USD', card: 'tok_visa' }, randomUUID(), {
      caller: 'sk_anyone_at_all',
    });
    expect(stranger).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
    const key = randomUUID();
    const unknown = await pay({ amount: 10, currency: 'USD', card: 'tok_chargeme' }, key);
    expect(unknown.body).toMatchObject({ status: 'declined', declineCode: 'unknown_card' });
    expect(await payments(key)).toBe(1); // recorded, as a decline: nothing charged
  });
});

describe('payments, misbehaving on purpose', () => {
  it('tok_error: 500 every time, and nothing charged', async () => {
    const key = randomUUID();
    const first = await pay({ amount: 10, currency: 'USD', card: 'tok_error' }, key);
    const again = await pay({ amount: 10, currency: 'USD', card: 'tok_error' }, key);

    expect([first.status, again.status]).toEqual([500, 500]);
    expect(await payments(key)).toBe(0);
  });

  it('tok_timeout_after_charge: the caller times out, yet the card was charged; the retry gets the payment at once', async () => {
    const key = randomUUID();
    const body = { amount: 10, currency: 'USD', card: 'tok_timeout_after_charge' };
    const timedOut = await pay(body, key, { timeoutMs: 400 }).catch((e: Error) => e.name);

    expect(timedOut).toBe('TimeoutError');
    expect(await payments(key)).toBe(1);
    const retry = await pay(body, key, { timeoutMs: 400 });
    expect(retry).toMatchObject({ status: 201, replayed: true, body: { status: 'succeeded' } });
  });

  it('tok_drop_after_charge: the connection is cut after the charge; the retry gets the payment', async () => {
    const key = randomUUID();
    const body = { amount: 10, currency: 'USD', card: 'tok_drop_after_charge' };
    const dropped = await pay(body, key).catch(() => 'connection cut');

    expect(dropped).toBe('connection cut');
    expect(await payments(key)).toBe(1);
    expect(await pay(body, key)).toMatchObject({ status: 201, replayed: true });
  });

  it('tok_slow: answers, late', async () => {
    const started = Date.now();
    const res = await pay({ amount: 10, currency: 'USD', card: 'tok_slow' }, randomUUID());
    expect(res.body.status).toBe('succeeded');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});

describe('refunds and lists', () => {
  it('refunds once per key, never more than the payment', async () => {
    const paid = await pay({ amount: 100, currency: 'USD', card: 'tok_visa' }, randomUUID());
    const path = `/payments/${paid.body.id as string}/refunds`;
    const key = randomUUID();

    const first = await send('POST', path, { amount: 60 }, key);
    const again = await send('POST', path, { amount: 60 }, key);
    const tooMuch = await send('POST', path, { amount: 41 }, randomUUID());
    const shown = await send('GET', `/payments/${paid.body.id as string}`, undefined, undefined);

    expect(first).toMatchObject({ status: 201, body: { object: 'refund', amount: 60 } });
    expect(again).toMatchObject({ status: 201, replayed: true, body: first.body });
    expect(tooMuch).toMatchObject({ status: 422, body: { error: 'refund_exceeds_payment' } });
    expect(shown.body.amountRefunded).toBe(60);
  });

  it("lists a caller's payments in pages, and only its own", async () => {
    const caller = 'sk_caller_pages'; // no payment of its own elsewhere
    for (let i = 0; i < 3; i++) {
      await pay({ amount: 1, currency: 'USD', card: 'tok_visa' }, randomUUID(), { caller });
    }
    const first = await send('GET', '/payments?limit=2', undefined, undefined, caller);
    const last = (first.body.data as Array<{ id: string }>).at(-1)!.id;
    const second = await send(
      'GET',
      `/payments?limit=2&startingAfter=${last}`,
      undefined,
      undefined,
      caller,
    );

    expect(first.body).toMatchObject({ hasMore: true });
    expect((first.body.data as unknown[]).length + (second.body.data as unknown[]).length).toBe(3);
    expect(second.body.hasMore).toBe(false);
  });
});

describe('random faults (PROCESSOR_FAULT_RATE)', () => {
  it('gives that share of new payments a fault: here all, and the dice say a cut connection after the charge', async () => {
    const dice = [0.1, 0.9]; // 0.1 < faultRate 1: a fault; 0.9: the third kind, drop-after-charge
    const faulty = await startTestProcessor({
      faultRate: 1,
      rng: () => dice.shift() ?? 0.1,
      apiKeys: ['sk_caller_a'],
    });
    try {
      const key = randomUUID();
      const send = () =>
        fetch(`${faulty.url}/payments`, {
          method: 'POST',
          headers: {
            Authorization: 'Bearer sk_caller_a',
            'Content-Type': 'application/json',
            'Idempotency-Key': key,
          },
          body: JSON.stringify({ amount: 10, currency: 'USD', card: 'tok_visa' }),
        });

      expect(await send().catch(() => 'connection cut')).toBe('connection cut');
      const retry = await send(); // a replay meets no fault
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      const { rows } = await faulty.db.query('SELECT count(*)::int AS n FROM payments');
      expect(rows[0].n).toBe(1);
    } finally {
      await faulty.close();
    }
  });
});

describe('as a process of its own', () => {
  it('refuses to start in production without PROCESSOR_API_KEYS', async () => {
    const child = spawn(process.execPath, ['dist/processor/main.js'], {
      cwd: projectRoot,
      env: { ...process.env, DATABASE_URL: p.databaseUrl, PORT: '0', NODE_ENV: 'production' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(1);
    expect(stderr).toContain('PROCESSOR_API_KEYS');
  });

  it('with PROCESSOR_EXIT_WITH_PARENT=1, exits when the pipe from its parent closes (the parent died)', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['dist/processor/main.js'], {
      cwd: projectRoot,
      env: {
        ...process.env,
        DATABASE_URL: p.databaseUrl,
        PORT: String(port),
        PROCESSOR_EXIT_WITH_PARENT: '1',
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve())); // listening
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);

    child.stdin.destroy(); // what the parent's death does to its end of the pipe

    expect(await exited).toBe(0);
  });
});
