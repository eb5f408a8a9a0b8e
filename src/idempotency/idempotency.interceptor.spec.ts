import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { CallHandler } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { lastValueFrom, of, throwError } from 'rxjs';
import { CommittedProblem, ProblemError } from '../problems/problem.js';
import type { TransactionHost } from '../database/transaction-host.js';
import { requestFingerprint } from './fingerprint.js';
import { IdempotencyInterceptor } from './idempotency.interceptor.js';
import { MetricsService } from '../metrics/metrics.service.js';
import type { AppConfig } from '../config/config.js';
import {
  type IdempotencyService,
  KeyCompleted,
  type KeyedRequest,
  KeyInUse,
  type StoredKey,
} from './idempotency.service.js';
import { Idempotent } from './idempotent.decorator.js';
import type { RecordedResponse } from './recorded-response.js';
import { VerbatimResponse } from '../http/verbatim-response.js';

class Routes {
  @Idempotent({ required: true, location: (body) => `/things/${body.id}` })
  create() {}

  @Idempotent({ required: false })
  optional() {}

  plain() {}
}

/**
 * The interceptor's own decisions, with the database replaced by an in-memory
 * table. What PostgreSQL decides (locks, the unique key, atomic commit) is proven
 * by the e2e tests against a real server.
 */
class InMemoryKeys {
  rows = new Map<string, StoredKey>();
  locked = new Set<string>();
  /** Simulates another request committing the key between our lookup and our save. */
  stolenBeforeSave?: StoredKey;
  /** Expired rows deleted at COMMIT. */
  deleted = 0;

  constructor(private readonly tx: RecordingTransactions) {}

  async lookup(merchantId: string, key: string) {
    return this.rows.get(`${merchantId}:${key}`) ?? null;
  }
  /** The memory of completed responses is off here (completed-responses.spec.ts tests it). */
  recall() {
    return undefined;
  }
  /**
   * Like the real one: the lookup travels with the claim; a completed or held key
   * fails it and aborts the transaction, before the handler's work.
   */
  async claim(merchantId: string, key: string) {
    const stored = this.rows.get(`${merchantId}:${key}`) ?? null;
    if (stored && !stored.expired) {
      this.tx.aborted = true;
      throw new KeyCompleted(stored);
    }
    if (this.locked.has(`${merchantId}:${key}`)) {
      this.tx.aborted = true;
      throw new KeyInUse();
    }
    return stored;
  }
  /** Probes of a held key; `onProbe` plays the original finishing meanwhile. */
  probes = 0;
  onProbe?: (probe: number) => void;
  async isFree(merchantId: string, key: string) {
    this.probes += 1;
    this.onProbe?.(this.probes);
    return !this.locked.has(`${merchantId}:${key}`);
  }
  /**
   * Like the real one: the row is written at COMMIT, after the expired row the
   * lookup saw (`replacing`) is deleted, and a live row makes COMMIT fail.
   */
  saveAtCommit(request: KeyedRequest, response: RecordedResponse, replacing: StoredKey | null) {
    this.tx.atCommit(() => {
      const id = `${request.merchantId}:${request.key}`;
      if (replacing && this.rows.get(id)?.expired) {
        this.rows.delete(id);
        this.deleted += 1;
      }
      if (this.stolenBeforeSave) this.rows.set(id, this.stolenBeforeSave);
      if (this.rows.has(id)) {
        throw Object.assign(new Error('duplicate key'), {
          code: '23505',
          constraint: 'idempotency_keys_pkey',
        });
      }
      this.rows.set(id, row(request, response));
    });
  }
}

function row(request: KeyedRequest, response: RecordedResponse): StoredKey {
  return {
    merchantId: request.merchantId,
    key: request.key,
    requestMethod: request.method,
    requestPath: request.path,
    fingerprint: request.fingerprint,
    responseStatus: response.status,
    responseContentType: response.contentType,
    responseBody: response.body,
    responseLocation: response.location,
    createdAt: new Date(),
    expiresAt: new Date(Date.now() + 1000),
    expired: false,
  };
}

/**
 * A transaction that records how it ended, runs atCommit() actions at COMMIT,
 * and, once aborted (a failed claim), refuses the handler's work as PostgreSQL
 * refuses the statements queued behind the failed one.
 */
class RecordingTransactions {
  outcomes: Array<'commit' | 'rollback'> = [];
  aborted = false;
  private pending: Array<() => void> = [];
  atCommit(action: () => void) {
    this.pending.push(action);
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    this.pending = [];
    this.aborted = false;
    try {
      const result = await work();
      for (const action of this.pending) action();
      this.outcomes.push('commit');
      return result;
    } catch (error) {
      this.outcomes.push('rollback');
      throw error;
    }
  }
}

let keys: InMemoryKeys;
let tx: RecordingTransactions;
let interceptor: IdempotencyInterceptor;
let calls: number;
let metrics: MetricsService;

async function outcomes(): Promise<Record<string, number>> {
  const metric = await metrics.registry.getSingleMetric('idempotency_outcomes_total')!.get();
  return Object.fromEntries(metric.values.map((v) => [v.labels.outcome, v.value]));
}

beforeEach(() => {
  metrics = new MetricsService({ METRICS_ENABLED: true } as AppConfig);
  tx = new RecordingTransactions();
  keys = new InMemoryKeys(tx);
  interceptor = new IdempotencyInterceptor(
    new Reflector(),
    tx as unknown as TransactionHost,
    keys as unknown as IdempotencyService,
    metrics,
  );
  calls = 0;
});

/** `calls` counts the handler's work that took effect: none in an aborted transaction. */
function handlerReturning(value: unknown): CallHandler {
  return { handle: () => refusedIfAborted() ?? ((calls += 1), of(value)) };
}

function handlerThrowing(error: unknown): CallHandler {
  return { handle: () => refusedIfAborted() ?? ((calls += 1), throwError(() => error)) };
}

function refusedIfAborted() {
  if (!tx.aborted) return undefined;
  const error = Object.assign(new Error('current transaction is aborted'), { code: '25P02' });
  return throwError(() => error);
}

/** The part of a FastifyReply the interceptor uses. */
function fakeReply() {
  const headers: Record<string, string> = {};
  const reply = {
    headers(values: Record<string, string>) {
      for (const [name, value] of Object.entries(values)) reply.header(name, value);
      return reply;
    },
    header(name: string, value: string) {
      headers[name.toLowerCase()] = value;
      return reply;
    },
  };
  return { reply, headers };
}

function run(
  method: keyof Routes,
  handler: CallHandler,
  key?: string,
  body: object = { amount: 1 },
  extraHeaders: Record<string, string> = {},
) {
  const req = {
    method: 'POST',
    url: '/things',
    body,
    headers: { ...(key === undefined ? {} : { 'idempotency-key': key }), ...extraHeaders },
    merchant: { id: 'mch_1', name: 'M' },
  };
  const { reply, headers } = fakeReply();
  const context = new ExecutionContextHost([req, reply], Routes, Routes.prototype[method]);
  return { res: { headers }, result: lastValueFrom(interceptor.intercept(context, handler)) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

describe('IdempotencyInterceptor', () => {
  it('passes routes without @Idempotent straight through', async () => {
    const { result } = run('plain', handlerReturning({ ok: true }));
    expect(await result).toEqual({ ok: true });
    expect(tx.outcomes).toEqual([]);
  });

  it('refuses a missing key on a required route without calling the handler', async () => {
    const error = await rejection(run('create', handlerReturning({ id: 'x' })).result);
    expect((error as ProblemError).code).toBe('idempotency-key-missing');
    expect(calls).toBe(0);
    expect(await outcomes()).toEqual({ missing: 1 });
  });

  it('refuses a malformed key without calling the handler', async () => {
    const error = await rejection(run('create', handlerReturning({ id: 'x' }), '"open').result);
    expect((error as ProblemError).code).toBe('idempotency-key-invalid');
    expect(calls).toBe(0);
    expect(await outcomes()).toEqual({ invalid: 1 });
  });

  it('runs an optional route without a key in a transaction, storing nothing', async () => {
    const { result } = run('optional', handlerReturning({ id: 'a1' }));
    expect(await result).toBe('{"id":"a1"}');
    expect(tx.outcomes).toEqual(['commit']);
    expect(keys.rows.size).toBe(0);
  });

  it('executes a new key once, stores the exact body it sends, and sets Location', async () => {
    const { res, result } = run('create', handlerReturning({ id: 't1', n: 1 }), 'k1');
    expect(await result).toBe('{"id":"t1","n":1}');
    expect(res.headers.location).toBe('/things/t1');
    expect(res.headers['idempotent-replayed']).toBeUndefined();
    expect(keys.rows.get('mch_1:k1')).toMatchObject({
      responseStatus: 201,
      responseBody: '{"id":"t1","n":1}',
    });
    expect(tx.outcomes).toEqual(['commit']);
  });

  it('executes an expired key afresh, deleting the old row at COMMIT; a new key sends no DELETE', async () => {
    await run('create', handlerReturning({ id: 'new' }), 'k0').result;
    expect(keys.deleted).toBe(0);
    await run('create', handlerReturning({ id: 'old' }), 'k1').result;
    keys.rows.get('mch_1:k1')!.expired = true;

    const { res, result } = run('create', handlerReturning({ id: 'again' }), 'k1', { amount: 2 });

    expect(await result).toBe('{"id":"again"}');
    expect(res.headers['idempotent-replayed']).toBeUndefined();
    expect(keys.deleted).toBe(1);
    expect(keys.rows.get('mch_1:k1')).toMatchObject({
      responseBody: '{"id":"again"}',
      expired: false,
    });
    expect(calls).toBe(3);
  });

  it('replays a completed key without calling the handler', async () => {
    await run('create', handlerReturning({ id: 't1' }), 'k1').result;
    const { res, result } = run('create', handlerReturning({ id: 'OTHER' }), 'k1');
    expect(await result).toBe('{"id":"t1"}');
    expect(res.headers['idempotent-replayed']).toBe('true');
    expect(res.headers.location).toBe('/things/t1');
    expect(calls).toBe(1);
    expect(await outcomes()).toEqual({ executed: 1, replayed: 1 });
  });

  it('refuses a completed key sent with another body (422) without calling the handler', async () => {
    await run('create', handlerReturning({ id: 't1' }), 'k1', { amount: 1 }).result;
    const error = await rejection(
      run('create', handlerReturning({ id: 't2' }), 'k1', { amount: 2 }).result,
    );
    expect((error as ProblemError).code).toBe('idempotency-key-reused');
    expect(calls).toBe(1);
    expect(await outcomes()).toEqual({ executed: 1, reused: 1 });
  });

  it('answers 409 with Retry-After when the key is locked by a running request', async () => {
    keys.locked.add('mch_1:k1');
    const error = await rejection(run('create', handlerReturning({ id: 't1' }), 'k1').result);
    expect((error as ProblemError).code).toBe('idempotency-key-in-use');
    expect((error as ProblemError).headers).toEqual({ 'Retry-After': '1' });
    expect(calls).toBe(0);
    expect(tx.outcomes).toEqual(['rollback']);
    expect(await outcomes()).toEqual({ in_use: 1 });
    expect(keys.rows.size).toBe(0);
  });

  it('commits and stores a business outcome (CommittedProblem) and sends it verbatim as a recorded 4xx', async () => {
    const outcome = new CommittedProblem('insufficient-funds', 'no money', { chargeId: 'ch_1' });
    const error = await rejection(run('create', handlerThrowing(outcome), 'k1').result);
    expect(error).toBeInstanceOf(VerbatimResponse);
    const { status, headers, body } = error as VerbatimResponse;
    expect(status).toBe(402);
    expect(headers).toEqual({ 'Content-Type': 'application/problem+json' });
    expect(JSON.parse(body)).toMatchObject({
      type: '/problems/insufficient-funds',
      chargeId: 'ch_1',
    });
    expect(tx.outcomes).toEqual(['commit']);
    expect(keys.rows.get('mch_1:k1')?.responseBody).toBe(body);
  });

  it('rolls back and stores nothing on an unexpected error, leaving the key free', async () => {
    const bug = new Error('boom');
    expect(await rejection(run('create', handlerThrowing(bug), 'k1').result)).toBe(bug);
    expect(tx.outcomes).toEqual(['rollback']);
    expect(keys.rows.size).toBe(0);
  });

  it('rolls back a validation error (raised before the work) and stores nothing', async () => {
    const invalid = new ProblemError('validation-failed', 'bad');
    expect(await rejection(run('create', handlerThrowing(invalid), 'k1').result)).toBe(invalid);
    expect(tx.outcomes).toEqual(['rollback']);
    expect(keys.rows.size).toBe(0);
  });

  it('rolls back its own work and replays the winner when another request stored the key first', async () => {
    const winner = row(
      {
        merchantId: 'mch_1',
        key: 'k1',
        method: 'POST',
        path: '/things',
        fingerprint: requestFingerprint('POST', '/things', { amount: 1 }),
      },
      {
        status: 201,
        contentType: 'application/json',
        body: '{"id":"winner"}',
        location: '/things/winner',
      },
    );
    keys.stolenBeforeSave = winner;
    const { res, result } = run('create', handlerReturning({ id: 'loser' }), 'k1');
    expect(await result).toBe('{"id":"winner"}');
    expect(res.headers['idempotent-replayed']).toBe('true');
    expect(tx.outcomes).toEqual(['rollback']);
  });

  describe('Prefer: wait', () => {
    afterEach(() => {
      jest.useRealTimers();
    });

    it('waits for the original to commit, then replays it with Preference-Applied', async () => {
      jest.useFakeTimers();
      keys.locked.add('mch_1:k1');
      const stored = row(
        {
          merchantId: 'mch_1',
          key: 'k1',
          method: 'POST',
          path: '/things',
          fingerprint: requestFingerprint('POST', '/things', { amount: 1 }),
        },
        {
          status: 201,
          contentType: 'application/json',
          body: '{"id":"original"}',
          location: '/things/original',
        },
      );
      keys.onProbe = (probe) => {
        if (probe === 3) {
          keys.rows.set('mch_1:k1', stored); // the original commits...
          keys.locked.delete('mch_1:k1'); // ...and releases its lock
        }
      };

      const { res, result } = run(
        'create',
        handlerReturning({ id: 'waiter' }),
        'k1',
        { amount: 1 },
        { prefer: 'wait=5' },
      );
      await jest.advanceTimersByTimeAsync(5_000);

      expect(await result).toBe('{"id":"original"}');
      expect(res.headers['idempotent-replayed']).toBe('true');
      expect(res.headers['preference-applied']).toBe('wait=5');
      expect(calls).toBe(0);
    });

    it('executes itself when the original rolled back', async () => {
      jest.useFakeTimers();
      keys.locked.add('mch_1:k1');
      keys.onProbe = () => keys.locked.delete('mch_1:k1'); // rolled back: lock gone, no row

      const { res, result } = run(
        'create',
        handlerReturning({ id: 'waiter' }),
        'k1',
        { amount: 1 },
        { prefer: 'wait=5' },
      );
      await jest.advanceTimersByTimeAsync(5_000);

      expect(await result).toBe('{"id":"waiter"}');
      expect(res.headers['idempotent-replayed']).toBeUndefined();
      expect(res.headers['preference-applied']).toBe('wait=5');
      expect(calls).toBe(1);
    });

    it('answers 409 with Preference-Applied when the original outlasts the wait', async () => {
      jest.useFakeTimers();
      keys.locked.add('mch_1:k1');

      const { result } = run(
        'create',
        handlerReturning({ id: 'x' }),
        'k1',
        { amount: 1 },
        { prefer: 'wait=2' },
      );
      const settled = rejection(result);
      await jest.advanceTimersByTimeAsync(3_000);
      const error = (await settled) as ProblemError;

      expect(error.code).toBe('idempotency-key-in-use');
      expect(error.headers).toEqual({ 'Retry-After': '1', 'Preference-Applied': 'wait=2' });
      expect(keys.probes).toBeGreaterThan(1);
      expect(calls).toBe(0);
    });
  });
});
