import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { Agent, request as httpRequest } from 'node:http';
import { ledgerViolations } from '../support/invariants.js';
import { useTestApp } from '../support/test-app.js';
import { ITERATIONS, report, SEED } from './chaos-support.js';

/**
 * Property-based fuzzing of every route with valid, nearly valid and hostile
 * input. Properties: never a 5xx; every error is problem+json with a stable code;
 * a rejected request changes nothing; the books stay sound.
 */
const t = useTestApp();
let account: string;
let charge: string;
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

beforeAll(async () => {
  account = await t.api.fundedAccount(1_000_000);
  charge = (await t.api.charge(account, 50_000, 'fuzz-seed-charge')).body.id as string;
});
afterAll(() => agent.destroy());

interface Raw {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

/** node:http, not fetch: it sends any header byte that HTTP allows, and any body. */
function send(req: Raw): Promise<{ status: number; contentType: string; body: string }> {
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      `${t.baseUrl}${req.path}`,
      {
        method: req.method,
        headers: { Authorization: `Bearer ${t.api.apiKey}`, ...req.headers },
        agent,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type'] ?? ''),
            body,
          }),
        );
      },
    );
    r.on('error', reject);
    if (req.body !== undefined) r.write(req.body);
    r.end();
  });
}

async function rowCount(): Promise<number> {
  const { rows } = await t.db.query<{ n: number }>(
    `SELECT ((SELECT count(*) FROM accounts) + (SELECT count(*) FROM charges) + (SELECT count(*) FROM deposits)
           + (SELECT count(*) FROM refunds) + (SELECT count(*) FROM ledger_entries)
           + (SELECT count(*) FROM idempotency_keys))::int AS n`,
  );
  return rows[0].n;
}

// ---- arbitraries --------------------------------------------------------------

/** Characters Node lets a client put in a header value. */
const headerValue = fc
  .string({ unit: 'binary', maxLength: 300 })
  .map((s) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, ''));
const hostileValue = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.constantFrom(
    1e308,
    -1,
    0,
    0.5,
    2 ** 53 + 1,
    1e12 + 1,
    -0,
    '100',
    '',
    'USD',
    null,
    true,
    [],
    {},
  ),
  fc.string({ unit: 'binary', maxLength: 600 }),
  fc.integer(),
);
const validCharge = () =>
  fc.record({
    accountId: fc.constantFrom(account, account, 'acct_missing'),
    amount: fc.integer({ min: 1, max: 100 }),
    currency: fc.constantFrom('USD', 'USD', 'EUR'),
    description: fc.option(fc.string({ maxLength: 50 }), { nil: undefined }),
    metadata: fc.option(
      fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), fc.string({ maxLength: 20 }), {
        maxKeys: 3,
      }),
      { nil: undefined },
    ),
  });
/** A valid body with one field broken, one extra field, or one field missing. */
const nearlyValid = (valid: fc.Arbitrary<Record<string, unknown>>) =>
  fc
    .tuple(
      valid,
      fc.constantFrom('accountId', 'amount', 'currency', 'description', 'metadata', 'extra'),
      hostileValue,
      fc.boolean(),
    )
    .map(([body, field, value, remove]) => {
      const copy: Record<string, unknown> = { ...body };
      if (remove) delete copy[field];
      else copy[field] = value;
      return copy;
    });
const hostileText = fc.oneof(
  fc.constant('['.repeat(5_000) + ']'.repeat(5_000)),
  fc.constant('{"a":'.repeat(100) + '1' + '}'.repeat(100)),
  fc.constant('{"__proto__":{"polluted":true},"amount":1}'),
  fc.constant('{"constructor":{"prototype":{"polluted":true}}}'),
  fc.constant('{"amount":1,"amount":"twice","currency":"USD","accountId":"x"}'),
  fc.constant('{"amount":1e400,"currency":"USD"}'),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.json(),
);
// The weights keep requests that do the work common enough that every seed reaches
// it: 13-15 valid charges in a run of 300 POSTs (with equal weights, 0-4, and a
// seed with none failed the variety check below).
const body = (valid: fc.Arbitrary<Record<string, unknown>>) =>
  fc.oneof(
    { weight: 3, arbitrary: valid.map((b) => JSON.stringify(b)) },
    { weight: 3, arbitrary: nearlyValid(valid).map((b) => JSON.stringify(b) ?? 'null') },
    { weight: 2, arbitrary: hostileText },
  );
const idempotencyKey = fc.oneof(
  { weight: 3, arbitrary: fc.uuid() },
  headerValue,
  fc.constant(undefined),
  fc.uuid().map((u) => `"${u}"`),
);
const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'text/plain',
      'application/json; charset=utf-16',
      'application/x-www-form-urlencoded',
      'application/merge-patch+json',
    ),
  },
  { weight: 1, arbitrary: headerValue },
);
const postPath = () =>
  fc.oneof(
    { weight: 2, arbitrary: fc.constant('/charges') },
    fc.constant('/accounts'),
    fc
      .constantFrom(account, 'acct_missing', '%00', '..', '%FF')
      .map((id) => `/accounts/${id}/deposits`),
    fc.constantFrom(charge, 'ch_missing').map((id) => `/charges/${id}/refunds`),
  );
const postRequest = (): fc.Arbitrary<Raw> =>
  fc
    .record({
      path: postPath(),
      body: body(validCharge() as fc.Arbitrary<Record<string, unknown>>),
      key: idempotencyKey,
      type: contentType,
      prefer: fc.option(headerValue, { nil: undefined }),
    })
    .map(({ path, body, key, type, prefer }) => ({
      method: 'POST',
      path,
      body,
      headers: {
        'Content-Type': type,
        ...(key !== undefined ? { 'Idempotency-Key': key } : {}),
        ...(prefer !== undefined ? { Prefer: prefer.slice(0, 50) } : {}),
      },
    }));
const getRequest = (): fc.Arbitrary<Raw> =>
  fc
    .record({
      path: fc.oneof(
        fc.constantFrom(
          '/accounts',
          '/charges',
          '/health',
          `/accounts/${account}/ledger`,
          '/nowhere',
        ),
        fc
          .string({ unit: 'binary', maxLength: 60 })
          .map((id) => `/accounts/${encodeURIComponent(id)}`),
        fc
          .string({ unit: 'binary', maxLength: 60 })
          .map((id) => `/charges/${encodeURIComponent(id)}`),
        fc
          .string({ unit: 'binary', maxLength: 60 })
          .map((k) => `/idempotency-keys/${encodeURIComponent(k)}`),
      ),
      query: fc.dictionary(
        fc.constantFrom('limit', 'startingAfter', 'accountId', 'x', '__proto__'),
        fc.string({ unit: 'binary', maxLength: 40 }),
        { maxKeys: 3 },
      ),
    })
    .map(({ path, query }) => {
      const qs = new URLSearchParams(query).toString();
      return { method: 'GET', path: qs ? `${path}?${qs}` : path, headers: {} };
    });

// ---- properties ---------------------------------------------------------------

const REJECTIONS = new Set([
  '/problems/validation-failed',
  '/problems/malformed-json',
  '/problems/idempotency-key-missing',
  '/problems/idempotency-key-invalid',
  '/problems/unauthorized',
  '/problems/idempotency-key-in-use',
  '/problems/payload-too-large',
  '/problems/unsupported-media-type',
  '/problems/idempotency-key-reused',
]);

const tally: Record<string, number> = {};

async function check(req: Raw): Promise<void> {
  const before = req.method === 'POST' ? await rowCount() : 0;
  const res = await send(req);
  const label = `${req.method} ${res.status}`;
  tally[label] = (tally[label] ?? 0) + 1;
  expect({ status: res.status, req }).toEqual({ status: expect.toBeLessThan500(), req });
  if (res.status >= 400) {
    expect(res.contentType).toMatch(/^application\/problem\+json/);
    const problem = JSON.parse(res.body) as { type: string; status: number };
    expect(problem.status).toBe(res.status);
    expect(problem.type).toMatch(/^\/problems\/[a-z-]+$/);
    if (req.method === 'POST' && REJECTIONS.has(problem.type)) {
      expect({ changedRows: (await rowCount()) - before, problem: problem.type }).toEqual({
        changedRows: 0,
        problem: problem.type,
      });
    }
  }
}

expect.extend({
  toBeLessThan500(received: number) {
    return { pass: received < 500, message: () => `expected a status below 500, got ${received}` };
  },
});
declare module 'expect' {
  interface AsymmetricMatchers {
    toBeLessThan500(): void;
  }
}

describe('fuzzing', () => {
  it('POST routes: never a 5xx, always problem+json on errors, and a rejected request changes nothing', async () => {
    await fc.assert(fc.asyncProperty(postRequest(), check), {
      numRuns: 300 * ITERATIONS,
      seed: SEED,
    });
  }, 300_000);

  it('GET routes with odd paths and query strings: never a 5xx, always problem+json on errors', async () => {
    await fc.assert(fc.asyncProperty(getRequest(), check), {
      numRuns: 200 * ITERATIONS,
      seed: SEED,
    });
  }, 300_000);

  it('leaves the books sound and no prototype polluted', async () => {
    expect(await ledgerViolations(t.db)).toEqual([]);
    expect(Object.keys(Object.prototype)).toEqual([]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // Variety: the fuzzer reached the work as well as every kind of rejection.
    expect(tally['POST 201']).toBeGreaterThan(0);
    expect(tally['POST 400']).toBeGreaterThan(0);
    report('fuzz', { requests: Object.values(tally).reduce((a, b) => a + b, 0), byStatus: tally });
  });
});
