import {
  type CallHandler,
  type ExecutionContext,
  HttpStatus,
  Injectable,
  type NestInterceptor,
} from '@nestjs/common';
import { HTTP_CODE_METADATA } from '@nestjs/common/constants.js';
import { Reflector } from '@nestjs/core';
import type { Response } from 'express';
import { defer, lastValueFrom, map, type Observable } from 'rxjs';
import type { ApiRequest } from '../common/api-request.js';
import { DomainError, PROBLEM_CONTENT_TYPE, problemBody, ProblemError } from '../common/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { requestFingerprint } from './fingerprint.js';
import type { IdempotencyKey } from './idempotency-key.entity.js';
import { parseIdempotencyKey } from './idempotency-key.js';
import { type KeyClaim, IdempotencyService } from './idempotency.service.js';
import { IDEMPOTENT, type IdempotentOptions } from './idempotent.decorator.js';
import { type RecordedResponse, RecordedResponseException } from './recorded-response.js';

interface Outcome {
  response: RecordedResponse;
  replayed: boolean;
}

/** Thrown inside the transaction to roll it back when another request stored the key first. */
class KeyAlreadyStored extends Error {}

/**
 * Makes a route idempotent (contract §4). In the order of the flow:
 *
 * 1. read the Idempotency-Key (400 when missing on a money route, or malformed);
 * 2. a completed key: replay its stored response (422 if the request differs);
 * 3. otherwise BEGIN, and claim the key with a non-blocking lock (409 if taken);
 * 4. run the handler: its writes join this transaction;
 * 5. store the response under the key, and COMMIT: the work and its memory are
 *    one atomic fact. Any unexpected error rolls all of it back, key included.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly tx: TransactionHost,
    private readonly keys: IdempotencyService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const options = this.reflector.get<IdempotentOptions | undefined>(
      IDEMPOTENT,
      context.getHandler(),
    );
    if (!options) return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<ApiRequest>();
    const res = http.getResponse<Response>();
    const routeStatus =
      this.reflector.get<number | undefined>(HTTP_CODE_METADATA, context.getHandler()) ??
      HttpStatus.CREATED;

    return defer(() => this.respond(req, options, next, routeStatus)).pipe(
      map((outcome) => this.send(req, res, outcome, routeStatus)),
    );
  }

  private async respond(
    req: ApiRequest,
    options: IdempotentOptions,
    next: CallHandler,
    routeStatus: number,
  ): Promise<Outcome> {
    const key = parseIdempotencyKey(req.headers['idempotency-key']);
    if (key === undefined) {
      if (options.required) {
        throw new ProblemError(
          'idempotency-key-missing',
          'This request moves money: send an Idempotency-Key header (e.g. a UUID) and reuse it when you retry.',
        );
      }
      const response = await this.tx.run(() => this.execute(next, options, routeStatus));
      return { response, replayed: false };
    }

    const claim: KeyClaim = {
      merchantId: req.merchant.id,
      key,
      method: req.method,
      path: req.path,
      fingerprint: requestFingerprint(req.method, req.path, req.body),
    };
    const stored = await this.keys.find(claim.merchantId, key);
    if (stored) return this.replay(stored, claim);

    try {
      const response = await this.tx.run(async () => {
        if (!(await this.keys.tryLock(claim.merchantId, key))) throw inUse(key);
        const response = await this.execute(next, options, routeStatus);
        if (!(await this.keys.save(claim, response))) throw new KeyAlreadyStored();
        return response;
      });
      return { response, replayed: false };
    } catch (error) {
      if (!(error instanceof KeyAlreadyStored)) throw error;
      const winner = await this.keys.find(claim.merchantId, key);
      if (!winner) throw inUse(key);
      return this.replay(winner, claim);
    }
  }

  /** Runs the handler and records what it answered: a success, or a business outcome (402/404/422). */
  private async execute(
    next: CallHandler,
    options: IdempotentOptions,
    routeStatus: number,
  ): Promise<RecordedResponse> {
    try {
      const body = (await lastValueFrom(next.handle())) as { id: string };
      return {
        status: routeStatus,
        contentType: 'application/json',
        body: JSON.stringify(body),
        location: options.location?.(body) ?? null,
      };
    } catch (error) {
      // Any other error (validation, a bug, a lost connection) rolls back.
      if (!(error instanceof DomainError)) throw error;
      return {
        status: error.status,
        contentType: PROBLEM_CONTENT_TYPE,
        body: problemBody(error.code, error.detail, error.extensions),
        location: null,
      };
    }
  }

  private replay(stored: IdempotencyKey, claim: KeyClaim): Outcome {
    if (stored.fingerprint !== claim.fingerprint) {
      throw new ProblemError(
        'idempotency-key-reused',
        `Idempotency-Key '${claim.key}' was used for a different request (${stored.requestMethod} ${stored.requestPath} with another body). Use a new key for a new request.`,
      );
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

  private send(req: ApiRequest, res: Response, outcome: Outcome, routeStatus: number): string {
    req.idempotentReplayed = outcome.replayed;
    const { response, replayed } = outcome;
    if (response.status !== routeStatus) throw new RecordedResponseException(response, replayed);
    res.type(response.contentType);
    if (response.location) res.location(response.location);
    if (replayed) res.setHeader('Idempotent-Replayed', 'true');
    return response.body;
  }
}

function inUse(key: string): ProblemError {
  return new ProblemError(
    'idempotency-key-in-use',
    `A request with Idempotency-Key '${key}' is still being processed. Retry after it completes to get its response.`,
    {},
    { 'Retry-After': '1' },
  );
}
