import { Logger } from '@nestjs/common';
import type { NextFunction, Response } from 'express';
import { randomUUID } from 'node:crypto';
import type { MetricsService } from '../metrics/metrics.service.js';
import type { ApiRequest } from './api-request.js';
import { ProblemError } from './problem.js';

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
const logger = new Logger('HTTP');

/**
 * Gives every request an id (the client's X-Request-Id when it sent a sane one),
 * echoes it, and once the response is sent records it: one JSON log line (route,
 * status, latency, merchant, whether an idempotent response was replayed; never
 * the API key or the body) and the HTTP metrics.
 */
export function requestContext(metrics: MetricsService) {
  return (req: ApiRequest, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    const incoming = req.headers['x-request-id'];
    req.requestId =
      typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', req.requestId);
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      // The route's pattern (/charges/:id): bounded label values, no ids in metrics.
      const route = (req.route as { path?: string } | undefined)?.path;
      metrics.observeRequest(req.method, route ?? 'unmatched', res.statusCode, seconds);
      logger.log({
        msg: 'request',
        requestId: req.requestId,
        method: req.method,
        route: route ?? req.path,
        status: res.statusCode,
        latencyMs: Math.round(seconds * 1e6) / 1e3,
        merchantId: req.merchant?.id,
        replayed: req.idempotentReplayed ?? false,
      });
    });
    next();
  };
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

/** Deeper than any body of this API needs; recursion on hostile depth would overflow the stack. */
export const MAX_JSON_DEPTH = 32;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Refuses (400) what JSON allows but this service must not process: nesting deeper
 * than MAX_JSON_DEPTH, NUL characters (PostgreSQL text cannot hold them) and keys
 * that would reach object prototypes. Iterative, so hostile input cannot exhaust
 * the stack here either.
 */
export function rejectHostileJson(req: ApiRequest, _res: Response, next: NextFunction): void {
  if (/%00/.test(req.url)) {
    next(invalidInput('url', 'the URL must not contain NUL characters'));
    return;
  }
  const stack: Array<{ value: unknown; path: string; depth: number }> = [
    { value: req.body as unknown, path: '', depth: 0 },
  ];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    const field = path || 'body';
    if (typeof value === 'string') {
      if (value.includes('\u0000'))
        return next(invalidInput(field, 'must not contain NUL characters'));
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      return next(invalidInput(field, `nesting deeper than ${MAX_JSON_DEPTH} levels`));
    }
    for (const [key, child] of Object.entries(value)) {
      if (FORBIDDEN_KEYS.has(key) || key.includes('\u0000')) {
        return next(
          invalidInput(path ? `${path}.${key}` : key, 'this property name is not allowed'),
        );
      }
      stack.push({ value: child, path: path ? `${path}.${key}` : key, depth: depth + 1 });
    }
  }
  next();
}

function invalidInput(field: string, message: string): ProblemError {
  return new ProblemError('validation-failed', `${field}: ${message}`, {
    errors: [{ field, message }],
  });
}
