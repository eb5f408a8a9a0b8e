import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { EventsPurger } from '../src/events/events-purger.js';
import { WebhookDispatcher } from '../src/webhooks/webhook-dispatcher.js';
import { inject } from './support/db-faults.js';
import { startTestReceiver, type TestReceiver } from './support/receiver.js';
import { type ApiClient, useTestApp } from './support/test-app.js';

/**
 * Events that leave exactly once: the outbox written with each change, signed
 * deliveries at least once, and the reference receiver applying each once. The
 * dispatcher is driven by hand here (its timer off), so that each try is seen.
 */
const t = useTestApp({
  env: {
    WEBHOOK_DISPATCH_INTERVAL_MS: '0',
    WEBHOOK_RETRY_SECONDS: '0',
    WEBHOOK_MAX_ATTEMPTS: '3',
    WEBHOOK_TIMEOUT_MS: '1000',
  },
});
let receiver: TestReceiver;
beforeAll(async () => {
  receiver = await startTestReceiver();
});
afterAll(() => receiver.close());
beforeEach(() => {
  for (const key of Object.keys(receiver.faults))
    delete (receiver.faults as Record<string, unknown>)[key];
  Object.assign(receiver.svix, { verified: 0, refused: 0 });
});

const dispatch = () => t.app.get(WebhookDispatcher).dispatchDue();

/** A merchant of its own, with the receiver registered and trusted. */
async function subscribed(): Promise<{ api: ApiClient; endpoint: { id: string; secret: string } }> {
  const api = await t.merchant('Subscriber');
  const res = await api.post('/webhook-endpoints', { url: receiver.url, description: 'reference' });
  receiver.secrets.push(res.body.secret);
  return { api, endpoint: res.body };
}

const deliveries = async (eventId: string) =>
  (
    await t.db.query(`SELECT status, attempts FROM webhook_deliveries WHERE event_id = $1`, [
      eventId,
    ])
  ).rows;

const inbox = async (eventId: string) =>
  Number(
    (await receiver.db.query('SELECT count(*) AS n FROM inbox WHERE webhook_id = $1', [eventId]))
      .rows[0].n,
  );

async function latestEvent(api: ApiClient, type: string) {
  const events = (await api.get('/events?limit=100')).body.data as Array<{
    id: string;
    type: string;
    createdAt: string;
  }>;
  return events.find((e) => e.type === type)!;
}

describe('the outbox', () => {
  it('writes an event with each change, in its transaction: charges (both outcomes), deposits, refunds, accounts', async () => {
    const api = await t.merchant('Outbox');
    const account = await api.fundedAccount(1_000);
    const charge = await api.charge(account, 300, randomUUID());
    const failed = await api.charge(account, 5_000, randomUUID());
    await api.post(`/charges/${charge.body.id}/refunds`, { amount: 100 }, randomUUID());
    await api.put(`/accounts/${account}`, { name: 'Renamed' });
    await api.put(`/accounts/${account}`, { name: 'Renamed' }); // no change: no event

    const events = (await api.get('/events')).body.data as Array<{
      type: string;
      data: { object: { id: string } };
    }>;

    expect(events.map((e) => e.type)).toEqual([
      'account.updated',
      'refund.succeeded',
      'charge.failed',
      'charge.succeeded',
      'deposit.succeeded',
      'account.created',
    ]);
    expect(events[3].data.object).toEqual(charge.body);
    expect(events[2].data.object.id).toBe(failed.body.chargeId);
    const one = await api.get(`/events/${(events[3] as unknown as { id: string }).id}`);
    expect(one.body).toEqual(events[3]);
    expect((await (await t.merchant('Other')).get(`/events/${one.body.id}`)).status).toBe(404);
  });

  it('writes none for a change that rolled back', async () => {
    const api = await t.merchant('Rollback');
    const account = await api.fundedAccount(1_000);
    const key = randomUUID();
    await inject(
      t.db,
      `CREATE OR REPLACE FUNCTION fail_this_key() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.key = '${key}' THEN RAISE EXCEPTION 'injected'; END IF;
        RETURN NEW;
      END $$`,
      `CREATE TRIGGER fail_this_key BEFORE INSERT ON idempotency_keys
        FOR EACH ROW EXECUTE FUNCTION fail_this_key()`,
    );
    try {
      expect((await api.charge(account, 100, key)).status).toBe(500);
    } finally {
      await t.db.query('DROP TRIGGER fail_this_key ON idempotency_keys');
    }
    const types = ((await api.get('/events')).body.data as Array<{ type: string }>).map(
      (e) => e.type,
    );
    expect(types).not.toContain('charge.succeeded');
  });
});

describe('webhook endpoints', () => {
  it('shows the signing secret once, refuses URLs that are not http(s) or carry credentials, and disables and deletes', async () => {
    const api = await t.merchant('Endpoints');
    // Loopback only, even for an endpoint nothing is sent to (it has no events).
    const created = await api.post('/webhook-endpoints', { url: 'http://127.0.0.1:9/hooks' });
    const shown = await api.get(`/webhook-endpoints/${created.body.id}`);

    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ object: 'webhook_endpoint', enabled: true });
    expect(created.body.secret).toMatch(/^whsec_[A-Za-z0-9+/=]{32}$/);
    expect(shown.body.secret).toBeUndefined();
    expect(
      (await api.get('/webhook-endpoints')).body.data.map((e: { id: string }) => e.id),
    ).toEqual([created.body.id]);
    for (const url of [
      'ftp://example.com/x',
      'https://user:pw@example.com/x',
      '/relative',
      'nope',
    ]) {
      const res = await api.post('/webhook-endpoints', { url });
      expect({ url, status: res.status }).toEqual({ url, status: 400 });
    }

    const disabled = await api.put(`/webhook-endpoints/${created.body.id}`, {
      url: 'http://127.0.0.1:9/hooks',
      enabled: false,
    });
    expect(disabled.body.enabled).toBe(false);
    expect((await api.delete(`/webhook-endpoints/${created.body.id}`)).status).toBe(204);
    expect((await api.delete(`/webhook-endpoints/${created.body.id}`)).status).toBe(204);
    expect((await api.get(`/webhook-endpoints/${created.body.id}`)).status).toBe(404);
    expect((await api.get('/webhook-endpoints')).body.data).toEqual([]);
  });
});

describe('delivery', () => {
  // Every request the dispatcher made was signed so that svix's own verifier, too,
  // accepts it (test/support/receiver.ts), not only the code that signs.
  afterEach(() => expect(receiver.svix.refused).toBe(0));

  it('signs as Standard Webhooks, with the event id as webhook-id, and the receiver applies it once', async () => {
    const { api } = await subscribed();
    const account = await api.fundedAccount(1_000);
    await api.charge(account, 250, randomUUID());
    const event = await latestEvent(api, 'charge.succeeded');

    expect(await dispatch()).toBeGreaterThanOrEqual(3); // account, deposit, charge
    expect(await deliveries(event.id)).toEqual([{ status: 'delivered', attempts: 1 }]);
    expect(await inbox(event.id)).toBe(1);
    const totals = await receiver.db.query(
      'SELECT credited, debited, events FROM account_totals WHERE account_id = $1',
      [account],
    );
    expect(totals.rows[0]).toEqual({ credited: '1000', debited: '250', events: 2 });
    const attempts = await t.db.query(
      'SELECT status_code, latency_ms FROM webhook_attempts WHERE event_id = $1',
      [event.id],
    );
    expect(attempts.rows).toEqual([{ status_code: 204, latency_ms: expect.any(Number) }]);
    expect(receiver.svix.verified).toBeGreaterThanOrEqual(3);
  });

  it('tries again after a 5xx, and after an answer lost once the event was applied; the duplicate is ignored', async () => {
    const { api } = await subscribed();
    const account = await api.fundedAccount(1_000);
    const depositEvent = await latestEvent(api, 'deposit.succeeded');

    receiver.faults.failRate = 1;
    await dispatch();
    expect(await deliveries(depositEvent.id)).toEqual([{ status: 'pending', attempts: 1 }]);
    expect(await inbox(depositEvent.id)).toBe(0);

    receiver.faults.failRate = 0;
    receiver.faults.dropAfterApplyRate = 1;
    await dispatch();
    expect(await deliveries(depositEvent.id)).toEqual([{ status: 'pending', attempts: 2 }]);
    expect(await inbox(depositEvent.id)).toBe(1); // applied; the answer was lost

    receiver.faults.dropAfterApplyRate = 0;
    await dispatch();
    expect(await deliveries(depositEvent.id)).toEqual([{ status: 'delivered', attempts: 3 }]);
    expect(await inbox(depositEvent.id)).toBe(1);
    const totals = await receiver.db.query(
      'SELECT credited FROM account_totals WHERE account_id = $1',
      [account],
    );
    expect(totals.rows[0].credited).toBe('1000'); // once, not twice

    // Every try is recorded, and shown: newest first.
    const shown = await api.get(`/events/${depositEvent.id}/deliveries`);
    expect(shown.status).toBe(200);
    expect(shown.body).toEqual({
      object: 'list',
      hasMore: false,
      data: [
        {
          object: 'webhook_delivery',
          eventId: depositEvent.id,
          endpointId: expect.stringMatching(/^we_/),
          status: 'delivered',
          attemptCount: 3,
          nextAttemptAt: null,
          deliveredAt: expect.stringMatching(/Z$/),
          attempts: [
            expect.objectContaining({ statusCode: 204, error: null }),
            expect.objectContaining({ statusCode: null, error: expect.any(String) }),
            expect.objectContaining({ statusCode: 503, error: 'answered 503' }),
          ],
        },
      ],
    });
    for (const attempt of shown.body.data[0].attempts) {
      expect(attempt.latencyMs).toBeGreaterThanOrEqual(0);
      expect(Date.parse(attempt.createdAt)).toBeGreaterThan(Date.parse(depositEvent.createdAt) - 1);
    }
    expect((await api.get('/events/evt_unknown/deliveries')).status).toBe(404);
  });

  it('gives up after WEBHOOK_MAX_ATTEMPTS, and counts it in /metrics', async () => {
    const api = await t.merchant('Untrusted');
    await api.post('/webhook-endpoints', { url: receiver.url }); // its secret is never given to the receiver: 401
    await api.createAccount();
    const event = await latestEvent(api, 'account.created');

    for (let i = 0; i < 4; i++) await dispatch();

    expect(await deliveries(event.id)).toEqual([{ status: 'failed', attempts: 3 }]);
    const text = (await request(t.baseUrl).get('/metrics')).text;
    expect(text).toMatch(/^webhook_deliveries_total\{outcome="given_up"\} [1-9]/m);
    expect(text).toMatch(/^webhook_deliveries_total\{outcome="retry"\} [1-9]/m);
    // svix refused them as the receiver did: signed with a secret it was never given.
    expect(receiver.svix).toEqual({ verified: 0, refused: 3 });
    receiver.svix.refused = 0;
  });

  it('redelivers on demand (202), once a minute per event at most (429 before); the receiver applies it once', async () => {
    const { api } = await subscribed();
    await api.createAccount();
    const event = await latestEvent(api, 'account.created');
    await dispatch();

    const first = await api.post(`/events/${event.id}/redeliver`);
    const again = await api.post(`/events/${event.id}/redeliver`);
    await dispatch();

    expect(first.status).toBe(202);
    expect(first.body).toEqual({ object: 'redelivery', eventId: event.id, deliveries: 1 });
    expect(again.status).toBe(429);
    expect(again.body.type).toBe('/problems/too-many-requests');
    expect(Number(again.headers['retry-after'])).toBeGreaterThan(50);
    expect(await deliveries(event.id)).toEqual([{ status: 'delivered', attempts: 1 }]);
    const tries = async () =>
      (
        await t.db.query('SELECT count(*)::int AS n FROM webhook_attempts WHERE event_id = $1', [
          event.id,
        ])
      ).rows[0].n;
    expect(await tries()).toBe(2);
    // A minute later (the last redelivery's time moved back), it may be sent again.
    await t.db.query(
      `UPDATE webhook_deliveries SET redelivered_at = now() - interval '61 seconds' WHERE event_id = $1`,
      [event.id],
    );
    expect((await api.post(`/events/${event.id}/redeliver`)).status).toBe(202);
    await dispatch();
    expect(await tries()).toBe(3);
    expect(await inbox(event.id)).toBe(1);
    expect((await api.post('/events/evt_unknown/redeliver')).status).toBe(404);
  });

  it('sends nothing to a disabled endpoint: what was queued waits for it, what happens meanwhile is not queued', async () => {
    const { api, endpoint } = await subscribed();
    await api.createAccount();
    const queued = await latestEvent(api, 'account.created');
    const disable = (enabled: boolean) =>
      api.put(`/webhook-endpoints/${endpoint.id}`, { url: receiver.url, enabled });
    await disable(false);
    const meanwhile = (await api.post('/accounts', { name: 'Meanwhile', currency: 'USD' })).body.id;
    const meanwhileEvent = (await api.get('/events')).body.data[0] as { id: string };

    await dispatch();
    expect(await inbox(queued.id)).toBe(0);
    await disable(true);
    await dispatch();

    expect(await inbox(queued.id)).toBe(1);
    expect(meanwhile).toMatch(/^acct_/);
    expect(await deliveries(meanwhileEvent.id)).toEqual([]);
    await api.post(`/events/${meanwhileEvent.id}/redeliver`); // sent on demand
    await dispatch();
    expect(await inbox(meanwhileEvent.id)).toBe(1);
  });

  it('signs with the old secret and the new one during a rotation, so either side may switch first', async () => {
    const api = await t.merchant('Rotating');
    const created = await api.post('/webhook-endpoints', { url: receiver.url });
    const key = randomUUID();
    const rotated = await api.post(`/webhook-endpoints/${created.body.id}/rotate-secret`, {}, key);
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(created.body.secret);
    // A retried rotation replays the first one's secret, and adds no third.
    const retried = await api.post(`/webhook-endpoints/${created.body.id}/rotate-secret`, {}, key);
    expect(retried.headers['idempotent-replayed']).toBe('true');
    expect(retried.body.secret).toBe(rotated.body.secret);
    const { rows } = await t.db.query(
      `SELECT jsonb_array_length(secrets) AS n FROM webhook_endpoints WHERE id = $1`,
      [created.body.id],
    );
    expect(rows[0].n).toBe(2);

    // The receiver knows only the old secret: the old signature still verifies.
    receiver.secrets.push(created.body.secret);
    await api.createAccount();
    await dispatch();
    expect(await inbox((await latestEvent(api, 'account.created')).id)).toBe(1);
    // Only the new one: so does the new signature.
    receiver.secrets.splice(receiver.secrets.indexOf(created.body.secret), 1, rotated.body.secret);
    await api.post('/accounts', { name: 'Second', currency: 'USD' });
    await dispatch();
    const latest = (await api.get('/events')).body.data[0] as { id: string };
    expect(await inbox(latest.id)).toBe(1);
  });
});

describe('the reference receiver', () => {
  it('refuses a bad signature and a stale timestamp with 401, and applies nothing', async () => {
    const secret = `whsec_${Buffer.alloc(24, 7).toString('base64')}`;
    receiver.secrets.push(secret);
    const body = JSON.stringify({
      type: 'deposit.succeeded',
      data: { object: { accountId: 'acct_x', amount: 5 } },
    });
    const send = (id: string, at: Date, signature: string) =>
      fetch(receiver.url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body,
      });
    const now = new Date();
    const stale = new Date(now.getTime() - 10 * 60_000);

    expect((await send('msg_forged', now, 'v1,AAAA')).status).toBe(401);
    expect(
      (await send('msg_stale', stale, new Webhook(secret).sign('msg_stale', stale, body))).status,
    ).toBe(401);
    const good = await send('msg_good', now, new Webhook(secret).sign('msg_good', now, body));
    expect(good.status).toBe(204);
    expect(await inbox('msg_forged')).toBe(0);
    expect(await inbox('msg_stale')).toBe(0);
    expect(await inbox('msg_good')).toBe(1);
  });
});

describe('retention and metrics', () => {
  it('purges events past EVENTS_TTL_SECONDS that are done, keeps one still waiting, and tells the age of the oldest waiting', async () => {
    const { api, endpoint } = await subscribed();
    await api.createAccount();
    const waiting = await latestEvent(api, 'account.created');
    // Queued, then its endpoint disabled: it waits.
    await api.put(`/webhook-endpoints/${endpoint.id}`, { url: receiver.url, enabled: false });
    const other = await t.merchant('Done');
    await other.createAccount(); // no endpoint: nothing to deliver
    const done = await latestEvent(other, 'account.created');
    await t.db.query(
      `UPDATE events SET created_at = now() - interval '31 days' WHERE id = ANY($1)`,
      [[waiting.id, done.id]],
    );
    await t.db.query(
      `UPDATE webhook_deliveries SET created_at = now() - interval '1 hour' WHERE event_id = $1`,
      [waiting.id],
    );

    await t.app.get(EventsPurger).purgeExpired();

    expect((await other.get(`/events/${done.id}`)).status).toBe(404);
    expect((await api.get(`/events/${waiting.id}`)).status).toBe(200);
    // A scrape shows what the previous one read: poll.
    let age = 0;
    for (let i = 0; i < 50 && age < 3_500; i++) {
      const text = (await request(t.baseUrl).get('/metrics')).text;
      age = Number(/^webhook_oldest_undelivered_seconds (\S+)$/m.exec(text)?.[1] ?? 0);
      if (age < 3_500) await new Promise((r) => setTimeout(r, 50));
    }
    expect(age).toBeGreaterThanOrEqual(3_500);
  });
});
