import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { CallHandler } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import { lastValueFrom, of, throwError } from 'rxjs';
import type { AppConfig } from '../config/config.js';
import type { TransactionHost } from '../database/transaction-host.js';
import { VerbatimResponse } from '../http/verbatim-response.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { CommittedProblem, ProblemError } from '../problems/problem.js';
import type { AtomicPhases, PhasedOutcome } from './atomic-phases.js';
import type { CompletedRequest } from './completed-responses.js';
import { requestFingerprint } from './fingerprint.js';
import { IdempotencyInterceptor } from './idempotency.interceptor.js';
import type { IdempotencyService, KeyedRequest, Refusal } from './idempotency.service.js';
import { Idempotent } from './idempotent.decorator.js';
import type { Phases } from './phases.js';
import type { RecordedResponse } from './recorded-response.js';

class Routes {
  @Idempotent({ required: true, location: (body) => `/things/${body.id}` })
  create() {}

  @Idempotent({ required: false })
  optional() {}

  @Idempotent({ required: true, phases: true })
  inPhases() {}

  plain() {}
}

interface Row extends CompletedRequest {
  expired: boolean;
}

/** A refusal of the claim, as PostgreSQL raises it: a unique or a lock violation. */
function refusal(kind: Refusal): Error {
  return kind === 'completed'
    ? Object.assign(new Error('stored'), { code: '23505', constraint: 'idempotency_keys_pkey' })
    : Object.assign(new Error('in use'), { code: '55P03' });
}

/**
 * The interceptor's own decisions, with the database replaced by an in-memory
 * table. What PostgreSQL decides (locks, the unique key, atomic commit) is proven
 * by the e2e tests against a real server.
 */
class InMemoryKeys {
  rows = new Map<string, Row>();
  /** What this instance remembers (IdempotencyService.recall). */
  memory = new Map<string, CompletedRequest>();
  locked = new Set<string>();
  /** Simulates another request committing the key between our claim and our COMMIT. */
  stolenBeforeSave?: Row;
  /** Expired rows the claim deleted. */
  deleted = 0;

  constructor(private readonly tx: RecordingTransactions) {}

  recall({ merchantId, key }: KeyedRequest) {
    return this.memory.get(`${merchantId}:${key}`);
  }

  /**
   * Like the real one: sent with BEGIN, it aborts the transaction when the key is
   * completed or held, so the handler's work behind it is refused; it deletes an
   * expired row, which the response stored at COMMIT replaces.
   */
  claim({ merchantId, key }: KeyedRequest) {
    const id = `${merchantId}:${key}`;
    const stored = this.rows.get(id);
    if (this.locked.has(id)) this.tx.abort(refusal('in-use'));
    else if (stored && !stored.expired) this.tx.abort(refusal('completed'));
    else if (stored) {
      this.rows.delete(id);
      this.deleted += 1;
    }
  }

  refusalOf(error: { code?: string }): Refusal | undefined {
    return error.code === '23505' ? 'completed' : error.code === '55P03' ? 'in-use' : undefined;
  }

  /** Like the real one: written at COMMIT, where a row stored meanwhile makes COMMIT fail. */
  storeAtCommit(request: KeyedRequest, response: RecordedResponse) {
    this.tx.atCommit(() => {
      const id = `${request.merchantId}:${request.key}`;
      if (this.stolenBeforeSave) this.rows.set(id, this.stolenBeforeSave);
      if (this.rows.has(id)) throw refusal('completed');
      this.rows.set(id, row(request, response));
    });
  }

  async findCompleted({ merchantId, key }: KeyedRequest) {
    const stored = this.rows.get(`${merchantId}:${key}`);
    return stored && !stored.expired ? stored : null;
  }

  /** Probes of a held key; `onProbe` plays the original finishing meanwhile. */
  probes = 0;
  onProbe?: (probe: number) => void;
  async isFree({ merchantId, key }: KeyedRequest) {
    this.probes += 1;
    this.onProbe?.(this.probes);
    return !this.locked.has(`${merchantId}:${key}`);
  }
}

function row(request: Omit<KeyedRequest, 'merchantId' | 'key'>, response: RecordedResponse): Row {
  return {
    requestMethod: request.method,
    requestPath: request.path,
    fingerprint: request.fingerprint,
    responseStatus: response.status,
    responseContentType: response.contentType,
    responseBody: response.body,
    responseLocation: response.location,
    expired: false,
  };
}

/** A row that a request with body `{ amount: 1 }` stored, answering `body`. */
function storedAnswer(body: string, location: string): Row {
  const fingerprint = requestFingerprint('POST', '/things', { amount: 1 });
  return row(
    { method: 'POST', path: '/things', fingerprint },
    { status: 201, contentType: 'application/json', body, location },
  );
}

/**
 * A transaction that records how it ended and runs atCommit() actions at COMMIT.
 * Once a guard sent with BEGIN has failed (abort()), it refuses the handler's
 * work, as PostgreSQL refuses what was sent behind the failed claim, and run()
 * throws the guard's error, as TransactionHost does.
 */
class RecordingTransactions {
  outcomes: Array<'commit' | 'rollback'> = [];
  guardError?: Error;
  private pending: Array<() => void> = [];
  abort(error: Error) {
    this.guardError = error;
  }
  atCommit(action: () => void) {
    this.pending.push(action);
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    this.pending = [];
    this.guardError = undefined;
    try {
      const result = await work();
      const failed = this.guardError as Error | undefined; // set by the claim, during work()
      if (failed) throw failed;
      for (const action of this.pending) action();
      this.outcomes.push('commit');
      return result;
    } catch (error) {
      this.outcomes.push('rollback');
      throw this.guardError ?? error;
    }
  }
}

let keys: InMemoryKeys;
let tx: RecordingTransactions;
let phased: { outcome?: PhasedOutcome<{ id: string }>; ran: Array<Phases<{ id: string }>> };
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
  phased = { ran: [] };
  const phases = {
    run: async (_: KeyedRequest, ran: Phases<{ id: string }>) => {
      phased.ran.push(ran);
      return phased.outcome!;
    },
  };
  interceptor = new IdempotencyInterceptor(
    new Reflector(),
    tx as unknown as TransactionHost,
    keys as unknown as IdempotencyService,
    phases as unknown as AtomicPhases,
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
  if (!tx.guardError) return undefined;
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
    expect(await outcomes()).toEqual({});
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
    expect(await outcomes()).toEqual({ executed: 1 });
  });

  it('executes an expired key afresh: the claim removes its old row, the COMMIT stores the new one', async () => {
    await run('create', handlerReturning({ id: 'old' }), 'k1').result;
    keys.rows.get('mch_1:k1')!.expired = true;

    const { res, result } = run('create', handlerReturning({ id: 'again' }), 'k1', { amount: 2 });

    expect(await result).toBe('{"id":"again"}');
    expect(res.headers['idempotent-replayed']).toBeUndefined();
    expect(keys.deleted).toBe(1);
    expect(keys.rows.get('mch_1:k1')).toMatchObject({ responseBody: '{"id":"again"}' });
    expect(calls).toBe(2);
  });

  it('replays a completed key without running the handler: the claim finds it, the lookup gives its response', async () => {
    await run('create', handlerReturning({ id: 't1' }), 'k1').result;
    const { res, result } = run('create', handlerReturning({ id: 'OTHER' }), 'k1');
    expect(await result).toBe('{"id":"t1"}');
    expect(res.headers['idempotent-replayed']).toBe('true');
    expect(res.headers.location).toBe('/things/t1');
    expect(calls).toBe(1);
    expect(tx.outcomes).toEqual(['commit', 'rollback']);
    expect(await outcomes()).toEqual({ executed: 1, replayed: 1 });
  });

  it('replays a completed key this instance remembers without any transaction', async () => {
    keys.memory.set('mch_1:k1', storedAnswer('{"id":"t1"}', '/things/t1'));
    const { res, result } = run('create', handlerReturning({ id: 'OTHER' }), 'k1');
    expect(await result).toBe('{"id":"t1"}');
    expect(res.headers['idempotent-replayed']).toBe('true');
    expect(tx.outcomes).toEqual([]);
    expect(calls).toBe(0);
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
    keys.stolenBeforeSave = storedAnswer('{"id":"winner"}', '/things/winner');
    const { res, result } = run('create', handlerReturning({ id: 'loser' }), 'k1');
    expect(await result).toBe('{"id":"winner"}');
    expect(res.headers['idempotent-replayed']).toBe('true');
    expect(tx.outcomes).toEqual(['rollback']);
  });

  describe('a route in phases', () => {
    it('runs the phases its handler names under the key, outside any transaction of its own', async () => {
      phased.outcome = {
        response: {
          status: 201,
          contentType: 'application/json',
          body: '{"id":"tu_1"}',
          location: '/top-ups/tu_1',
        },
        replayed: false,
      };
      const phases = { location: (t: { id: string }) => `/top-ups/${t.id}` };

      const { res, result } = run('inPhases', handlerReturning(phases), 'k1');

      expect(await result).toBe('{"id":"tu_1"}');
      expect(phased.ran).toEqual([phases]);
      expect(res.headers.location).toBe('/top-ups/tu_1');
      expect(tx.outcomes).toEqual([]);
      expect(await outcomes()).toEqual({ executed: 1 });
    });

    it('answers an outcome not yet known with 202, Retry-After and Location, stored nowhere', async () => {
      phased.outcome = { pending: { value: { id: 'tu_1' }, retryAfterSeconds: 4 } };
      const phases = { location: (t: { id: string }) => `/top-ups/${t.id}` };

      const error = await rejection(run('inPhases', handlerReturning(phases), 'k1').result);

      const { status, headers, body } = error as VerbatimResponse;
      expect(status).toBe(202);
      expect(headers).toEqual({
        'Content-Type': 'application/json',
        Location: '/top-ups/tu_1',
        'Retry-After': '4',
      });
      expect(body).toBe('{"id":"tu_1"}');
      expect(keys.rows.size).toBe(0);
    });
  });

  describe('Prefer: wait', () => {
    afterEach(() => {
      jest.useRealTimers();
    });

    it('waits for the original to commit, then replays it with Preference-Applied', async () => {
      jest.useFakeTimers();
      keys.locked.add('mch_1:k1');
      keys.onProbe = (probe) => {
        if (probe === 3) {
          // the original commits, and releases its lock
          keys.rows.set('mch_1:k1', storedAnswer('{"id":"original"}', '/things/original'));
          keys.locked.delete('mch_1:k1');
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
