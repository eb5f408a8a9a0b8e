import type { FastifyRequest } from 'fastify';

/** The request as it flows through the app: who sent it, and how it was answered. */
export interface ApiRequest extends FastifyRequest {
  requestId: string;
  /** Set by ApiKeyGuard on every authenticated route. */
  merchant: { id: string; name: string };
  /** Set by IdempotencyInterceptor: true when the response was a replay (the access log says so). */
  idempotentReplayed: boolean;
}
