import type { IdempotencyKey } from './idempotency-key.entity.js';

export interface IdempotencyKeyView {
  object: 'idempotency_key';
  key: string;
  requestMethod: string;
  requestPath: string;
  responseStatus: number;
  createdAt: string;
  expiresAt: string;
}

export function toIdempotencyKeyView(row: IdempotencyKey): IdempotencyKeyView {
  return {
    object: 'idempotency_key',
    key: row.key,
    requestMethod: row.requestMethod,
    requestPath: row.requestPath,
    responseStatus: row.responseStatus,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
  };
}
