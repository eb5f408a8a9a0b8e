import type { KeyRecord } from './idempotency.service.js';

export interface IdempotencyKeyView {
  object: 'idempotency_key';
  key: string;
  requestMethod: string;
  requestPath: string;
  /**
   * `completed`: done, its response stored (and replayed on a retry). Otherwise a
   * request run in phases that is still under way, at this recovery point.
   */
  phase: string;
  /** The stored response's status; null while the request is under way. */
  responseStatus: number | null;
  /** When the key was first used. */
  createdAt: string;
  /** When the stored response is forgotten; null while the request is under way. */
  expiresAt: string | null;
  /** Under way only: tries so far, and when the next one is due. */
  attempts?: number;
  nextAttemptAt?: string;
}

export function toIdempotencyKeyView(key: string, record: KeyRecord): IdempotencyKeyView {
  return {
    object: 'idempotency_key',
    key,
    requestMethod: record.requestMethod,
    requestPath: record.requestPath,
    phase: record.phase,
    responseStatus: record.responseStatus,
    createdAt: record.createdAt.toISOString(),
    expiresAt: record.expiresAt?.toISOString() ?? null,
    ...(record.phase === 'completed'
      ? {}
      : { attempts: record.attempts ?? 0, nextAttemptAt: record.nextAttemptAt?.toISOString() }),
  };
}
