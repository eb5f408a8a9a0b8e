import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { TransactionHost } from '../src/database/transaction-host.js';
import { MerchantsService } from '../src/merchants/merchants.service.js';
import { startInstance, useTestApp } from './support/test-app.js';

/**
 * A client that means harm gets a clear answer and nothing else
 * (docs/hostile-clients.md): each probe of the edge that once gave way, on
 * loopback, with bounded loops. The app under test has short timeouts; other
 * instances on the same database have the limits a probe needs.
 */
const t = useTestApp({ env: { HEADERS_TIMEOUT_MS: '1000', REQUEST_TIMEOUT_MS: '1500' } });
const port = () => Number(new URL(t.baseUrl).port);

/** What a socket received until the server closed it (or `ms` passed: then `closed` is false). */
async function exchange(
  send: (socket: Socket) => void | Promise<void>,
  ms = 5_000,
): Promise<{ text: string; closed: boolean; afterMs: number }> {
  const socket = connect(port(), '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  const started = Date.now();
  let text = '';
  socket.on('data', (chunk) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
  await send(socket);
  const ended = await Promise.race([
    closed,
    new Promise<boolean>((r) => setTimeout(() => r(false), ms)),
  ]);
  socket.destroy();
  return { text, closed: ended, afterMs: Date.now() - started };
}

/** The status, content type and parsed body of a raw HTTP answer. */
function answerOf(text: string) {
  const [head, body] = [
    text.slice(0, text.indexOf('\r\n\r\n')),
    text.slice(text.indexOf('\r\n\r\n') + 4),
  ];
  const header = (name: string) => new RegExp(`^${name}: (.*)$`, 'im').exec(head)?.[1]?.trim();
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]),
    contentType: header('content-type'),
    requestId: header('x-request-id'),
    body: body ? (JSON.parse(body) as Record<string, unknown>) : undefined,
  };
}

/** A POST of these very bytes, as the merchant of the app under test. */
function rawPost(
  path: string,
  body: Buffer,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: port(),
        method: 'POST',
        path,
        headers: {
          Authorization: `Bearer ${t.api.apiKey}`,
          'Content-Type': 'application/json',
          'Content-Length': body.length,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const chargeHead = (apiKey: string | undefined, length: number) =>
  [
    'POST /charges HTTP/1.1',
    'Host: 127.0.0.1',
    'Content-Type: application/json',
    `Content-Length: ${length}`,
    `Idempotency-Key: ${randomUUID()}`,
    ...(apiKey ? [`Authorization: Bearer ${apiKey}`] : []),
    '',
    '',
  ].join('\r\n');

describe('time and size', () => {
  it('answers a body of thousands of unknown properties with a short 400, before validation reads them', async () => {
    const body = JSON.stringify(
      Object.fromEntries(Array.from({ length: 11_200 }, (_, i) => [i.toString(36), 1])),
    );
    expect(body.length).toBeLessThan(100 * 1024);
    const res = await t.api
      .post('/charges', undefined, randomUUID())
      .set('Content-Type', 'application/json')
      .send(body);
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([
      { field: 'body', message: 'more than 256 values (members and items)' },
    ]);
    expect(res.text.length).toBeLessThan(1_000);
  });

  it('lists the first ten of many problems, and counts them', async () => {
    const body = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`unknown${i}`, 1]));
    const res = await t.api.post('/charges', body, randomUUID());
    expect(res.status).toBe(400);
    expect(res.body.errors).toHaveLength(10);
    expect(res.body.errorCount).toBeGreaterThan(40); // the unknown ones, and the missing fields
    expect(res.body.detail).toMatch(/the first 10 are listed/);
  });

  it('refuses a body without a valid key at once, before reading it, and closes the connection', async () => {
    for (const apiKey of [undefined, 'sk_made_up_key']) {
      // Headers promise 100 kB; not a byte of it is sent.
      const { text, closed, afterMs } = await exchange((s) => {
        s.write(chargeHead(apiKey, 100_000));
      });
      expect(answerOf(text)).toMatchObject({
        status: 401,
        contentType: expect.stringMatching(/^application\/problem\+json/),
        body: { type: '/problems/unauthorized' },
      });
      expect(closed).toBe(true);
      expect(afterMs).toBeLessThan(1_000); // not REQUEST_TIMEOUT_MS: nothing waited for the body
    }
  });

  it('closes, with 408 problem+json, a connection whose body trickles in past REQUEST_TIMEOUT_MS', async () => {
    const { text, closed } = await exchange(async (s) => {
      s.write(chargeHead(t.api.apiKey, 1_000));
      for (let i = 0; i < 6 && !s.destroyed; i++) {
        s.write('{');
        await new Promise((r) => setTimeout(r, 400)); // a byte now and then: the trickle itself
      }
    });
    expect(closed).toBe(true);
    expect(answerOf(text)).toMatchObject({
      status: 408,
      contentType: 'application/problem+json',
      requestId: expect.any(String),
      body: { type: '/problems/request-timeout', status: 408 },
    });
  });

  it('closes, with 408, a connection whose headers do not end within HEADERS_TIMEOUT_MS', async () => {
    const { text, closed } = await exchange((s) => {
      s.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    });
    expect(closed).toBe(true);
    expect(answerOf(text)).toMatchObject({
      status: 408,
      body: { type: '/problems/request-timeout' },
    });
  });
});

describe("answers in the contract's shape", () => {
  it('answers headers over 16 kB with 431 problem+json', async () => {
    const { text } = await exchange((s) => {
      s.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    });
    expect(answerOf(text)).toMatchObject({
      status: 431,
      contentType: 'application/problem+json',
      body: { type: '/problems/request-headers-too-large' },
    });
  });

  it('answers what is not HTTP with 400 problem+json', async () => {
    const { text } = await exchange((s) => {
      s.write('GET /health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n');
    });
    expect(answerOf(text)).toMatchObject({
      status: 400,
      body: { type: '/problems/malformed-request' },
    });
  });

  it.each(['Authorization', 'Idempotency-Key'])(
    'refuses a request that repeats %s (400)',
    async (name) => {
      const values =
        name === 'Authorization'
          ? [`Bearer ${t.api.apiKey}`, 'Bearer sk_another_key']
          : [randomUUID(), randomUUID()];
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: port(),
            method: 'POST',
            path: '/accounts',
            headers: {
              Authorization: `Bearer ${t.api.apiKey}`,
              'Content-Type': 'application/json',
              [name]: values,
            },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ name: 'Twice', currency: 'USD' }));
      });
      expect(status).toBe(400);
      const { rows } = await t.db.query(`SELECT 1 FROM accounts WHERE name = 'Twice'`);
      expect(rows).toEqual([]);
    },
  );

  it('refuses a body that is not UTF-8, or holds an unpaired surrogate, and stores nothing', async () => {
    const latin1 = Buffer.concat([
      Buffer.from('{"name":"Caf'),
      Buffer.from([0xe9]),
      Buffer.from('","currency":"USD"}'),
    ]);
    const notUtf8 = await rawPost('/accounts', latin1);
    expect(notUtf8).toMatchObject({
      status: 400,
      body: { type: '/problems/malformed-json', detail: expect.stringContaining('UTF-8') },
    });
    const lone = await t.api
      .post('/accounts', undefined, randomUUID())
      .set('Content-Type', 'application/json')
      .send('{"name":"Half \\ud800 a pair","currency":"USD"}');
    expect(lone.status).toBe(400);
    expect(lone.body.errors).toEqual([
      { field: 'name', message: expect.stringContaining('unpaired surrogate') },
    ]);
    const { rows } = await t.db.query(
      `SELECT 1 FROM accounts WHERE name LIKE 'Caf%' OR name LIKE 'Half%'`,
    );
    expect(rows).toEqual([]);
  });

  it('marks pages with a Content-Security-Policy that frames nothing, and every answer nosniff', async () => {
    const page = await fetch(`${t.baseUrl}/docs`);
    expect(page.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    const json = await fetch(`${t.baseUrl}/health`);
    expect(json.headers.get('x-content-type-options')).toBe('nosniff');
    expect(json.headers.get('content-security-policy')).toBeNull();
  });
});

describe('rate limits, before anything runs', () => {
  it('answers a merchant past RATE_LIMIT_PER_SECOND with 429 and Retry-After; the same request after the wait executes', async () => {
    const limited = await startInstance(t.databaseUrl, { RATE_LIMIT_PER_SECOND: '3' });
    try {
      const api = limited.client(await t.merchant('Rate limited'));
      const account = await api.fundedAccount(1_000);
      await new Promise((r) => setTimeout(r, 1_100)); // a fresh second for what follows
      const keys = Array.from({ length: 8 }, () => randomUUID());
      const answers = await Promise.all(
        keys.map((key) =>
          api.post('/charges', { accountId: account, amount: 1, currency: 'USD' }, key),
        ),
      );
      const refused = answers.filter((r) => r.status === 429);
      expect(refused.length).toBeGreaterThanOrEqual(5);
      expect(refused[0].body.type).toBe('/problems/too-many-requests');
      const wait = Number(refused[0].headers['retry-after']);
      expect(wait).toBeGreaterThanOrEqual(1);
      // Never stored under its key: after the wait, the same request executes (201, not a replay).
      await new Promise((r) => setTimeout(r, wait * 1_000));
      const key = keys[answers.findIndex((r) => r.status === 429)];
      const again = await api.post(
        '/charges',
        { accountId: account, amount: 1, currency: 'USD' },
        key,
      );
      expect(again.status).toBe(201);
      expect(again.headers['idempotent-replayed']).toBeUndefined();
    } finally {
      await limited.close();
    }
  });

  it('gives an address AUTH_FAILURES_PER_MINUTE look-ups of unknown keys, then 429; a wrong key sent again costs no query', async () => {
    const guarded = await startInstance(t.databaseUrl, { AUTH_FAILURES_PER_MINUTE: '3' });
    const tx = guarded.app.get(TransactionHost);
    const lookups = jest.spyOn(tx, 'query');
    const keyLookups = () =>
      lookups.mock.calls.filter(([sql]) =>
        String(sql).includes('FROM merchants WHERE api_key_hash'),
      ).length;
    const as = (apiKey: string) =>
      fetch(`${guarded.baseUrl}/accounts`, { headers: { Authorization: `Bearer ${apiKey}` } });
    try {
      // A merchant this instance has seen, before the flood.
      expect((await as(t.api.apiKey)).status).toBe(200);
      // One wrong key, 50 times: one look-up, then remembered as unknown.
      for (let i = 0; i < 50; i++) expect((await as('sk_the_same_wrong_key')).status).toBe(401);
      expect(keyLookups()).toBe(2); // the good key's, and the wrong one's
      // Made-up keys: two more look-ups (three in all), then 429 without any.
      const statuses = [];
      for (let i = 0; i < 10; i++) statuses.push((await as(`sk_made_up_${i}`)).status);
      expect(statuses).toEqual([401, 401, ...Array(8).fill(429)]);
      expect(keyLookups()).toBe(4);
      const refused = await as('sk_made_up_again');
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(((await refused.json()) as { type: string }).type).toBe('/problems/too-many-requests');
      // The merchant this instance knows is still served from that address; a key it
      // does not know yet waits for the minute, like any unknown key (it cannot tell).
      expect((await as(t.api.apiKey)).status).toBe(200);
    } finally {
      lookups.mockRestore();
      await guarded.close();
    }
  });
});

describe('production defaults', () => {
  let production: Awaited<ReturnType<typeof startInstance>>;
  beforeAll(async () => {
    production = await startInstance(t.databaseUrl, { NODE_ENV: 'production' });
  });
  afterAll(() => production.close());

  it('refuses a test key (sk_test_...) in production, though its merchant exists', async () => {
    await t.app.get(MerchantsService).create('Made in development', 'sk_test_from_development');
    expect(
      (
        await fetch(`${t.baseUrl}/accounts`, {
          headers: { Authorization: 'Bearer sk_test_from_development' },
        })
      ).status,
    ).toBe(200);
    const refused = await fetch(`${production.baseUrl}/accounts`, {
      headers: { Authorization: 'Bearer sk_test_from_development' },
    });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { detail: string }).detail).toMatch(/test key/);
  });

  it('serves /metrics in production only behind METRICS_TOKEN', async () => {
    expect((await fetch(`${production.baseUrl}/metrics`)).status).toBe(404);
    expect((await fetch(`${t.baseUrl}/metrics`)).status).toBe(200); // outside production: open
    const token = 'metrics-token-0123456789';
    const scraped = await startInstance(t.databaseUrl, {
      NODE_ENV: 'production',
      METRICS_TOKEN: token,
    });
    try {
      expect((await fetch(`${scraped.baseUrl}/metrics`)).status).toBe(401);
      const wrong = await fetch(`${scraped.baseUrl}/metrics`, {
        headers: { Authorization: `Bearer ${t.api.apiKey}` },
      });
      expect(wrong.status).toBe(401);
      const right = await fetch(`${scraped.baseUrl}/metrics`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      expect(right.status).toBe(200);
      expect(await right.text()).toContain('http_requests_total');
      // The token is not an API key.
      expect(
        (
          await fetch(`${scraped.baseUrl}/accounts`, {
            headers: { Authorization: `Bearer ${token}` },
          })
        ).status,
      ).toBe(401);
    } finally {
      await scraped.close();
    }
  });
});

describe('secrets at rest', () => {
  it("keeps webhook signing secrets sealed, in the endpoint's row and in the answer stored under its key; a replay still shows the secret", async () => {
    const key = randomUUID();
    const created = await t.api.post(
      '/webhook-endpoints',
      { url: 'http://127.0.0.1:9/hooks' },
      key,
    );
    expect(created.status).toBe(201);
    const secret = created.body.secret as string;
    expect(secret).toMatch(/^whsec_/);
    const rotated = await t.api.post(
      `/webhook-endpoints/${created.body.id}/rotate-secret`,
      undefined,
      randomUUID(),
    );
    const rows = await t.db.query<{ text: string }>(
      `SELECT secrets::text AS text FROM webhook_endpoints WHERE id = $1
       UNION ALL SELECT response_body FROM idempotency_keys WHERE merchant_id = $2`,
      [created.body.id, t.api.merchantId],
    );
    const atRest = rows.rows.map((r) => r.text).join('\n');
    expect(atRest).toContain('sealed:v1:');
    expect(atRest).not.toContain(secret.slice('whsec_'.length));
    expect(atRest).not.toContain((rotated.body.secret as string).slice('whsec_'.length));

    const replay = await t.api.post('/webhook-endpoints', { url: 'http://127.0.0.1:9/hooks' }, key);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body.secret).toBe(secret);
    // Another instance, which never saw the key, opens the stored answer from the database.
    const other = await startInstance(t.databaseUrl);
    try {
      const elsewhere = await other
        .client(t.api)
        .post('/webhook-endpoints', { url: 'http://127.0.0.1:9/hooks' }, key);
      expect(elsewhere.body.secret).toBe(secret);
    } finally {
      await other.close();
    }
    // Deleted: its secrets go with it.
    await t.api.delete(`/webhook-endpoints/${created.body.id}`);
    const { rows: left } = await t.db.query(`SELECT secrets FROM webhook_endpoints WHERE id = $1`, [
      created.body.id,
    ]);
    expect(left).toEqual([{ secrets: [] }]);
  });

  it('seals, at start-up, the secrets kept in the clear from before', async () => {
    const created = await t.api.post('/webhook-endpoints', { url: 'http://127.0.0.1:9/older' });
    await t.db.query(
      `UPDATE webhook_endpoints SET secrets = '[{"secret": "whsec_b2xkZXItc2VjcmV0LWluLXRoZS1jbGVhcg==", "expiresAt": null}]'
        WHERE id = $1`,
      [created.body.id],
    );
    const restarted = await startInstance(t.databaseUrl);
    await restarted.close();
    const { rows } = await t.db.query<{ text: string }>(
      `SELECT secrets::text AS text FROM webhook_endpoints WHERE id = $1`,
      [created.body.id],
    );
    expect(rows[0].text).toContain('sealed:v1:');
    expect(rows[0].text).not.toContain('b2xkZXItc2VjcmV0');
    await t.api.delete(`/webhook-endpoints/${created.body.id}`);
  });
});
