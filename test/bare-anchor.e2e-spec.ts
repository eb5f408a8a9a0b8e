import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { startBareApi } from '../bench/bare-api.js';
import { freePort } from '../src/common/free-port.js';
import { connectionSettings, loadConfig } from '../src/config/config.js';
import { connectionEnv } from './support/databases.js';
import { TEST_SETTINGS, useTestApp } from './support/test-app.js';

/**
 * The bench's bare anchor (bench/bare-api.ts) stands for "the same charge without
 * NestJS": its figures mean something only while it sends what the service sends
 * and leaves the rows the service leaves. Held here, so a change to either shows.
 */
const t = useTestApp({
  env: {
    // Nothing but the requests' own statements on the pool while they are recorded.
    WEBHOOK_DISPATCH_INTERVAL_MS: '0',
    COMPLETER_INTERVAL_SECONDS: '0',
    IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0',
    EVENTS_PURGE_INTERVAL_SECONDS: '0',
  },
});
let bare: { url: string; close(): Promise<void> };

beforeAll(async () => {
  const port = await freePort();
  // As the app connects: directly, or through PgBouncer (.ci/run's pass) with its settings.
  const connection = connectionSettings(loadConfig({ ...TEST_SETTINGS, ...connectionEnv() }));
  const server = await startBareApi(t.databaseUrl, port, 2, connection);
  bare = { url: `http://127.0.0.1:${port}`, close: () => server.close() };
});
afterAll(() => bare.close());

function bareCharge(body: object, key: string) {
  return fetch(`${bare.url}/charges`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${t.api.apiKey}`,
      'content-type': 'application/json',
      'idempotency-key': key,
    },
    body: JSON.stringify(body),
  });
}

/** The texts of the statements node-postgres sends while `work` runs, in order. */
async function statementsOf(work: () => Promise<unknown>): Promise<string[]> {
  const sent: string[] = [];
  const query = pg.Client.prototype.query;
  const spy = function (this: pg.Client, ...args: unknown[]) {
    const [config] = args as [string | { text: string }];
    sent.push((typeof config === 'string' ? config : config.text).replace(/\s+/g, ' ').trim());
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  };
  pg.Client.prototype.query = spy as typeof query;
  try {
    await work();
  } finally {
    pg.Client.prototype.query = query;
  }
  return sent;
}

/** What a charge left in the tables, its ids and times left out. */
async function rowsOf(chargeId: string) {
  const query = async (sql: string) =>
    (await t.db.query(sql, [t.api.merchantId, chargeId])).rows as Array<Record<string, unknown>>;
  return {
    charge: await query(
      `SELECT account_id, amount, currency, description, metadata, status, failure_code,
              amount_refunded FROM charges WHERE merchant_id = $1 AND id = $2`,
    ),
    ledger: await query(
      `SELECT account_id, type, amount FROM ledger_entries WHERE merchant_id = $1 AND source_id = $2`,
    ),
    events: await query(
      `SELECT type, data #- '{object,id}' #- '{object,createdAt}' AS data FROM events
        WHERE merchant_id = $1 AND data -> 'object' ->> 'id' = $2`,
    ),
    key: await query(
      `SELECT request_method, request_path, response_status, response_content_type,
              response_body::jsonb #- '{id}' #- '{createdAt}' AS body,
              response_location = '/charges/' || $2 AS location_names_it,
              expires_at - created_at AS lifetime
         FROM idempotency_keys WHERE merchant_id = $1 AND response_body::jsonb ->> 'id' = $2`,
    ),
  };
}

describe('the bare anchor of the bench', () => {
  it('sends the statements the service sends for a fresh charge, in the same order', async () => {
    const account = await t.api.fundedAccount(1_000);
    // Each remembers the merchant after its first request: count the second.
    await t.api.charge(account, 1, randomUUID());
    await bareCharge({ accountId: account, amount: 1, currency: 'USD' }, randomUUID());

    const service = await statementsOf(() => t.api.charge(account, 5, randomUUID()));
    const anchor = await statementsOf(() =>
      bareCharge({ accountId: account, amount: 5, currency: 'USD' }, randomUUID()),
    );

    expect(service[0]).toMatch(/^BEGIN/);
    expect(service.at(-1)).toBe('COMMIT');
    expect(service).toHaveLength(7);
    expect(anchor).toEqual(service);
  });

  it('leaves the rows and answers the body the service does, and replays it from memory', async () => {
    const account = await t.api.fundedAccount(1_000);
    const served = await t.api.charge(account, 7, randomUUID());
    const key = randomUUID();
    const first = await bareCharge({ accountId: account, amount: 7, currency: 'USD' }, key);
    const body = (await first.json()) as Record<string, unknown>;

    expect(first.status).toBe(201);
    expect(first.headers.get('location')).toBe(`/charges/${String(body.id)}`);
    const { id: _a, createdAt: _b, ...same } = served.body as Record<string, unknown>;
    expect(body).toEqual({ ...same, id: body.id, createdAt: body.createdAt });
    expect(Object.keys(body)).toEqual(Object.keys(served.body as object));
    expect(await rowsOf(String(body.id))).toEqual(await rowsOf(String(served.body.id)));
    expect(await t.api.balance(account)).toBe(1_000 - 14);

    const again = await bareCharge({ amount: 7, currency: 'USD', accountId: account }, key);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual(body);
    expect(await t.api.balance(account)).toBe(1_000 - 14);
  });
});
