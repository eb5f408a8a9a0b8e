import { Logger } from '@nestjs/common';
import type { NextFunction, Response } from 'express';
import { randomUUID } from 'node:crypto';
import type { ApiRequest } from './api-request.js';
import { ProblemError } from './problem.js';

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
const logger = new Logger('HTTP');

/**
 * Gives every request an id (the client's X-Request-Id when it sent a sane one),
 * echoes it, and logs one line per response: route, status, latency, merchant and
 * whether an idempotent response was replayed. Never the API key or the body.
 */
export function requestContext(req: ApiRequest, res: Response, next: NextFunction): void {
  const started = process.hrtime.bigint();
  const incoming = req.headers['x-request-id'];
  req.requestId =
    typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
  res.setHeader('X-Request-Id', req.requestId);
  res.on('finish', () => {
    logger.log({
      msg: 'request',
      requestId: req.requestId,
      method: req.method,
      route: (req.route as { path?: string } | undefined)?.path ?? req.path,
      status: res.statusCode,
      latencyMs: Number(process.hrtime.bigint() - started) / 1e6,
      merchantId: req.merchant?.id,
      replayed: req.idempotentReplayed ?? false,
    });
  });
  next();
}

export const JSON_BODY_TYPES = ['application/json', 'application/*+json'];

/** A request that carries a body must say it is JSON (415 otherwise); bodiless POSTs are fine. */
export function requireJsonBody(req: ApiRequest, _res: Response, next: NextFunction): void {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined ||
    Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody && !req.is(JSON_BODY_TYPES)) {
    next(
      new ProblemError(
        'unsupported-media-type',
        'Send the request body as JSON, with "Content-Type: application/json".',
      ),
    );
    return;
  }
  next();
}
