import type { DynamicModule, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type {
  FastifyError,
  FastifyReply,
  FastifyRequest,
  RawServerBase,
  RouteGenericInterface,
} from 'fastify';
import type { ApiRequest } from './http/api-request.js';
import { installConditionalGet } from './http/conditional.js';
import { answerClientError } from './http/client-errors.js';
import { rejectDuplicateHeaders } from './http/duplicate-headers.js';
import { InFlightRequests } from './http/in-flight.js';
import { BODY_LIMIT_BYTES, installJsonBodyParser, rejectNulInUrl } from './http/json-body.js';
import { sendProblem, toProblem } from './http/problem.filter.js';
import { identify, installRequestContext } from './http/request-context.js';
import { installSecurityHeaders } from './http/security-headers.js';
import { createValidationPipe } from './http/validation.js';
import { type AppConfig, trustProxy } from './config/config.js';
import { Authentication } from './merchants/authentication.js';
import { MetricsService } from './metrics/metrics.service.js';

export interface CreateAppOptions {
  /** The settings the HTTP server is built with (timeouts, proxies); the module has the rest. */
  config: AppConfig;
  logger: LoggerService | false;
  /** Counts requests being handled, for graceful shutdown (main.ts). */
  inFlight?: InFlightRequests;
}

/**
 * Creates the app with everything about how it handles HTTP, shared by main.ts and
 * the e2e tests so that tests run the app exactly as users do.
 *
 * Fastify rather than Express: a charge costs the API about a quarter less CPU, a
 * replay almost half less (docs/decisions/0008-fastify.md).
 */
export async function createApp(
  module: DynamicModule,
  { config, logger, inFlight = new InFlightRequests() }: CreateAppOptions,
): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    // A client has this long to send its headers, and its whole request; Node.js
    // checks every second (its default, 30 s, would let a trickle run that late).
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: {
      headersTimeout: config.HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: 1_000,
    },
    // What Node.js's parser refuses (a timeout, headers too large, not HTTP) is
    // answered as problem+json too.
    clientErrorHandler: answerClientError,
    trustProxy: trustProxy(config),
    // As Express did: `/charges/` is `/charges`. Ids longer than find-my-way's
    // default of 100 characters get our 404, not a 414.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1_000 },
    // What the router refuses before any hook runs (a malformed URL: 400) does not
    // reach the error handler that NestJS installs.
    frameworkErrors: (
      error: FastifyError,
      req: FastifyRequest<RouteGenericInterface, RawServerBase>,
      reply: FastifyReply<RouteGenericInterface, RawServerBase>,
    ) => {
      identify(req as unknown as ApiRequest, reply as unknown as FastifyReply);
      sendProblem(reply as unknown as FastifyReply, toProblem(error));
    },
  });
  const app = await NestFactory.create<NestFastifyApplication>(module, adapter, {
    bodyParser: false,
    logger,
  });
  const http = app.getHttpAdapter().getInstance();
  const metrics = app.get(MetricsService);
  metrics.countInFlightWith(() => inFlight.size);
  installRequestContext(http);
  metrics.observeRequests(http);
  http.addHook('onRequest', rejectNulInUrl);
  http.addHook('onRequest', rejectDuplicateHeaders);
  http.addHook('onRequest', inFlight.hook);
  // Who sends it, and whether they may now: before the body is read (Authentication).
  await app.get(Authentication).install(http);
  installJsonBodyParser(http);
  installSecurityHeaders(http);
  installConditionalGet(http);
  app.useGlobalPipes(createValidationPipe());
  return app;
}
