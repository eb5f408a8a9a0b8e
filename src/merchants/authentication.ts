import rateLimit from '@fastify/rate-limit';
import { Inject, Injectable } from '@nestjs/common';
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import type { ApiRequest } from '../http/api-request.js';
import { ProblemError } from '../problems/problem.js';
import { MerchantsService } from './merchants.service.js';

const BEARER = /^Bearer ([\x21-\x7e]{1,200})$/i;

/** What a request without a usable Authorization header is told. */
export const SEND_YOUR_KEY = 'Send your API key as "Authorization: Bearer <api key>".';

/** A limiter of @fastify/rate-limit, as createRateLimit() makes one. */
type Limiter = ReturnType<FastifyInstance['createRateLimit']>;

/**
 * Who sends a request, decided as soon as its headers are in (Fastify's onRequest),
 * before its body is read and before anything else runs:
 *
 * - a request that has a body and no valid API key gets 401 at once, and its
 *   connection is closed: nobody uploads to this service without a key;
 * - a client address that has made AUTH_FAILURES_PER_MINUTE look-ups of keys that
 *   do not exist gets 429 until its minute ends, before any further look-up
 *   (a key found is remembered a minute, one not found ten seconds: a flood of
 *   one wrong key costs no query, a flood of made-up ones costs at most this many);
 * - a merchant over RATE_LIMIT_PER_SECOND gets 429 with Retry-After;
 * - in production, a test key (`sk_test_...`, the demo merchant's) is refused.
 *
 * All of it before the idempotency layer: a refused request claims no key and
 * stores nothing, so its retry after the wait executes normally. The counts are
 * per instance, in memory (@fastify/rate-limit's store); ApiKeyGuard then lets
 * through the routes that need no key.
 */
@Injectable()
export class Authentication {
  private readonly metricsBearer?: Buffer;

  constructor(
    private readonly merchants: MerchantsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    if (config.METRICS_TOKEN) this.metricsBearer = Buffer.from(`Bearer ${config.METRICS_TOKEN}`);
  }

  async install(http: FastifyInstance): Promise<void> {
    await http.register(rateLimit, { global: false });
    const { AUTH_FAILURES_PER_MINUTE: failures, RATE_LIMIT_PER_SECOND: perSecond } = this.config;
    const failedLookups =
      failures > 0 ? http.createRateLimit({ max: failures, timeWindow: 60_000 }) : undefined;
    const merchantRate =
      perSecond > 0
        ? http.createRateLimit({
            max: perSecond,
            timeWindow: 1_000,
            keyGenerator: (req) => (req as ApiRequest).merchant.id,
          })
        : undefined;
    http.addHook('onRequest', (req, reply) =>
      this.authenticate(req as ApiRequest, reply, failedLookups, merchantRate),
    );
  }

  private async authenticate(
    req: ApiRequest,
    reply: FastifyReply,
    failedLookups: Limiter | undefined,
    merchantRate: Limiter | undefined,
  ): Promise<void> {
    const header = req.headers.authorization;
    // Not a merchant: Prometheus, with METRICS_TOKEN (MetricsController asks for it).
    if (this.metricsBearer && header !== undefined && sameBytes(header, this.metricsBearer)) {
      req.scraper = true;
      return;
    }
    if (header === undefined) {
      // Routes that need no key take no body either: ApiKeyGuard decides the rest.
      if (hasBody(req)) refuse(reply, SEND_YOUR_KEY);
      return;
    }
    const apiKey = BEARER.exec(header.trim())?.[1];
    if (apiKey === undefined) {
      refuse(reply, SEND_YOUR_KEY);
    }
    if (this.config.NODE_ENV === 'production' && apiKey.startsWith('sk_test_')) {
      refuse(reply, 'A test key (sk_test_...) is not accepted in production.');
    }
    let merchant = this.merchants.recall(apiKey);
    if (merchant === undefined) {
      if (failedLookups) {
        const so = await failedLookups(req, { increment: false });
        if (!so.isAllowed && so.remaining === 0) {
          throw tooMany(
            `Too many unknown API keys from ${req.ip}; try again in ${so.ttlInSeconds} s.`,
            so.ttlInSeconds,
          );
        }
      }
      merchant = await this.merchants.findByApiKey(apiKey);
      if (!merchant && failedLookups) await failedLookups(req);
    }
    if (!merchant) refuse(reply, 'The API key is not valid.');
    req.merchant = merchant;
    if (merchantRate) {
      const so = await merchantRate(req);
      if (!so.isAllowed && so.isExceeded) {
        throw tooMany(
          `More than ${so.max} requests in a second; retry after ${so.ttlInSeconds} s.`,
          so.ttlInSeconds,
        );
      }
    }
  }
}

/** 401; a body not yet read is not read: the connection closes after the answer. */
function refuse(reply: FastifyReply, detail: string): never {
  if (hasBody(reply.request)) reply.header('Connection', 'close');
  throw new ProblemError('unauthorized', detail, {}, { 'WWW-Authenticate': 'Bearer' });
}

function tooMany(detail: string, seconds: number): ProblemError {
  return new ProblemError('too-many-requests', detail, {}, { 'Retry-After': String(seconds) });
}

/** Equal, in a time that tells nothing of where they differ. */
function sameBytes(header: string, expected: Buffer): boolean {
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function hasBody(req: FastifyRequest): boolean {
  return (
    req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
  );
}
