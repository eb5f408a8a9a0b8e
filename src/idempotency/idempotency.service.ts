import { Inject, Injectable } from '@nestjs/common';
import { hash } from 'node:crypto';
import { SecretBox } from '../config/secret-box.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { isLockNotAvailable, isUniqueViolation } from '../database/database-errors.js';
import { TransactionHost } from '../database/transaction-host.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { type CompletedRequest, CompletedResponses } from './completed-responses.js';
import type { RecordedResponse } from './recorded-response.js';

/** A request that carries an Idempotency-Key: what the key names, and what it is bound to. */
export interface KeyedRequest {
  merchantId: string;
  key: string;
  method: string;
  path: string;
  /** SHA-256 of method, path and canonical body (fingerprint.ts): a retry must match it. */
  fingerprint: string;
}

/** Why a claim was refused: the key's request has completed (replay it), or is running (409). */
export type Refusal = 'completed' | 'in-use';

/** What GET /idempotency-keys/{key} shows: a completed request, or one under way in phases. */
export interface KeyRecord {
  requestMethod: string;
  requestPath: string;
  /** `completed`, or the recovery point of a request under way in phases. */
  phase: string;
  responseStatus: number | null;
  attempts: number | null;
  nextAttemptAt: Date | null;
  /** When the key was first used. */
  createdAt: Date;
  expiresAt: Date | null;
}

/**
 * The advisory lock id of a merchant's key: the first 64 bits of the SHA-256 of
 * `merchant:key`, as PostgreSQL's signed bigint. Distinct keys sharing an id
 * would only make one of them wait (409) for the other: 2^-64 per pair.
 */
export function keyLockId(merchantId: string, key: string): bigint {
  return hash('sha256', `${merchantId}:${key}`, 'buffer').readBigInt64BE(0);
}

/** Rows deleted per statement by deleteExpired: a short transaction that locks only its own rows. */
export const PURGE_BATCH_SIZE = 1_000;

const COMPLETED_COLUMNS = `request_method AS "requestMethod", request_path AS "requestPath", fingerprint,
  response_status AS "responseStatus", response_content_type AS "responseContentType",
  response_body AS "responseBody", response_location AS "responseLocation",
  expires_at AS "expiresAt"`;

/**
 * The keys: claiming one, storing what its request answered, and finding that
 * again. The only writer of `idempotency_keys`, where a row is a completed request
 * (written in the transaction of the work it remembers, so it exists if and only
 * if that work committed). IdempotencyInterceptor and AtomicPhases are its users.
 */
@Injectable()
export class IdempotencyService {
  /** The completed requests this instance has seen, to replay without the database. */
  private readonly completed: CompletedResponses;

  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: MetricsService,
    private readonly box: SecretBox,
  ) {
    this.completed = new CompletedResponses(config.IDEMPOTENCY_CACHE_SIZE);
  }

  /**
   * The completed request with this key, if this instance has seen it complete
   * (stored it, or found it stored) and it has not expired: a replay that costs no
   * round trip (decision 0015). Undefined when only the database can tell.
   */
  recall({ merchantId, key }: KeyedRequest): CompletedRequest | undefined {
    const completed = this.completed.recall(merchantId, key);
    if (completed) this.metrics.countMemoryReplay();
    return completed;
  }

  /**
   * Claims the key for the current transaction: a statement sent with its BEGIN
   * (TransactionHost.atBegin), so it costs no round trip of its own. If the key is
   * completed or held by another request, the claim fails, PostgreSQL runs none of
   * the transaction's statements, and the transaction throws an error that
   * refusalOf() reads.
   *
   * The claim (claim_idempotency_key, see its migrations) takes a transaction-scoped
   * advisory lock: released by COMMIT or ROLLBACK, so a crash cannot leave a key
   * stuck "in progress", and it works through PgBouncer in transaction mode. Under
   * the lock it checks for a stored response, and deletes one that has expired: it
   * counts as unused (contract §4.9) and the response stored at COMMIT replaces it.
   * `inPhases`: the claimer runs in atomic phases and resumes a request of its own
   * under way with this key; to anyone else, such a request holds the key.
   */
  claim({ merchantId, key }: KeyedRequest, { inPhases = false } = {}): void {
    this.tx.atBegin('SELECT claim_idempotency_key($1, $2, $3, $4)', [
      keyLockId(merchantId, key),
      merchantId,
      key,
      inPhases,
    ]);
  }

  /**
   * What a transaction's error says about its key: `completed` when the claim
   * found a stored response, or when the response stored at COMMIT met one stored
   * meanwhile (the primary key, the final guard); `in-use` when the claim found
   * the key held. Undefined for any other error.
   */
  refusalOf(error: unknown): Refusal | undefined {
    if (isUniqueViolation(error, 'idempotency_keys_pkey')) return 'completed';
    if (isLockNotAvailable(error)) return 'in-use';
    return undefined;
  }

  /**
   * Stores the response under the key when the current transaction commits, sent
   * with COMMIT (one round trip). The key's record starts when it was first used:
   * `firstUsedAt` for a request that ran in phases, the transaction's start
   * otherwise; it expires IDEMPOTENCY_TTL_SECONDS later. A response marked
   * `sealed` is stored with its `secret` sealed (SECRETS_KEY). Once committed, the
   * response is remembered in this instance (see recall).
   */
  storeAtCommit(request: KeyedRequest, response: RecordedResponse, firstUsedAt?: Date): void {
    this.tx.atCommit(
      `INSERT INTO idempotency_keys
         (merchant_id, key, request_method, request_path, fingerprint, response_status,
          response_content_type, response_body, response_location, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()),
               coalesce($10, now()) + make_interval(secs => $11))`,
      [
        request.merchantId,
        request.key,
        request.method,
        request.path,
        request.fingerprint,
        response.status,
        response.contentType,
        response.sealed ? sealSecret(response.body, this.box) : response.body,
        response.location,
        firstUsedAt ?? null,
        this.config.IDEMPOTENCY_TTL_SECONDS,
      ],
    );
    // now() is the transaction's start, a little after tx.startedAt.
    const from = firstUsedAt?.getTime() ?? this.tx.startedAt;
    const expiresAt = from + this.config.IDEMPOTENCY_TTL_SECONDS * 1_000;
    this.tx.afterCommit(() =>
      this.completed.remember(
        request.merchantId,
        request.key,
        completedRequest(request, response),
        expiresAt,
      ),
    );
  }

  /**
   * The completed request stored under the key, if it has not expired (then it
   * counts as unused): after a refused claim, the response to replay. Remembered
   * in this instance from then on.
   */
  async findCompleted({ merchantId, key }: KeyedRequest): Promise<CompletedRequest | null> {
    const [row] = await this.tx.query<CompletedRequest & { expiresAt: Date }>(
      `SELECT ${COMPLETED_COLUMNS} FROM idempotency_keys
        WHERE merchant_id = $1 AND key = $2 AND expires_at > now()`,
      [merchantId, key],
    );
    if (!row) return null;
    row.responseBody = openSecret(row.responseBody, this.box); // RecordedResponse.sealed
    this.completed.remember(merchantId, key, row, row.expiresAt.getTime());
    return row;
  }

  /**
   * What the merchant's key remembers: its completed request, or its request under
   * way in phases (AtomicPhases keeps that one's recovery point), or null. One
   * statement, so a request finishing meanwhile is seen in one place or the other.
   */
  async describe(merchantId: string, key: string): Promise<KeyRecord | null> {
    const [row] = await this.tx.query<KeyRecord>(
      `SELECT request_method AS "requestMethod", request_path AS "requestPath",
              'completed' AS phase, response_status AS "responseStatus", NULL::int AS attempts,
              NULL::timestamptz AS "nextAttemptAt", created_at AS "createdAt",
              expires_at AS "expiresAt"
         FROM idempotency_keys
        WHERE merchant_id = $1 AND key = $2 AND expires_at > now()
       UNION ALL
       SELECT request_method, request_path, recovery_point, NULL, attempts, next_attempt_at,
              created_at, NULL
         FROM idempotency_recovery_points
        WHERE merchant_id = $1 AND key = $2`,
      [merchantId, key],
    );
    return row ?? null;
  }

  /**
   * Whether nobody holds the key right now. Run outside any transaction, the
   * statement is its own transaction: the lock is taken and released at once.
   * One short query, so a waiting request (Prefer: wait) can probe now and then
   * without holding a connection in between.
   */
  async isFree({ merchantId, key }: KeyedRequest): Promise<boolean> {
    const [row] = await this.tx.query<{ free: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${keyLockId(merchantId, key)}) AS free`,
    );
    return row.free;
  }

  /**
   * Deletes up to `batchSize` expired keys in one statement; returns how many.
   * The condition is checked again on each row as it is deleted: a key that a
   * request has claimed anew meanwhile is not expired any more, and stays.
   */
  async deleteExpired(batchSize = PURGE_BATCH_SIZE): Promise<number> {
    const rows = await this.tx.query(
      `DELETE FROM idempotency_keys
        WHERE (merchant_id, key) IN (
              SELECT merchant_id, key FROM idempotency_keys
               WHERE expires_at <= now()
               ORDER BY expires_at
               LIMIT $1)
          AND expires_at <= now()
       RETURNING 1`,
      [batchSize],
    );
    return rows.length;
  }
}

function completedRequest(request: KeyedRequest, response: RecordedResponse): CompletedRequest {
  return {
    requestMethod: request.method,
    requestPath: request.path,
    fingerprint: request.fingerprint,
    responseStatus: response.status,
    responseContentType: response.contentType,
    responseBody: response.body,
    responseLocation: response.location,
  };
}

/**
 * An answer that shows a secret (RecordedResponse.sealed), as it is stored: its
 * top-level `secret` sealed, the rest as it was (the auditor reads its `id`).
 * Our answers are JSON.stringify's own, so parsing and writing it again gives the
 * same bytes, and openSecret() gives back the answer byte for byte.
 */
function sealSecret(body: string, box: SecretBox): string {
  const answer = JSON.parse(body) as { secret?: unknown };
  if (typeof answer.secret !== 'string') return body;
  return JSON.stringify({ ...answer, secret: box.seal(answer.secret) });
}

function openSecret(body: string, box: SecretBox): string {
  if (!body.includes('"secret":"sealed:')) return body;
  const answer = JSON.parse(body) as { secret?: unknown };
  if (typeof answer.secret !== 'string' || !SecretBox.isSealed(answer.secret)) return body;
  return JSON.stringify({ ...answer, secret: box.open(answer.secret) });
}
