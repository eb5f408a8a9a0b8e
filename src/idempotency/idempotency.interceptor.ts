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
import { defer, lastValueFrom, map, type Observable } from 'rxjs';
import type { ApiRequest } from '../http/api-request.js';
import { pathOf } from '../http/request-context.js';
import { VerbatimResponse } from '../http/verbatim-response.js';
import { CommittedProblem, ProblemError } from '../problems/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { requestFingerprint } from './fingerprint.js';
import { parseIdempotencyKey } from './idempotency-key.js';
import { keyInUse, keyReused } from './key-problems.js';
import type { CompletedRequest } from './completed-responses.js';
import {
  IdempotencyService,
  isKeyAlreadyStored,
  KeyCompleted,
  type KeyedRequest,
  KeyInUse,
  type PhasedRequest,
} from './idempotency.service.js';
import { IDEMPOTENT, type IdempotentOptions } from './idempotent.decorator.js';
import { preferredWaitSeconds } from './prefer-wait.js';
import { type RecordedResponse, recordJson, recordProblem } from './recorded-response.js';

interface Outcome {
  response: RecordedResponse;
  replayed: boolean;
  /**
   * The wait the client asked for with `Prefer: wait=N`, in seconds, as honoured
   * (capped at MAX_WAIT_SECONDS); 0 when it did not ask. Not how long it waited.
   */
  preferredWait: number;
}

/** Pauses between lock probes while waiting (Prefer: wait): 25 ms doubling up to 250 ms. */
const FIRST_PAUSE_MS = 25;
const MAX_PAUSE_MS = 250;

/**
 * Makes a route idempotent (contract §4). In the order of the flow:
 *
 * 1. read the Idempotency-Key (400 when missing on a money route, or malformed);
 * 2. BEGIN, look the key up and claim it with a non-blocking lock, in one round
 *    trip: a completed key has its stored response replayed (422 if the request
 *    differs); a key another request holds gets 409 (or, with `Prefer: wait=N`,
 *    a wait for it without holding a connection);
 * 3. run the handler: its writes join this transaction (its first statement
 *    travels with the claim, and PostgreSQL runs it only if the key was new);
 * 4. store the response under the key, and COMMIT: the work and its memory are
 *    one atomic fact. Any unexpected error rolls all of it back, key included.
 *
 * A response this instance has already seen complete is replayed from memory,
 * before step 2: it cannot change until its key expires (decision 0015).
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly tx: TransactionHost,
    private readonly keys: IdempotencyService,
    private readonly metrics: MetricsService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const options = this.reflector.get<IdempotentOptions | undefined>(
      IDEMPOTENT,
      context.getHandler(),
    );
    if (!options) return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<ApiRequest>();
    const reply = http.getResponse<FastifyReply>();
    const routeStatus =
      this.reflector.get<number | undefined>(HTTP_CODE_METADATA, context.getHandler()) ??
      HttpStatus.CREATED;

    return defer(() => this.respond(req, options, next, routeStatus)).pipe(
      map((outcome) => this.send(req, reply, outcome, routeStatus)),
    );
  }

  private async respond(
    req: ApiRequest,
    options: IdempotentOptions,
    next: CallHandler,
    routeStatus: number,
  ): Promise<Outcome> {
    const key = this.readKey(req);
    if (key === undefined) {
      if (options.required) {
        this.metrics.countIdempotency('missing');
        throw new ProblemError(
          'idempotency-key-missing',
          'This request moves money: send an Idempotency-Key header (e.g. a UUID) and reuse it when you retry.',
        );
      }
      const response = await this.tx.run(() => this.execute(next, options, routeStatus));
      return { response, replayed: false, preferredWait: 0 };
    }

    const path = pathOf(req);
    const request: KeyedRequest = {
      merchantId: req.merchant.id,
      key,
      method: req.method,
      path,
      fingerprint: requestFingerprint(req.method, path, req.body),
    };
    if (options.phases) return this.respondInPhases(req, request, next);
    const preferredWait = preferredWaitSeconds(req.headers.prefer);
    const deadline = Date.now() + preferredWait * 1_000;
    for (;;) {
      const outcome = await this.tryOnce(request, next, options, routeStatus);
      if (outcome) {
        this.metrics.countIdempotency(outcome.replayed ? 'replayed' : 'executed');
        return { ...outcome, preferredWait };
      }
      if (!(await this.waitForKey(request, deadline))) {
        this.metrics.countIdempotency('in_use');
        throw keyInUse(key, preferredWait);
      }
    }
  }

  /**
   * A route whose work calls outside the database (decision 0012): replay a
   * completed request as always; otherwise hand the key to the handler, which
   * runs its phases, each a transaction of its own, and stores the response under
   * the key in the last one. Concurrent duplicates are the handler's to turn away
   * (a lease on its recovery point); `Prefer: wait` is not applied.
   */
  private async respondInPhases(
    req: ApiRequest,
    request: KeyedRequest,
    next: CallHandler,
  ): Promise<Outcome> {
    const remembered = this.keys.recall(request.merchantId, request.key);
    const stored = remembered ? null : await this.keys.lookup(request.merchantId, request.key);
    const completed = remembered ?? (stored && !stored.expired ? stored : undefined);
    if (completed) {
      this.metrics.countIdempotency('replayed');
      return { ...this.replay(completed, request), preferredWait: 0 };
    }
    const keyed: PhasedRequest = { ...request, expiredRow: stored };
    req.keyed = keyed;
    const response = (await lastValueFrom(next.handle())) as RecordedResponse;
    const replayed = response.replayed === true;
    this.metrics.countIdempotency(replayed ? 'replayed' : 'executed');
    return { response, replayed, preferredWait: 0 };
  }

  private readKey(req: ApiRequest): string | undefined {
    try {
      return parseIdempotencyKey(req.headers['idempotency-key']);
    } catch (error) {
      this.metrics.countIdempotency('invalid');
      throw error;
    }
  }

  /**
   * One try: replay the key's stored response, or claim the key and execute.
   * Undefined when another request holds the key.
   */
  private async tryOnce(
    request: KeyedRequest,
    next: CallHandler,
    options: IdempotentOptions,
    routeStatus: number,
  ): Promise<Omit<Outcome, 'preferredWait'> | undefined> {
    const remembered = this.keys.recall(request.merchantId, request.key);
    if (remembered) return this.replay(remembered, request);
    try {
      const response = await this.tx.run(() =>
        this.claimAndExecute(request, next, options, routeStatus),
      );
      return { response, replayed: false };
    } catch (error) {
      if (error instanceof KeyCompleted) return this.replay(error.stored, request);
      if (error instanceof KeyInUse) return undefined;
      if (!isKeyAlreadyStored(error)) throw error;
      // Stored by another request after our lookup: replay that.
      const winner = await this.keys.lookup(request.merchantId, request.key);
      return winner && !winner.expired ? this.replay(winner, request) : undefined;
    }
  }

  /**
   * Inside the transaction: claim the key, run the handler, and queue the stored
   * response for COMMIT. The claim and the handler's first statement leave in the
   * same round trip: the handler starts without waiting for the claim's answer
   * (the claim is on the wire first: TransactionHost.query() queues a statement
   * on the connection before it returns its promise).
   * That is safe because the handler only acts through this transaction: if the
   * key is taken or completed, the claim fails, the transaction is aborted, and
   * PostgreSQL refuses every statement queued behind the claim. The claim's
   * outcome decides first; the handler's is only looked at once the key is ours.
   */
  private async claimAndExecute(
    request: KeyedRequest,
    next: CallHandler,
    options: IdempotentOptions,
    routeStatus: number,
  ): Promise<RecordedResponse> {
    const [claimed, executed] = await Promise.allSettled([
      this.keys.claim(request.merchantId, request.key),
      this.execute(next, options, routeStatus),
    ]);
    if (claimed.status === 'rejected') throw claimed.reason;
    if (executed.status === 'rejected') throw executed.reason;
    // claimed.value: the key's expired row, if it had one, replaced at COMMIT.
    this.keys.saveAtCommit(request, executed.value, claimed.value);
    return executed.value;
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
      if (await this.keys.isFree(request.merchantId, request.key)) return true;
    }
    return false;
  }

  /** Runs the handler and records what it answered: a success, or a business outcome (402/404/422). */
  private async execute(
    next: CallHandler,
    options: IdempotentOptions,
    routeStatus: number,
  ): Promise<RecordedResponse> {
    try {
      const body = (await lastValueFrom(next.handle())) as { id: string };
      return recordJson(routeStatus, body, options.location?.(body) ?? null);
    } catch (error) {
      // Any other error (validation, a bug, a lost connection) rolls back.
      if (!(error instanceof CommittedProblem)) throw error;
      return recordProblem(error);
    }
  }

  private replay(stored: CompletedRequest, request: KeyedRequest): Omit<Outcome, 'preferredWait'> {
    if (stored.fingerprint !== request.fingerprint) {
      this.metrics.countIdempotency('reused');
      throw keyReused(request.key, stored.requestMethod, stored.requestPath);
    }
    return {
      response: {
        status: stored.responseStatus,
        contentType: stored.responseContentType,
        body: stored.responseBody,
        location: stored.responseLocation,
      },
      replayed: true,
    };
  }

  private send(
    req: ApiRequest,
    reply: FastifyReply,
    outcome: Outcome,
    routeStatus: number,
  ): string {
    req.idempotentReplayed = outcome.replayed;
    const { response } = outcome;
    const headers = {
      'Content-Type': response.contentType,
      ...(response.location ? { Location: response.location } : {}),
      ...response.headers,
      ...outcomeHeaders(outcome),
    };
    if (response.status !== routeStatus) {
      throw new VerbatimResponse(response.status, headers, response.body);
    }
    reply.headers(headers);
    return response.body;
  }
}

/** How a response was arrived at, told in headers. */
function outcomeHeaders({ replayed, preferredWait }: Outcome): Record<string, string> {
  return {
    ...(replayed ? { 'Idempotent-Replayed': 'true' } : {}),
    ...(preferredWait > 0 ? { 'Preference-Applied': `wait=${preferredWait}` } : {}),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
