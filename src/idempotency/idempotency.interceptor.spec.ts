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
import {
  fakeReply,
  InMemoryKeys,
  RecordingTransactions,
  storedAnswer,
} from './idempotency.fakes.js';
import { IdempotencyInterceptor } from './idempotency.interceptor.js';
import type { IdempotencyService, KeyedRequest } from './idempotency.service.js';
import { Idempotent } from './idempotent.decorator.js';
import type { Phases } from './phases.js';

class Routes {
  @Idempotent({ required: true, location: (body) => `/things/${body.id}` })
  create() {}

  @Idempotent({ required: false })
  optional() {}

  @Idempotent({ required: true, phases: true })
  inPhases() {}

  plain() {}
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
