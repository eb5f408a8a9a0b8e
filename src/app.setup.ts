import type { DynamicModule, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiRequest } from './http/api-request.js';
import { installConditionalGet } from './http/conditional.js';
import { InFlightRequests } from './http/in-flight.js';
import { BODY_LIMIT_BYTES, installJsonBodyParser, rejectNulInUrl } from './http/json-body.js';
import { sendProblem, toProblem } from './http/problem.filter.js';
import { identify, installRequestContext } from './http/request-context.js';
import { createValidationPipe } from './http/validation.js';
import { MetricsService } from './metrics/metrics.service.js';

export interface CreateAppOptions {
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
  { logger, inFlight = new InFlightRequests() }: CreateAppOptions,
): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    // As Express did: `/charges/` is `/charges`. Ids longer than find-my-way's
    // default of 100 characters get our 404, not a 414.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1_000 },
    // What the router refuses before any hook runs (a malformed URL: 400) does not
    // reach the error handler that NestJS installs.
    frameworkErrors: (error: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
      identify(req as ApiRequest, reply);
      sendProblem(reply, toProblem(error));
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
  http.addHook('onRequest', inFlight.hook);
  installJsonBodyParser(http);
  installConditionalGet(http);
  app.useGlobalPipes(createValidationPipe());
  return app;
}
