import type { FastifyRequest } from 'fastify';

/** The request as it flows through the app: who sent it, and how it was answered. */
export interface ApiRequest extends FastifyRequest {
  requestId: string;
  /** Set by ApiKeyGuard on every authenticated route. */
  merchant: { id: string; name: string };
  /** Set by IdempotencyInterceptor: true when the response was a replay. */
  idempotentReplayed: boolean;
  /**
   * Set by IdempotencyInterceptor on a route run in phases: what the key names,
   * for the handler, which stores the response itself (see @Keyed()).
   */
  keyed?: unknown;
}
