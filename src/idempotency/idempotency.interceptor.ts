import {
  type CallHandler,
  type ExecutionContext,
  HttpStatus,
  Injectable,
  type NestInterceptor,
} from '@nestjs/common';
import { HTTP_CODE_METADATA } from '@nestjs/common/constants.js';
import { Reflector } from '@nestjs/core';
import type { FastifyReply } from 'fastify';
import { defer, lastValueFrom, map, type Observable, tap } from 'rxjs';
import type { ApiRequest } from '../http/api-request.js';
import { pathOf } from '../http/request-context.js';
import { VerbatimResponse } from '../http/verbatim-response.js';
import { CommittedProblem, ProblemError } from '../problems/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { type IdempotencyOutcome, MetricsService } from '../metrics/metrics.service.js';
import { AtomicPhases } from './atomic-phases.js';
import { requestFingerprint } from './fingerprint.js';
import { parseIdempotencyKey } from './idempotency-key.js';
import { IdempotencyService, type KeyedRequest } from './idempotency.service.js';
import { IDEMPOTENT, type IdempotentOptions } from './idempotent.decorator.js';
import { keyInUse } from './key-problems.js';
import type { Phases } from './phases.js';
import { preferredWaitSeconds } from './prefer-wait.js';
import {
  type Answer,
  type RecordedResponse,
  recordJson,
  recordProblem,
  replay,
} from './recorded-response.js';

/** An answer as it goes out, with the headers that tell how it was arrived at (never stored). */
interface Reply extends Answer {
  headers: Record<string, string>;
}

/** Pauses between lock probes while waiting (Prefer: wait): 25 ms doubling up to 250 ms. */
const FIRST_PAUSE_MS = 25;
const MAX_PAUSE_MS = 250;

/**
 * Makes a route idempotent (contract §4), in the order of the README's diagram:
 *
 * 1. read the Idempotency-Key: what it names, and what it is bound to;
 * 2. replay a completed request with this key: its stored response, byte for byte
 *    (422 when the key comes back with another request);
 * 3. otherwise BEGIN, claim the key, run the handler, store its response, COMMIT:
 *    the work and its memory are one atomic fact. Any unexpected error rolls all of
 *    it back, key included, and a retry executes afresh.
 *
 * A key held by a request still running gets 409 at once (or, with
 * `Prefer: wait=N`, a wait that holds no connection). A route whose work calls
 * outside the database names its phases instead, and AtomicPhases runs them under
 * the same key, with the same replay, 409 and 422 (decision 0012).
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly tx: TransactionHost,
    private readonly keys: IdempotencyService,
    private readonly phases: AtomicPhases,
    private readonly metrics: MetricsService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const route = this.reflector.get<IdempotentOptions | undefined>(
      IDEMPOTENT,
      context.getHandler(),
    );
    if (!route) return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<ApiRequest>();
    const reply = http.getResponse<FastifyReply>();
    const status =
      this.reflector.get<number | undefined>(HTTP_CODE_METADATA, context.getHandler()) ??
      HttpStatus.CREATED;

    const keyed = req.headers['idempotency-key'] !== undefined;
    return defer(() => this.respond(req, route, next, status)).pipe(
      tap({
        next: (answer) => keyed && this.count(answer.replayed ? 'replayed' : 'executed'),
        error: (error: unknown) => this.countRefusal(error),
      }),
      map((answer) => this.send(req, reply, answer, status)),
    );
  }

  private async respond(
    req: ApiRequest,
    route: IdempotentOptions,
    next: CallHandler,
    status: number,
  ): Promise<Reply> {
    // 1. The key, and the request it names.
    const request = this.readKey(req, route);
    if (!request) {
      const response = await this.tx.run(() => this.execute(next, route, status));
      return told({ response, replayed: false });
    }
    if (route.phases) return this.inPhases(request, next);

    // 2. A completed request with this key, which this instance remembers: replayed
    //    without the database. (One it does not remember, the claim finds in step 3.)
    const remembered = this.keys.recall(request);
    if (remembered) return told(replay(remembered, request));

    // 3. BEGIN, claim the key, run the handler, store its response, COMMIT.
    const wait = preferredWaitSeconds(req.headers.prefer);
    const answer = await this.claimAndExecute(request, next, route, status, wait);
    return told(answer, wait > 0 ? { 'Preference-Applied': `wait=${wait}` } : {});
  }

  /** 400 when a money route comes without a key, or any route with a malformed one. */
  private readKey(req: ApiRequest, route: IdempotentOptions): KeyedRequest | undefined {
    const key = parseIdempotencyKey(req.headers['idempotency-key']);
    if (key === undefined) {
      if (!route.required) return undefined;
      throw new ProblemError(
        'idempotency-key-missing',
        'This request moves money: send an Idempotency-Key header (e.g. a UUID) and reuse it when you retry.',
      );
    }
    const path = pathOf(req);
    return {
      merchantId: req.merchant.id,
      key,
      method: req.method,
      path,
      fingerprint: requestFingerprint(req.method, path, req.body),
    };
  }

  /**
   * Step 3, and what to answer when the key is not ours to claim: the stored
   * response of a request that completed (step 2, from the database), or 409 for
   * one still running, after waiting for it if the client asked to.
   */
  private async claimAndExecute(
    request: KeyedRequest,
    next: CallHandler,
    route: IdempotentOptions,
    status: number,
    preferredWait: number,
  ): Promise<Answer> {
    const deadline = Date.now() + preferredWait * 1_000;
    for (;;) {
      try {
        const response = await this.tx.run(async () => {
          this.keys.claim(request);
          const response = await this.execute(next, route, status);
          this.keys.storeAtCommit(request, response);
          return response;
        });
        return { response, replayed: false };
      } catch (error) {
        const refusal = this.keys.refusalOf(error);
        if (!refusal) throw error;
        if (refusal === 'completed') {
          const stored = await this.keys.findCompleted(request);
          if (stored) return replay(stored, request);
          // Expired since the claim saw it: the key is unused now, so try again.
        } else if (!(await this.waitForKey(request, deadline))) {
          throw keyInUse(request.key, preferredWait);
        }
      }
    }
  }

  /** Runs the handler and records what it answered: a success, or a business outcome (402/404/409/422). */
  private async execute(
    next: CallHandler,
    route: IdempotentOptions,
    status: number,
  ): Promise<RecordedResponse> {
    try {
      const body = (await lastValueFrom(next.handle())) as { id: string };
      const response = recordJson(status, body, route.location?.(body) ?? null);
      return route.sealed ? { ...response, sealed: true } : response;
    } catch (error) {
      // Any other error (validation, a bug, a lost connection) rolls back.
      if (!(error instanceof CommittedProblem)) throw error;
      return recordProblem(error);
    }
  }

  /**
   * A route whose work calls outside the database: its handler names its phases
   * (and runs none), and AtomicPhases runs them under the key. An answer still
   * unknown (the processor did not say) goes out as 202 with Retry-After, and is
   * not stored: the next try may know more.
   */
  private async inPhases(request: KeyedRequest, next: CallHandler): Promise<Reply> {
    const phases = (await lastValueFrom(next.handle())) as Phases<{ id: string }>;
    const outcome = await this.phases.run(request, phases);
    if ('response' in outcome) return told(outcome);
    const { value, retryAfterSeconds } = outcome.pending;
    return told(
      { response: recordJson(HttpStatus.ACCEPTED, value, phases.location(value)), replayed: false },
      { 'Retry-After': String(retryAfterSeconds) },
    );
  }

  /**
   * Prefer: wait. Sleeps, holding no connection and no lock, and probes the key's
   * lock with one short query now and then. True as soon as the original is done
   * (committed: the next try replays it; rolled back: the next try executes);
   * false when the deadline comes first.
   */
  private async waitForKey(request: KeyedRequest, deadline: number): Promise<boolean> {
    for (
      let pause = FIRST_PAUSE_MS;
      Date.now() + pause < deadline;
      pause = Math.min(pause * 2, MAX_PAUSE_MS)
    ) {
      await sleep(pause);
      if (await this.keys.isFree(request)) return true;
    }
    return false;
  }

  private send(req: ApiRequest, reply: FastifyReply, answer: Reply, status: number): string {
    req.idempotentReplayed = answer.replayed;
    const { response } = answer;
    const headers = {
      'Content-Type': response.contentType,
      ...(response.location ? { Location: response.location } : {}),
      ...(answer.replayed ? { 'Idempotent-Replayed': 'true' } : {}),
      ...answer.headers,
    };
    if (response.status !== status) {
      throw new VerbatimResponse(response.status, headers, response.body);
    }
    reply.headers(headers);
    return response.body;
  }

  /** idempotency_outcomes_total: how each request on an idempotent route was answered. */
  private count(outcome: IdempotencyOutcome): void {
    this.metrics.countIdempotency(outcome);
  }

  private countRefusal(error: unknown): void {
    const outcome =
      error instanceof ProblemError ? REFUSALS[error.code as keyof typeof REFUSALS] : undefined;
    if (outcome) this.count(outcome);
  }
}

/** The refusals of the idempotency layer, as idempotency_outcomes_total counts them. */
const REFUSALS = {
  'idempotency-key-missing': 'missing',
  'idempotency-key-invalid': 'invalid',
  'idempotency-key-in-use': 'in_use',
  'idempotency-key-reused': 'reused',
} as const;

function told(answer: Answer, headers: Record<string, string> = {}): Reply {
  return { ...answer, headers };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
