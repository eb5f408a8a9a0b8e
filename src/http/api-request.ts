import type { FastifyRequest } from 'fastify';

/** The request as it flows through the app: who sent it, and how it was answered. */
export interface ApiRequest extends FastifyRequest {
  requestId: string;
  /** Set by Authentication, before the body is read, on every request with a valid key. */
  merchant: { id: string; name: string };
  /** Set by Authentication when the bearer is METRICS_TOKEN: Prometheus, not a merchant. */
  scraper: boolean;
  /** Set by IdempotencyInterceptor: true when the response was a replay (the access log says so). */
  idempotentReplayed: boolean;
}
