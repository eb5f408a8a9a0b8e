import type { IdempotencyKey } from './idempotency-key.entity.js';
import type { KeyInProgress } from './idempotency.service.js';

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
  createdAt: string;
  /** When the stored response is forgotten; null while the request is under way. */
  expiresAt: string | null;
  /** Under way only: tries so far, and when the next one is due. */
  attempts?: number;
  nextAttemptAt?: string;
}

export function toIdempotencyKeyView(row: IdempotencyKey): IdempotencyKeyView {
  return {
    object: 'idempotency_key',
    key: row.key,
    requestMethod: row.requestMethod,
    requestPath: row.requestPath,
    phase: 'completed',
    responseStatus: row.responseStatus,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
  };
}

export function toKeyInProgressView(key: string, row: KeyInProgress): IdempotencyKeyView {
  return {
    object: 'idempotency_key',
    key,
    requestMethod: row.requestMethod,
    requestPath: row.requestPath,
    phase: row.phase,
    responseStatus: null,
    createdAt: row.createdAt.toISOString(),
    expiresAt: null,
    attempts: row.attempts,
    nextAttemptAt: row.nextAttemptAt.toISOString(),
  };
}
