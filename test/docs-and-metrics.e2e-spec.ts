import { describe, expect, it } from '@jest/globals';
import SwaggerParser from '@apidevtools/swagger-parser';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { parse } from 'yaml';
import { openApiPath } from './support/openapi.js';
import { isCitus, slowCharges, untilAdvisoryLocks } from './support/db-faults.js';
import { startTestApp, useTestApp } from './support/test-app.js';

const t = useTestApp();

describe('openapi.yaml', () => {
  it('is a valid OpenAPI 3.1 document (swagger-parser: schema and $refs)', async () => {
    const doc = parse(readFileSync(openApiPath, 'utf8')) as Parameters<
      typeof SwaggerParser.validate
    >[0];
    await expect(SwaggerParser.validate(doc)).resolves.toMatchObject({ openapi: '3.1.0' });
  });
});

describe('served docs', () => {
  it('serves the committed openapi.yaml as it is, and as JSON, without an API key', async () => {
    const committed = readFileSync(openApiPath, 'utf8');
    const yaml = await request(t.baseUrl).get('/openapi.yaml');
    const json = await request(t.baseUrl).get('/openapi.json');

    expect(yaml.status).toBe(200);
    expect(yaml.headers['content-type']).toMatch(/^application\/yaml/);
    expect(yaml.text).toBe(committed);
    expect(json.status).toBe(200);
    expect(json.body).toEqual(parse(committed));
  });

  it('serves interactive docs whose assets are served too', async () => {
    const page = await request(t.baseUrl).get('/docs');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    // The page's script is a file of its own (its CSP runs no inline script).
    expect(page.text).not.toMatch(/<script>/);
    expect((await request(t.baseUrl).get('/docs/assets/docs.js')).text).toContain('/openapi.json');
    const assets = [...page.text.matchAll(/(?:src|href)="(\/docs\/assets\/[^"]+)"/g)].map(
      (m) => m[1],
    );
    expect(assets.length).toBeGreaterThanOrEqual(3);
    for (const asset of assets) expect((await request(t.baseUrl).get(asset)).status).toBe(200);
  });
});

describe('/metrics', () => {
  async function metric(name: string, labels: Record<string, string>): Promise<number> {
    const text = (await request(t.baseUrl).get('/metrics')).text;
    const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    const line = text
      .split('\n')
      .find(
        (l) =>
          (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) &&
          wanted.every((w) => l.includes(w)),
      );
    return line ? Number(line.split(' ').at(-1)) : 0;
  }

  const snapshot = async () => ({
    executed: await metric('idempotency_outcomes_total', { outcome: 'executed' }),
    replayed: await metric('idempotency_outcomes_total', { outcome: 'replayed' }),
    reused: await metric('idempotency_outcomes_total', { outcome: 'reused' }),
    missing: await metric('idempotency_outcomes_total', { outcome: 'missing' }),
    invalid: await metric('idempotency_outcomes_total', { outcome: 'invalid' }),
    charges: await metric('http_requests_total', {
      method: 'POST',
      route: '/charges',
      status: '201',
    }),
    gets: await metric('http_requests_total', {
      method: 'GET',
      route: '/charges/:id',
      status: '200',
    }),
  });

  it('counts requests by route pattern and status, and idempotency outcomes', async () => {
    const account = await t.api.fundedAccount(1_000);
    const before = await snapshot();
    const key = randomUUID();
    const charge = await t.api.charge(account, 10, key);
    await t.api.charge(account, 10, key);
    await t.api.charge(account, 11, key);
    await t.api.charge(account, 10, undefined);
    await t.api.charge(account, 10, '"bad');
    await t.api.get(`/charges/${charge.body.id}`);

    const res = await request(t.baseUrl).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toContain('http_request_duration_seconds_bucket');
    expect(res.text).toContain('process_cpu_user_seconds_total');
    expect(res.text).not.toContain(charge.body.id); // route patterns, never ids
    expect(await snapshot()).toEqual({
      executed: before.executed + 1,
      replayed: before.replayed + 1,
      reused: before.reused + 1,
      missing: before.missing + 1,
      invalid: before.invalid + 1,
      charges: before.charges + 2,
      gets: before.gets + 1,
    });
  });

  it('tells how many idempotency keys are kept and the bytes they take, from PostgreSQL statistics', async () => {
    const account = await t.api.fundedAccount(1_000);
    const { rows } = await t.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM idempotency_keys',
    );
    for (let i = 0; i < 5; i++) await t.api.charge(account, 1, randomUUID());
    const kept = rows[0].n + 5;

    // A backend reports its statistics at most once a second, and when it then goes
    // idle, up to ten seconds later; a scrape shows what the previous one read. Poll.
    let stored = 0;
    for (const deadline = Date.now() + 20_000; stored < kept && Date.now() < deadline;) {
      stored = await metric('idempotency_keys_stored', {});
      if (stored < kept) await new Promise((r) => setTimeout(r, 100));
    }
    expect(stored).toBe(kept);
    const bytes = await metric('idempotency_keys_bytes', {});
    // On Citus, the shards' size: the coordinator's table is an empty shell.
    const size = (await isCitus(t.db)) ? 'citus_total_relation_size' : 'pg_total_relation_size';
    const { rows: sized } = await t.db.query<{ bytes: string }>(
      `SELECT ${size}('idempotency_keys') AS bytes`,
    );
    expect(bytes).toBe(Number(sized[0].bytes));
  });

  it('answers a scrape without waiting for the database: not even when every pooled connection is busy', async () => {
    const busy = await startTestApp({ env: { DB_POOL_SIZE: '1' } });
    try {
      await slowCharges(busy.db, { 901: 2 });
      const merchant = await busy.merchant();
      const account = await merchant.fundedAccount(1_000);
      await request(busy.baseUrl).get('/metrics'); // a first scrape starts the first read

      const order: string[] = [];
      const charge = merchant.charge(account, 901, randomUUID()).then(() => order.push('charge'));
      await untilAdvisoryLocks(busy.db, (n) => n === 1); // the charge holds the only connection
      const scrape = await request(busy.baseUrl).get('/metrics');
      order.push('scrape');
      await charge;

      expect(scrape.status).toBe(200);
      expect(scrape.text).toMatch(/^idempotency_keys_stored \d+$/m);
      expect(order).toEqual(['scrape', 'charge']);
    } finally {
      await busy.close();
    }
  });

  it('is off (404) with METRICS_ENABLED=false', async () => {
    const off = await startTestApp({ env: { METRICS_ENABLED: 'false' } });
    try {
      expect((await request(off.baseUrl).get('/metrics')).status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
