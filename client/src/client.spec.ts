import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AttemptEvent, createPaymentsClient } from './client.js';
import { PaymentsApiError, RetriesExhaustedError } from './errors.js';

/**
 * The client's retry rules against a scripted HTTP server: each test says what the
 * server answers, attempt by attempt, and checks what the client sent and did.
 * (The client against the real API, through a network that loses responses, is
 * test/client.e2e-spec.ts.)
 */

type Reply = (res: ServerResponse, req: IncomingMessage) => void;
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

let server: Server;
let baseUrl: string;
let script: Reply[] = [];
let seen: Seen[] = [];

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Reply =>
  (res) => {
    res.writeHead(status, {
      'Content-Type': status >= 400 ? 'application/problem+json' : 'application/json',
      ...headers,
    });
    res.end(JSON.stringify(body));
  };
const problem = (status: number, code: string, headers: Record<string, string> = {}, extra = {}) =>
  json(status, { type: `/problems/${code}`, title: code, status, detail: code, ...extra }, headers);
const charge = { id: 'ch_1', object: 'charge', amount: 2500 };
const cut: Reply = (res) => res.socket?.destroy();
const never: Reply = () => undefined;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      (script.shift() ?? problem(500, 'internal-error'))(res, req);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  script = [];
  seen = [];
});

const events: AttemptEvent[] = [];
const client = (options: Partial<Parameters<typeof createPaymentsClient>[0]> = {}) => {
  events.length = 0;
  return createPaymentsClient({
    baseUrl,
    apiKey: 'sk_test_client',
    retry: { baseDelayMs: 1, maxDelayMs: 5 },
    onAttempt: (e) => events.push(e),
    ...options,
  });
};
const body = { accountId: 'acct_1', amount: 2500, currency: 'USD' };

describe('the client', () => {
  it('sends one key per operation, the same on every attempt, and a new one for the next operation', async () => {
    script = [problem(503, 'service-unavailable'), cut, json(201, charge), json(201, charge)];
    const payments = client();

    const first = await payments.charges.create(body);
    const second = await payments.charges.create(body);

    const keys = seen.map((s) => s.headers['idempotency-key']);
    expect(keys).toHaveLength(4);
    expect(new Set(keys.slice(0, 3)).size).toBe(1);
    expect(keys[3]).not.toBe(keys[0]);
    expect(first).toMatchObject({ status: 201, attempts: 3, idempotencyKey: keys[0] });
    expect(second).toMatchObject({ attempts: 1, idempotencyKey: keys[3] });
    expect(seen.every((s) => s.headers.authorization === 'Bearer sk_test_client')).toBe(true);
    expect(JSON.parse(seen[2].body)).toEqual(body);
  });

  it('uses the key it is given, and exposes the replay flag', async () => {
    script = [json(201, charge, { 'Idempotent-Replayed': 'true' })];
    const result = await client().charges.create(body, { idempotencyKey: 'order-42' });
    expect(seen[0].headers['idempotency-key']).toBe('order-42');
    expect(result).toMatchObject({ data: charge, replayed: true, idempotencyKey: 'order-42' });
  });

  it('retries a 409 idempotency-key-in-use no sooner than its Retry-After', async () => {
    script = [problem(409, 'idempotency-key-in-use', { 'Retry-After': '1' }), json(201, charge)];
    const started = Date.now();
    const result = await client({ random: () => 0 }).charges.create(body);
    expect(result.attempts).toBe(2);
    expect(events[0]).toMatchObject({
      status: 409,
      code: 'idempotency-key-in-use',
      retry: { reason: 'in-use', delayMs: 1_000 },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);
  });

  it.each([
    ['rate-limited', problem(429, 'rate-limited')],
    ['server-error', problem(500, 'internal-error')],
    ['server-error', json(502, '<html>bad gateway</html>')],
    ['network', cut],
  ])('retries %s with the same key', async (reason, reply) => {
    script = [reply, json(201, charge)];
    const result = await client().charges.create(body);
    expect(result.attempts).toBe(2);
    expect(events[0].retry?.reason).toBe(reason);
    expect(seen[1].headers['idempotency-key']).toBe(seen[0].headers['idempotency-key']);
  });

  it('retries an attempt that gets no answer in time', async () => {
    script = [never, json(201, charge)];
    const result = await client({ timeoutMs: 300 }).charges.create(body);
    expect(result.attempts).toBe(2);
    expect(events[0]).toMatchObject({ failure: 'timeout', retry: { reason: 'timeout' } });
  });

  it.each([
    [400, 'validation-failed'],
    [401, 'unauthorized'],
    [404, 'not-found'],
    [409, 'account-closed'],
    [412, 'precondition-failed'],
    [422, 'idempotency-key-reused'],
  ])('never retries a %i %s: it throws it, typed', async (status, code) => {
    script = [problem(status, code), json(201, charge)];
    const error = await client()
      .charges.create(body)
      .catch((e: unknown) => e);
    expect(seen).toHaveLength(1);
    expect(error).toBeInstanceOf(PaymentsApiError);
    expect(error).toMatchObject({
      status,
      code,
      idempotencyKey: seen[0].headers['idempotency-key'],
    });
  });

  it('narrows a problem to its code, extensions included', async () => {
    script = [
      problem(402, 'insufficient-funds', { 'Idempotent-Replayed': 'true' }, { chargeId: 'ch_9' }),
    ];
    const error = (await client()
      .charges.create(body)
      .catch((e: unknown) => e)) as PaymentsApiError;
    expect(error.is('insufficient-funds') && error.problem.chargeId).toBe('ch_9');
    expect(error.is('currency-mismatch')).toBe(false);
    expect(error.replayed).toBe(true);
  });

  it('gives up after maxAttempts, saying which key to retry with later', async () => {
    script = Array.from({ length: 3 }, () => problem(503, 'service-unavailable'));
    const error = (await client({ retry: { maxAttempts: 3, baseDelayMs: 1 } })
      .deposits.create('acct_1', { amount: 5, currency: 'USD' })
      .catch((e: unknown) => e)) as RetriesExhaustedError;
    expect(error).toBeInstanceOf(RetriesExhaustedError);
    expect(seen).toHaveLength(3);
    expect(error.attempts).toBe(3);
    expect(error.idempotencyKey).toBe(seen[0].headers['idempotency-key']);
    expect(error.message).toContain(`Idempotency-Key ${error.idempotencyKey}`);
    expect((error.cause as PaymentsApiError).code).toBe('service-unavailable');
  });

  it('gives up at the deadline rather than wait past it', async () => {
    script = [problem(409, 'idempotency-key-in-use', { 'Retry-After': '5' }), json(201, charge)];
    const error = await client({ retry: { deadlineMs: 1_000 } })
      .charges.create(body)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetriesExhaustedError);
    expect(seen).toHaveLength(1);
  });

  it('asks the server to wait (Prefer: wait=N) on keyed requests only', async () => {
    script = [json(201, charge), json(200, { id: 'acct_1' })];
    const payments = client({ preferWait: 5 });
    await payments.charges.create(body);
    await payments.accounts.get('acct_1');
    expect(seen.map((s) => [s.method, s.headers.prefer])).toEqual([
      ['POST', 'wait=5'],
      ['GET', undefined],
    ]);
  });

  it('sends no key with GET, PUT or DELETE, and If-Match when given', async () => {
    script = [
      json(200, { id: 'acct_1' }),
      json(200, { id: 'acct_1' }),
      (res) => res.writeHead(204).end(),
    ];
    const payments = client();
    await payments.accounts.get('acct_1');
    await payments.accounts.replace('acct_1', { name: 'New' }, { ifMatch: '"3"' });
    const closed = await payments.accounts.close('acct_1');
    expect(
      seen.map((s) => [s.method, s.url, s.headers['idempotency-key'], s.headers['if-match']]),
    ).toEqual([
      ['GET', '/accounts/acct_1', undefined, undefined],
      ['PUT', '/accounts/acct_1', undefined, '"3"'],
      ['DELETE', '/accounts/acct_1', undefined, undefined],
    ]);
    expect(closed.status).toBe(204);
  });

  it('asks a pending top-up again with the same key when told to', async () => {
    const pending = json(202, { id: 'tu_1', status: 'pending' }, { 'Retry-After': '0' });
    script = [pending, pending, json(201, { id: 'tu_1', status: 'succeeded' }), pending];
    const payments = client();
    const done = await payments.topUps.create(
      'acct_1',
      { amount: 100, currency: 'USD', card: 'tok_visa' },
      { pending: 'retry' },
    );
    expect(done).toMatchObject({ status: 201, attempts: 3 });
    expect(new Set(seen.map((s) => s.headers['idempotency-key'])).size).toBe(1);
    const asIs = await payments.topUps.create('acct_1', { amount: 1, currency: 'USD' } as never);
    expect(asIs).toMatchObject({ status: 202, attempts: 1 });
  });

  it('stops when the caller cancels, between attempts too', async () => {
    script = [problem(503, 'service-unavailable', { 'Retry-After': '10' })];
    const controller = new AbortController();
    const call = client().charges.create(body, { signal: controller.signal });
    while (seen.length === 0) await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    await expect(call).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toHaveLength(1);
  });

  it('asks a function for the base URL before every attempt', async () => {
    script = [cut, json(201, charge)];
    const urls: string[] = [];
    await client({ baseUrl: () => (urls.push(baseUrl), baseUrl) }).charges.create(body);
    expect(urls).toHaveLength(2);
  });
});
