import type { INestApplication } from '@nestjs/common';
import express from 'express';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  JSON_BODY_TYPES,
  rejectHostileJson,
  requestContext,
  requireJsonBody,
} from './common/http.middleware.js';
import { InFlightRequests } from './common/in-flight.js';
import { createValidationPipe } from './common/validation.js';
import { DOCS_ASSETS } from './docs/docs.controller.js';
import { MetricsService } from './metrics/metrics.service.js';

const require = createRequire(import.meta.url);
const swaggerUiDirectory = () => path.dirname(require.resolve('swagger-ui-dist/package.json'));

/** Contract §5: bodies over 100 kB are refused with 413. */
export const BODY_LIMIT = '100kb';

/**
 * Everything about how the app handles HTTP, shared by main.ts and the e2e tests
 * so that tests run the app exactly as users do. The app must be created with
 * `bodyParser: false`: the JSON parser is installed here with our limit and types.
 * `inFlight` counts requests being handled, for graceful shutdown (main.ts).
 */
export function configureApp(
  app: INestApplication,
  inFlight = new InFlightRequests(),
): INestApplication {
  const http = app.getHttpAdapter().getInstance() as express.Express;
  http.disable('x-powered-by');
  http.set('etag', false);
  const metrics = app.get(MetricsService);
  metrics.countInFlightWith(() => inFlight.size);
  app.use(requestContext(metrics));
  app.use(DOCS_ASSETS, express.static(swaggerUiDirectory(), { index: false, maxAge: '1h' }));
  // After the static files: a streamed file cut off by its client never ends its
  // response, and serving one needs nothing that shutdown closes.
  app.use(inFlight.middleware);
  app.use(requireJsonBody);
  app.use(express.json({ limit: BODY_LIMIT, type: JSON_BODY_TYPES, strict: true }));
  app.use(rejectHostileJson);
  app.useGlobalPipes(createValidationPipe());
  return app;
}
