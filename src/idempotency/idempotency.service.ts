import { Inject, Injectable } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { literal, TransactionHost } from '../database/transaction-host.js';
import { IdempotencyKey } from './idempotency-key.entity.js';
import type { RecordedResponse } from './recorded-response.js';

export interface KeyClaim {
  merchantId: string;
  key: string;
  method: string;
  path: string;
  fingerprint: string;
}

/**
 * The advisory lock id of a merchant's key: the first 64 bits of the SHA-256 of
 * `merchant:key`, as PostgreSQL's signed bigint. Distinct keys sharing an id
 * would only make one of them wait (409) for the other: 2^-64 per pair.
 */
export function keyLockId(merchantId: string, key: string): bigint {
  return createHash('sha256').update(`${merchantId}:${key}`).digest().readBigInt64BE(0);
}

/** Storage of completed idempotent requests. */
@Injectable()
export class IdempotencyService {
  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The completed request stored under this merchant's key, if any (and not expired). */
  async find(merchantId: string, key: string): Promise<IdempotencyKey | null> {
    const [row] = await this.tx.query<IdempotencyKey>(
      `SELECT request_method AS "requestMethod", request_path AS "requestPath", fingerprint,
              response_status AS "responseStatus", response_content_type AS "responseContentType",
              response_body AS "responseBody", response_location AS "responseLocation",
              key, created_at AS "createdAt", expires_at AS "expiresAt"
         FROM idempotency_keys
        WHERE merchant_id = $1 AND key = $2 AND expires_at > now()`,
      [merchantId, key],
    );
    return row ?? null;
  }

  /**
   * Claims the key for this transaction, or answers false at once when another
   * transaction holds it. A transaction-scoped advisory lock: it never waits, it
   * is released by COMMIT or ROLLBACK (so a crash cannot leave a key stuck "in
   * progress"), and it works through PgBouncer in transaction mode.
   *
   * The statement has no parameters (the lock id is a number computed here, never
   * client text), so it travels to PostgreSQL in one message with BEGIN.
   */
  async tryLock(merchantId: string, key: string): Promise<boolean> {
    const [row] = await this.tx.query<{ locked: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${keyLockId(merchantId, key)}) AS locked`,
    );
    return row.locked;
  }

  /**
   * Whether nobody holds the key right now. Run outside any transaction, the
   * statement is its own transaction: the lock is taken and released at once.
   * One short query, so a waiting request (Prefer: wait) can probe now and then
   * without holding a connection in between.
   */
  async isFree(merchantId: string, key: string): Promise<boolean> {
    const [row] = await this.tx.query<{ free: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${keyLockId(merchantId, key)}) AS free`,
    );
    return row.free;
  }

  /**
   * Stores the response under the key when the current transaction commits, in
   * the same message as COMMIT (one round trip for both). An expired row for the
   * key counts as unused (§4.9) and is replaced. A live row means another request
   * with this key committed between our lookup and our lock: the INSERT then fails
   * with a unique violation (see isKeyAlreadyStored), nothing commits, and the
   * caller replays that row.
   */
  saveAtCommit(claim: KeyClaim, response: RecordedResponse): void {
    const merchantId = literal(claim.merchantId);
    const key = literal(claim.key);
    const ttlSeconds = Math.trunc(this.config.IDEMPOTENCY_TTL_SECONDS);
    this.tx.atCommit(
      `DELETE FROM idempotency_keys
        WHERE merchant_id = ${merchantId} AND key = ${key} AND expires_at <= now()`,
    );
    this.tx.atCommit(
      `INSERT INTO idempotency_keys
         (merchant_id, key, request_method, request_path, fingerprint, response_status,
          response_content_type, response_body, response_location, expires_at)
       VALUES (${merchantId}, ${key}, ${literal(claim.method)}, ${literal(claim.path)},
               ${literal(claim.fingerprint)}, ${Math.trunc(response.status)},
               ${literal(response.contentType)}, ${literal(response.body)},
               ${literal(response.location)}, now() + make_interval(secs => ${ttlSeconds}))`,
    );
  }
}

/** The error saveAtCommit's INSERT raises when a live row for the key exists. */
export function isKeyAlreadyStored(error: unknown): boolean {
  const { code, constraint } = (error ?? {}) as { code?: unknown; constraint?: unknown };
  return code === '23505' && constraint === 'idempotency_keys_pkey';
}
