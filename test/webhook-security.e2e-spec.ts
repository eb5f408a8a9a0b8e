import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { WebhookDispatcher } from '../src/webhooks/webhook-dispatcher.js';
import { type FakeEndpoint, startFakeEndpoint } from './support/endpoint-server.js';
import { startTestReceiver, type TestReceiver } from './support/receiver.js';
import { type ApiClient, startInstance, useTestApp } from './support/test-app.js';

/**
 * Webhooks that are safe to point at the internet (docs/webhooks.md#webhook-security):
 * where they may go, what a URL may look like, how much one merchant may take of the
 * sender, and what an endpoint's answers do to it. Every URL here is on loopback:
 * the app under test allows it (WEBHOOK_ALLOW_LOOPBACK, on outside production), and
 * a second instance on the same database (`strict`) refuses it, as production does.
 * The dispatchers are driven by hand.
 */
const SETTINGS = {
  WEBHOOK_DISPATCH_INTERVAL_MS: '0',
  WEBHOOK_RETRY_SECONDS: '0',
  WEBHOOK_MAX_ATTEMPTS: '2',
  WEBHOOK_TIMEOUT_MS: '1500',
  WEBHOOK_MAX_ENDPOINTS: '3',
  WEBHOOK_DISABLE_AFTER_SECONDS: '3600',
};
const t = useTestApp({ env: SETTINGS });
let strict: Awaited<ReturnType<typeof startInstance>>;
let receiver: TestReceiver;
const endpoints: FakeEndpoint[] = [];

beforeAll(async () => {
  strict = await startInstance(t.databaseUrl, { ...SETTINGS, WEBHOOK_ALLOW_LOOPBACK: 'false' });
  receiver = await startTestReceiver();
});
afterAll(async () => {
  await strict.close();
  await receiver.close();
  for (const endpoint of endpoints) await endpoint.close();
});

const dispatch = (app = t.app) => app.get(WebhookDispatcher).dispatchDue();

async function fakeEndpoint(...args: Parameters<typeof startFakeEndpoint>) {
  const endpoint = await startFakeEndpoint(...args);
  endpoints.push(endpoint);
  return endpoint;
}

async function subscribe(api: ApiClient, url: string): Promise<{ id: string; secret: string }> {
  const res = await api.post('/webhook-endpoints', { url });
  if (res.status !== 201) throw new Error(`endpoint: ${res.status} ${res.text}`);
  return res.body;
}

async function triesOf(endpointId: string) {
  const { rows } = await t.db.query<{ statusCode: number | null; error: string | null }>(
    `SELECT status_code AS "statusCode", error FROM webhook_attempts
      WHERE endpoint_id = $1 ORDER BY id`,
    [endpointId],
  );
  return rows;
}

describe('where webhooks may go', () => {
  it('refuses, where loopback is not allowed, an endpoint whose host is or resolves to it, in every spelling (400)', async () => {
    const api = strict.client(await t.merchant('Strict'));
    const spellings = [
      'http://127.0.0.1:9/hooks',
      'http://localhost:9/hooks',
      'http://[::1]:9/hooks',
      'http://0:9/hooks', // 0.0.0.0
      'http://2130706433:9/hooks',
      'http://0x7f.1:9/hooks',
      'http://127.1:9/hooks',
      'http://[::ffff:127.0.0.1]:9/hooks',
    ];
    for (const url of spellings) {
      const res = await api.post('/webhook-endpoints', { url });
      expect({ url, status: res.status, type: res.body.type }).toEqual({
        url,
        status: 400,
        type: '/problems/validation-failed',
      });
      expect(res.body.detail).toMatch(/(loopback|unspecified) address/);
    }
    // Changed to one: the same.
    const created = await t.api.post('/webhook-endpoints', { url: 'http://127.0.0.1:9/a' });
    const asStrict = strict.client(t.api);
    const changed = await asStrict.put(`/webhook-endpoints/${created.body.id}`, {
      url: 'http://localhost:9/b',
      enabled: true,
    });
    expect(changed.status).toBe(400);
    expect((await t.api.delete(`/webhook-endpoints/${created.body.id}`)).status).toBe(204);
  });

  it('checks again at connect time, on the address the name resolves to then: a refused try says why, and nothing is sent', async () => {
    const api = await t.merchant('Rebinding');
    // Stored while loopback was allowed (or, in the wild, while the name resolved
    // elsewhere): localhost by name, and 127.0.0.1 as a literal.
    const port = receiver.port;
    const byName = await subscribe(api, `http://localhost:${port}/webhooks`);
    const literal = await subscribe(api, `http://127.0.0.1:${port}/webhooks`);
    receiver.secrets.push(byName.secret, literal.secret);
    await api.createAccount();
    const before = receiver.svix.verified + receiver.svix.refused;

    expect(await dispatch(strict.app)).toBe(2);

    for (const endpoint of [byName, literal]) {
      expect(await triesOf(endpoint.id)).toEqual([
        { statusCode: null, error: 'address not allowed (loopback)' },
      ]);
    }
    expect(receiver.svix.verified + receiver.svix.refused).toBe(before); // nothing arrived
    // Where loopback is allowed, the same deliveries go through.
    await dispatch();
    expect((await triesOf(byName.id)).at(-1)).toEqual({ statusCode: 204, error: null });
    expect((await triesOf(literal.id)).at(-1)).toEqual({ statusCode: 204, error: null });
  });

  it('requires https where WEBHOOK_REQUIRE_HTTPS says so', async () => {
    const https = await startInstance(t.databaseUrl, {
      ...SETTINGS,
      WEBHOOK_REQUIRE_HTTPS: 'true',
    });
    try {
      const api = https.client(await t.merchant('Https only'));
      const plain = await api.post('/webhook-endpoints', { url: 'http://127.0.0.1:9/hooks' });
      expect(plain.status).toBe(400);
      expect(plain.body.detail).toContain('https://');
      // Nothing is sent to it here: the merchant makes no event.
      const secure = await api.post('/webhook-endpoints', { url: 'https://127.0.0.1:9/hooks' });
      expect(secure.status).toBe(201);
    } finally {
      await https.close();
    }
  });
});

describe('a URL as written', () => {
  it('answers 400, never 500, to every spelling a URL parser forgives, on create and on replace', async () => {
    const api = await t.merchant('Spellings');
    const created = await subscribe(api, 'http://127.0.0.1:9/hooks');
    const spellings = [
      'HTTP://127.0.0.1:9/hooks',
      'Https://127.0.0.1:9/hooks',
      ' http://127.0.0.1:9/hooks',
      '\thttp://127.0.0.1:9/hooks',
      'http:/127.0.0.1:9/hooks',
      'http:127.0.0.1:9/hooks',
      'http:\\\\127.0.0.1:9\\hooks',
      'http:///nohost',
    ];
    for (const url of spellings) {
      const post = await api.post('/webhook-endpoints', { url });
      const put = await api.put(`/webhook-endpoints/${created.id}`, { url, enabled: true });
      for (const res of [post, put]) {
        expect({ url, status: res.status, type: res.body.type }).toEqual({
          url,
          status: 400,
          type: '/problems/validation-failed',
        });
      }
    }
  });

  it('stores the URL as the parser reads it', async () => {
    const api = await t.merchant('Normalised');
    const created = await subscribe(api, 'http://2130706433:9/a/../hooks?x=1');
    expect(created).toMatchObject({ url: 'http://127.0.0.1:9/hooks?x=1' });
  });
});

describe('how much one merchant may take', () => {
  it(`refuses an endpoint past WEBHOOK_MAX_ENDPOINTS (409), even when they are made at once`, async () => {
    const api = await t.merchant('Many endpoints');
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        api.post('/webhook-endpoints', { url: `http://127.0.0.1:9/hooks/${i}` }),
      ),
    );
    expect(answers.filter((r) => r.status === 201)).toHaveLength(3);
    const refused = answers.filter((r) => r.status === 409);
    expect(refused).toHaveLength(3);
    expect(refused[0].body).toMatchObject({ type: '/problems/webhook-endpoint-limit', limit: 3 });
    // One deleted, one may be added.
    await api.delete(`/webhook-endpoints/${answers.find((r) => r.status === 201)!.body.id}`);
    expect((await api.post('/webhook-endpoints', { url: 'http://127.0.0.1:9/again' })).status).toBe(
      201,
    );
  });

  it("gives one merchant's hanging endpoints a few sending slots, never all: another's event goes out meanwhile", async () => {
    const wide = await startInstance(t.databaseUrl, {
      ...SETTINGS,
      WEBHOOK_MAX_ENDPOINTS: '60',
      WEBHOOK_TIMEOUT_MS: '600',
    });
    try {
      const hanging = await fakeEndpoint('hang');
      const b = wide.client(await t.merchant('Hanging endpoints'));
      const bEndpoints = [];
      for (let i = 0; i < 24; i++) bEndpoints.push(await subscribe(b, `${hanging.url}/${i}`));
      const a = wide.client(await t.merchant('Healthy endpoint'));
      const aEndpoint = await subscribe(a, receiver.url);
      receiver.secrets.push(aEndpoint.secret);
      await b.createAccount(); // 24 deliveries to endpoints that never answer
      await a.createAccount(); // then one to an endpoint that answers at once

      await dispatch(wide.app);

      // B's tries each took the whole timeout; A's was sent beside them, not after.
      const { rows } = await t.db.query<{ endpointId: string }>(
        `SELECT endpoint_id AS "endpointId" FROM webhook_attempts
          WHERE endpoint_id = ANY ($1) ORDER BY id`,
        [[aEndpoint.id, ...bEndpoints.map((e) => e.id)]],
      );
      expect(rows).toHaveLength(25);
      expect(rows[0].endpointId).toBe(aEndpoint.id);
      // B never held more than its eight slots, nor an endpoint more than two.
      expect(hanging.maxOpen).toBeLessThanOrEqual(8);
      expect(hanging.maxOpen).toBeGreaterThan(1);
      expect(hanging.received).toBe(24);
      // Their second tries are due at once: not for the passes of the tests below.
      for (const endpoint of bEndpoints) await b.delete(`/webhook-endpoints/${endpoint.id}`);
    } finally {
      await wide.close();
    }
  }, 30_000);
});

describe('a pass on shutdown', () => {
  it('leases nothing more once stopping, and ends when what it sends has ended', async () => {
    const hanging = await fakeEndpoint('hang');
    const api = await t.merchant('Shutting down');
    const endpoint = await subscribe(api, hanging.url);
    await api.createAccount();
    const stopping = new AbortController();
    const pass = t.app.get(WebhookDispatcher).dispatchDue(stopping.signal);
    await hanging.untilOpen(1);
    await api.createAccount(); // due now, but the instance is stopping
    stopping.abort();
    await hanging.close(); // the endpoint hangs up: the send in flight ends

    expect(await pass).toBe(1);
    expect(hanging.received).toBe(1);
    const { rows } = await t.db.query(
      `SELECT status, attempts FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY attempts`,
      [endpoint.id],
    );
    expect(rows).toEqual([
      { status: 'pending', attempts: 0 },
      { status: 'pending', attempts: 1 },
    ]);
    await api.delete(`/webhook-endpoints/${endpoint.id}`);
  });
});

describe("what an endpoint's answers do to it", () => {
  it('disables an endpoint that answers 410 Gone, and says so with a webhook_endpoint.disabled event to the others', async () => {
    const gone = await fakeEndpoint({ status: 410 });
    const api = await t.merchant('Gone');
    const left = await subscribe(api, gone.url);
    const stays = await subscribe(api, receiver.url);
    receiver.secrets.push(stays.secret);
    await api.createAccount();

    await dispatch();

    const shown = await api.get(`/webhook-endpoints/${left.id}`);
    expect(shown.body).toMatchObject({ enabled: false, disabledReason: 'gone' });
    const events = (await api.get('/events')).body.data as Array<{
      type: string;
      data: { object: { id: string } };
    }>;
    const disabled = events.find((e) => e.type === 'webhook_endpoint.disabled');
    expect(disabled?.data.object).toMatchObject({ id: left.id, disabledReason: 'gone' });
    await dispatch(); // the disabled event, to the endpoint that stays, not to the one gone
    expect(gone.received).toBe(1);
    expect((await triesOf(stays.id)).map((a) => a.statusCode)).toEqual([204, 204]);
    // The merchant's PUT is the last word: enabled again, no reason left.
    const back = await api.put(`/webhook-endpoints/${left.id}`, { url: gone.url, enabled: true });
    expect(back.body).toMatchObject({ enabled: true, disabledReason: null });
  });

  it("waits as long as an endpoint's Retry-After asks (within six hours)", async () => {
    const busy = await fakeEndpoint({ status: 503, headers: { 'Retry-After': '120' } });
    const api = await t.merchant('Busy');
    const endpoint = await subscribe(api, busy.url);
    await api.createAccount();

    await dispatch();

    const { rows } = await t.db.query<{ wait: number }>(
      `SELECT extract(epoch FROM next_attempt_at - now())::float8 AS wait
         FROM webhook_deliveries WHERE endpoint_id = $1`,
      [endpoint.id],
    );
    expect(rows[0].wait).toBeGreaterThan(100); // WEBHOOK_RETRY_SECONDS is 0 here
    expect(rows[0].wait).toBeLessThanOrEqual(120);
  });

  it('disables an endpoint that has failed without a 2xx for WEBHOOK_DISABLE_AFTER_SECONDS', async () => {
    const broken = await fakeEndpoint({ status: 500 });
    const api = await t.merchant('Failing');
    const endpoint = await subscribe(api, broken.url);
    await api.createAccount();
    await dispatch();
    expect((await api.get(`/webhook-endpoints/${endpoint.id}`)).body.enabled).toBe(true);

    // An hour of failures later (its first failure moved back), the next failed try disables it.
    await t.db.query(
      `UPDATE webhook_endpoints SET failing_since = now() - interval '61 minutes' WHERE id = $1`,
      [endpoint.id],
    );
    await dispatch();

    expect((await api.get(`/webhook-endpoints/${endpoint.id}`)).body).toMatchObject({
      enabled: false,
      disabledReason: 'failing',
    });
  });

  it('recovers what an endpoint missed since a time: its given-up deliveries go again, once', async () => {
    const flaky = await fakeEndpoint({ status: 500 });
    const api = await t.merchant('Recovering');
    const endpoint = await subscribe(api, flaky.url);
    await api.createAccount();
    await api.createAccount();
    await dispatch();
    await dispatch(); // WEBHOOK_MAX_ATTEMPTS=2: both given up
    const { rows } = await t.db.query(
      `SELECT status FROM webhook_deliveries WHERE endpoint_id = $1`,
      [endpoint.id],
    );
    expect(rows.map((r) => r.status)).toEqual(['failed', 'failed']);
    flaky.behaviour = { status: 204 };

    const since = new Date(Date.now() - 3_600_000).toISOString();
    const recovered = await api.post(`/webhook-endpoints/${endpoint.id}/recover`, { since });
    const again = await api.post(`/webhook-endpoints/${endpoint.id}/recover`, { since });
    await dispatch();

    expect(recovered.status).toBe(202);
    expect(recovered.body).toMatchObject({
      object: 'recovery',
      endpointId: endpoint.id,
      deliveries: 2,
    });
    expect(again.body.deliveries).toBe(0);
    expect(flaky.received).toBe(6);
    const tooFar = new Date(Date.now() - 8 * 86_400_000).toISOString();
    const refused = await api.post(`/webhook-endpoints/${endpoint.id}/recover`, { since: tooFar });
    expect(refused.status).toBe(400);
  });
});
