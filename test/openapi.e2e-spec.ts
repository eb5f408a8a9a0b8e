import { describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import type request from 'supertest';
import {
  appRoutes,
  deref,
  loadOpenApi,
  type OpenApiDocument,
  ResponseValidator,
} from './support/openapi.js';
import { useTestApp } from './support/test-app.js';

/**
 * openapi.yaml is written by hand, next to the contract it mirrors. These tests
 * keep it honest: every route the app serves is in it (and nothing else), each
 * idempotent route documents its key and outcomes, and real responses match the
 * documented schemas.
 */
const t = useTestApp();
const doc: OpenApiDocument = loadOpenApi();
const validator = new ResponseValidator(doc);

const HTTP_METHODS = ['get', 'post', 'put', 'patch', 'delete'];

describe('openapi.yaml and the routes', () => {
  it('documents exactly the routes the app serves', () => {
    const served = appRoutes(t.app)
      .map((r) => `${r.method.toUpperCase()} ${r.path}`)
      .sort();
    const documented = Object.entries(doc.paths)
      .flatMap(([path, item]) =>
        Object.keys(item)
          .filter((m) => HTTP_METHODS.includes(m))
          .map((m) => `${m.toUpperCase()} ${path}`),
      )
      .sort();
    expect(documented).toEqual(served);
  });

  it('documents the Idempotency-Key of each idempotent route, required exactly where the code requires it', () => {
    for (const route of appRoutes(t.app)) {
      const params = (doc.paths[route.path][route.method].parameters ?? []).map((p) =>
        deref(doc, p),
      );
      const key = params.find((p) => p.name === 'Idempotency-Key' && p.in === 'header');
      if (!route.idempotent) {
        expect({ route: route.path, key }).toEqual({ route: route.path, key: undefined });
        continue;
      }
      expect({ route: `${route.method} ${route.path}`, required: key?.required ?? false }).toEqual({
        route: `${route.method} ${route.path}`,
        required: route.idempotent.required,
      });
      const responses = Object.keys(doc.paths[route.path][route.method].responses);
      // 201 for what creates a record; 200 for what changes one (rotate-secret).
      const success = responses.find((status) => status === '201' || status === '200');
      expect({ route: route.path, success }).toEqual({
        route: route.path,
        success: expect.any(String),
      });
      expect(responses).toEqual(expect.arrayContaining(['400', '409', '413', '415', '422']));
      // A route run in phases answers 202 while the outcome is unknown, and does not
      // wait for a running duplicate (Prefer: wait is not applied there).
      const prefer = params.some((p) => p.name === 'Prefer' && p.in === 'header');
      expect({ route: route.path, prefer, pending: responses.includes('202') }).toEqual({
        route: route.path,
        prefer: !route.idempotent.phases,
        pending: route.idempotent.phases === true,
      });
      const created = deref(doc, doc.paths[route.path][route.method].responses[success!]);
      expect(Object.keys(created.headers ?? {})).toContain('Idempotent-Replayed');
      if (route.idempotent.location)
        expect(Object.keys(created.headers ?? {})).toContain('Location');
    }
  });

  it('documents 401 and 429 on every authenticated route (and /metrics, behind its token), and 500 and 503 everywhere', () => {
    for (const route of appRoutes(t.app)) {
      const responses = Object.keys(doc.paths[route.path][route.method].responses);
      expect({ route: route.path, has401: responses.includes('401') }).toEqual({
        route: route.path,
        has401: !route.isPublic || route.path === '/metrics',
      });
      if (!route.isPublic)
        expect({ route: route.path, responses }).toEqual({
          route: route.path,
          responses: expect.arrayContaining(['429']),
        });
      expect(responses).toEqual(expect.arrayContaining(['503']));
      if (!route.isPublic) expect(responses).toContain('500');
    }
  });
});

describe('responses match their documented schemas', () => {
  function check(method: string, path: string, res: request.Response): void {
    const errors = validator.errors(
      method,
      path,
      res.status,
      res.headers['content-type'] ?? '',
      res.body,
    );
    expect({ route: `${method.toUpperCase()} ${path} ${res.status}`, errors }).toEqual({
      route: `${method.toUpperCase()} ${path} ${res.status}`,
      errors: [],
    });
  }

  it('for accounts, deposits, charges, ledger and health', async () => {
    const account = await t.api.post('/accounts', { name: 'Spec', currency: 'USD' });
    check('post', '/accounts', account);
    const id = account.body.id as string;
    check('get', '/accounts/{id}', await t.api.get(`/accounts/${id}`));
    check('get', '/accounts', await t.api.get('/accounts'));

    const deposit = await t.api.post(
      `/accounts/${id}/deposits`,
      { amount: 1_000, currency: 'USD' },
      randomUUID(),
    );
    check('post', '/accounts/{accountId}/deposits', deposit);

    const charge = await t.api.charge(id, 400, randomUUID(), { metadata: { order: '7' } });
    check('post', '/charges', charge);
    const failed = await t.api.charge(id, 5_000, randomUUID());
    expect(failed.status).toBe(402);
    check('post', '/charges', failed);
    check('get', '/charges/{id}', await t.api.get(`/charges/${charge.body.id}`));
    check('get', '/charges/{id}', await t.api.get(`/charges/${failed.body.chargeId}`));
    check('get', '/charges', await t.api.get(`/charges?accountId=${id}`));
    const refund = await t.api.post(
      `/charges/${charge.body.id}/refunds`,
      { amount: 100 },
      randomUUID(),
    );
    check('post', '/charges/{chargeId}/refunds', refund);
    const tooMuch = await t.api.post(
      `/charges/${charge.body.id}/refunds`,
      { amount: 1_000 },
      randomUUID(),
    );
    expect(tooMuch.status).toBe(422);
    check('post', '/charges/{chargeId}/refunds', tooMuch);
    check('get', '/accounts/{accountId}/ledger', await t.api.get(`/accounts/${id}/ledger`));

    const health = await t.api.get('/health');
    check('get', '/health', health);
  });

  it('for errors', async () => {
    const id = await t.api.fundedAccount(100);
    check('post', '/charges', await t.api.post('/charges', { amount: 'x' }, randomUUID()));
    check('post', '/charges', await t.api.charge(id, 1, undefined));
    check('post', '/charges', await t.api.charge(id, 1, '"unterminated'));
    check('post', '/charges', await t.api.charge('acct_nope', 1, randomUUID()));
    const key = randomUUID();
    await t.api.charge(id, 1, key);
    check('post', '/charges', await t.api.charge(id, 2, key));
    check('get', '/accounts/{id}', await t.api.get('/accounts/acct_nope'));
    check('get', '/charges', await t.api.get('/charges?limit=0'));
    const unauthorized = await t.api.get('/accounts').set('Authorization', 'Bearer nope');
    check('get', '/accounts', unauthorized);
    check(
      'post',
      '/accounts',
      await t.api.post('/accounts').set('Content-Type', 'text/plain').send('x'),
    );
  });
});
