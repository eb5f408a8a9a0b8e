import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { hash } from 'node:crypto';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { isLockNotAvailable, isUniqueViolation } from '../database/database-errors.js';
import { TransactionHost } from '../database/transaction-host.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { IdempotencyKey } from './idempotency-key.entity.js';
import { type CompletedRequest, CompletedResponses } from './completed-responses.js';
import type { RecordedResponse } from './recorded-response.js';

/** A request that carries an Idempotency-Key: what the key names, and what it is bound to. */
export interface KeyedRequest {
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
  return hash('sha256', `${merchantId}:${key}`, 'buffer').readBigInt64BE(0);
}

/** Another transaction holds the key: the request gets 409 (or waits, with Prefer: wait). */
export class KeyInUse extends Error {
  constructor() {
    super('the idempotency key is held by another transaction');
  }
}

/**
 * The key has a live stored response: the request is a retry of a completed one,
 * and gets that response replayed. Found by the claim's lookup (see claim()).
 */
export class KeyCompleted extends Error {
  constructor(readonly stored: StoredKey) {
    super('the idempotency key has a stored response');
  }
}

/**
 * What a handler run in phases gets (@Keyed()): the keyed request, and the key's
 * expired row if the lookup found one, to replace when it stores its response.
 */
export interface PhasedRequest extends KeyedRequest {
  expiredRow: StoredKey | null;
}

/** A request run in phases that has not finished yet, as GET /idempotency-keys shows it. */
export interface KeyInProgress {
  requestMethod: string;
  requestPath: string;
  /** Its recovery point: where a retry or the completer resumes it. */
  phase: string;
  attempts: number;
  nextAttemptAt: Date;
  createdAt: Date;
}

/** A row of idempotency_keys as the lookup finds it, live or expired. */
export interface StoredKey extends IdempotencyKey {
  /** Past its expiry: it counts as unused (contract §4.9), and a new request replaces it. */
  expired: boolean;
}

/** Rows deleted per statement by deleteExpired: a short transaction that locks only its own rows. */
export const PURGE_BATCH_SIZE = 1_000;

/** The idempotency_keys table: its only writer. Stores completed idempotent requests. */
@Injectable()
export class IdempotencyService implements OnModuleInit {
  /** The completed requests this instance has seen, to replay without the database. */
  private readonly completed: CompletedResponses;

  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    this.completed = new CompletedResponses(config.IDEMPOTENCY_CACHE_SIZE);
  }

  /** How each route run in phases finds a request under way (see trackInProgress). */
  private readonly inProgressLookups: Array<
    (merchantId: string, key: string) => Promise<KeyInProgress | null>
  > = [];

  /**
   * A route run in phases keeps its own recovery point until it finishes (its key
   * row is written only then, with the response); it registers here how to find
   * one, so that GET /idempotency-keys/{key} can show the phase of a request under way.
   */
  trackInProgress(lookup: (merchantId: string, key: string) => Promise<KeyInProgress | null>) {
    this.inProgressLookups.push(lookup);
  }

  /** The request under way with this key, in any route run in phases, or null. */
  async findInProgress(merchantId: string, key: string): Promise<KeyInProgress | null> {
    for (const lookup of this.inProgressLookups) {
      const found = await lookup(merchantId, key);
      if (found) return found;
    }
    return null;
  }

  /**
   * Keys are state, and state costs storage: /metrics tells how many are kept and
   * how much room they take. Both come from PostgreSQL's own bookkeeping, not from
   * a count(*) over what may be millions of rows: the row count is the statistics
   * collector's live-tuple estimate (up to about ten seconds behind), the size that of the table's
   * files, indexes and TOAST included.
   */
  onModuleInit(): void {
    this.metrics.gaugeFrom(
      'idempotency_keys_stored',
      'Idempotency keys kept (completed requests not yet purged), as estimated by PostgreSQL statistics.',
      async () => (await this.storage()).rows,
    );
    this.metrics.gaugeFrom(
      'idempotency_keys_bytes',
      'Bytes the idempotency_keys table takes on disk, its indexes and TOAST included.',
      async () => (await this.storage()).bytes,
    );
  }

  /** How many keys are kept, about, and the bytes they take: two cheap reads of PostgreSQL's bookkeeping. */
  private async storage(): Promise<{ rows: number; bytes: number }> {
    const [row] = await this.tx.query<{ rows: number; bytes: number; citus: boolean }>(
      `SELECT n_live_tup AS rows, pg_total_relation_size(relid) AS bytes,
              EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus
         FROM pg_stat_user_tables
        WHERE relname = 'idempotency_keys' AND schemaname = current_schema()`,
    );
    if (row?.citus) return this.distributedStorage();
    return row ?? { rows: 0, bytes: 0 };
  }

  /**
   * On Citus the coordinator's table is an empty shell: the keys are in its shards,
   * on the workers, so their statistics are summed there.
   */
  private async distributedStorage(): Promise<{ rows: number; bytes: number }> {
    const [row] = await this.tx.query<{ rows: number; bytes: number }>(
      `SELECT (SELECT coalesce(sum(result::bigint), 0)::bigint
                 FROM run_command_on_shards('idempotency_keys',
                        $$SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '%s'::regclass$$)
                WHERE success) AS rows,
              citus_total_relation_size('idempotency_keys') AS bytes`,
    );
    return row;
  }

  /**
   * What is stored under this merchant's key: the completed request, or an
   * expired one (which counts as unused), or null. Expired rows are returned so
   * that the request replacing one knows to delete it (saveAtCommit).
   */
  async lookup(merchantId: string, key: string): Promise<StoredKey | null> {
    const [row] = await this.tx.query<StoredKey>(
      `SELECT request_method AS "requestMethod", request_path AS "requestPath", fingerprint,
              response_status AS "responseStatus", response_content_type AS "responseContentType",
              response_body AS "responseBody", response_location AS "responseLocation",
              key, created_at AS "createdAt", expires_at AS "expiresAt",
              expires_at <= now() AS expired
         FROM idempotency_keys
        WHERE merchant_id = $1 AND key = $2`,
      [merchantId, key],
    );
    if (row && !row.expired) this.completed.remember(merchantId, key, row, row.expiresAt.getTime());
    return row ?? null;
  }

  /**
   * The merchant's completed request with this key, if this instance has seen it
   * complete (stored it, or found it stored) and it has not expired: a replay
   * that costs no round trip. Undefined when only the database can tell.
   */
  recall(merchantId: string, key: string): CompletedRequest | undefined {
    const completed = this.completed.recall(merchantId, key);
    if (completed) this.metrics.countMemoryReplay();
    return completed;
  }

  /**
   * Claims the key for this transaction, in the round trip that opens it: the
   * lookup of the key's row and the claim leave together with BEGIN (and with the
   * handler's first statement behind them). Resolves with the key's expired row,
   * to be replaced at COMMIT, or null for a new key. Rejects, at once and without
   * waiting for anyone:
   * - with KeyCompleted when a live response is stored (a retry: replay it);
   * - with KeyInUse when another transaction holds the key;
   * - with the unique violation of isKeyAlreadyStored when a response was stored
   *   between the lookup and the claim (replay it, once looked up again).
   *
   * The claim is a transaction-scoped advisory lock: it is released by COMMIT or
   * ROLLBACK (so a crash cannot leave a key stuck "in progress"), and it works
   * through PgBouncer in transaction mode. It is a statement that fails, rather
   * than answering false, when the key is taken or completed
   * (claim_idempotency_key, see its migrations): PostgreSQL then refuses the
   * handler's statements sent behind it, since the transaction is aborted.
   */
  async claim(merchantId: string, key: string): Promise<StoredKey | null> {
    const [found, claimed] = await Promise.allSettled([
      this.lookup(merchantId, key),
      this.tx.query('SELECT claim_idempotency_key($1, $2, $3)', [
        keyLockId(merchantId, key),
        merchantId,
        key,
      ]),
    ]);
    if (found.status === 'rejected') throw found.reason;
    const stored = found.value;
    if (stored && !stored.expired) throw new KeyCompleted(stored);
    if (claimed.status === 'rejected') {
      throw isLockNotAvailable(claimed.reason) ? new KeyInUse() : claimed.reason;
    }
    return stored;
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
   * Stores the response under the key when the current transaction commits,
   * sent with COMMIT (one round trip). `replacing` is the expired row the lookup
   * found, if any: it counts as unused (§4.9) and is deleted first; without one,
   * no DELETE is sent at all. A live row means another request with this key
   * committed between our lookup and our claim: the INSERT then fails with a
   * unique violation (see isKeyAlreadyStored), PostgreSQL rolls the transaction
   * back instead of committing it, and the caller replays that row. (So does a
   * row that expired in between, which only a TTL of a second or two allows: the
   * caller then finds it expired, answers 409, and the client's retry replaces it.)
   * Once committed, the response is remembered in this instance (see recall).
   */
  saveAtCommit(
    request: KeyedRequest,
    response: RecordedResponse,
    replacing: StoredKey | null,
  ): void {
    if (replacing) {
      this.tx.atCommit(
        `DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND expires_at <= now()`,
        [request.merchantId, request.key],
      );
    }
    this.tx.atCommit(
      `INSERT INTO idempotency_keys
         (merchant_id, key, request_method, request_path, fingerprint, response_status,
          response_content_type, response_body, response_location, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))`,
      [
        request.merchantId,
        request.key,
        request.method,
        request.path,
        request.fingerprint,
        response.status,
        response.contentType,
        response.body,
        response.location,
        this.config.IDEMPOTENCY_TTL_SECONDS,
      ],
    );
    // now() in the INSERT is the transaction's start, a little after this instant.
    const expiresAt = this.tx.startedAt + this.config.IDEMPOTENCY_TTL_SECONDS * 1_000;
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
   * Deletes up to `batchSize` expired keys in one statement; returns how many.
   * The condition is checked again on each row as it is deleted: a key that a
   * request has claimed anew meanwhile is not expired any more, and stays. (No
   * FOR UPDATE SKIP LOCKED: Citus refuses it in a query across merchants.)
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

/** The error saveAtCommit's INSERT raises when a live row for the key exists. */
export function isKeyAlreadyStored(error: unknown): boolean {
  return isUniqueViolation(error, 'idempotency_keys_pkey');
}
