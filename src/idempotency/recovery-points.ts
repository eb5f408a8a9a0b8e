import { Injectable } from '@nestjs/common';
import { TransactionHost } from '../database/transaction-host.js';
import type { KeyedRequest } from './idempotency.service.js';

/** A request under way in phases, as its row in idempotency_recovery_points holds it. */
export interface UnderWay {
  request: KeyedRequest;
  recoveryPoint: string;
  attempts: number;
  /** Whether a run holds it now (its lease has not run out). */
  leased: boolean;
  /** When its key was first used: the start of its stored response's lifetime. */
  createdAt: Date;
}

const COLUMNS = `merchant_id AS "merchantId", key, request_method AS method, request_path AS path,
  fingerprint, recovery_point AS "recoveryPoint", attempts, created_at AS "createdAt"`;

type Row = KeyedRequest & Omit<UnderWay, 'request'>;

/**
 * The requests under way in atomic phases: where each rests (its recovery point),
 * who holds it (a lease), how often its phase was tried. The only writer of
 * `idempotency_recovery_points`, for AtomicPhases. A row exists from the end of a
 * request's first phase to the commit of its answer, which deletes it.
 */
@Injectable()
export class RecoveryPoints {
  constructor(private readonly tx: TransactionHost) {}

  /** The request under way with this key, its row locked until the transaction ends. */
  async lock(request: KeyedRequest): Promise<UnderWay | null> {
    const [row] = await this.tx.query<Row>(
      `SELECT ${COLUMNS}, coalesce(locked_until > now(), false) AS leased
         FROM idempotency_recovery_points
        WHERE merchant_id = $1 AND key = $2 FOR UPDATE`,
      [request.merchantId, request.key],
    );
    return row ? underWay(row) : null;
  }

  /**
   * Locks the request's row if it still rests at `recoveryPoint`: false when
   * someone else has moved it on, or finished it, since this run read it.
   */
  async lockAt(request: KeyedRequest, recoveryPoint: string): Promise<boolean> {
    const rows = await this.tx.query(
      `SELECT 1 FROM idempotency_recovery_points
        WHERE merchant_id = $1 AND key = $2 AND recovery_point = $3 FOR UPDATE`,
      [request.merchantId, request.key, recoveryPoint],
    );
    return rows.length > 0;
  }

  /** A new request's first recovery point, held by the run that made it. Returns when it began. */
  async insert(
    request: KeyedRequest,
    operation: string,
    recoveryPoint: string,
    leaseSeconds: number,
  ): Promise<Date> {
    const [row] = await this.tx.query<{ createdAt: Date }>(
      `INSERT INTO idempotency_recovery_points
         (merchant_id, key, request_method, request_path, fingerprint, operation, recovery_point,
          locked_until)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
       RETURNING created_at AS "createdAt"`,
      [
        request.merchantId,
        request.key,
        request.method,
        request.path,
        request.fingerprint,
        operation,
        recoveryPoint,
        leaseSeconds,
      ],
    );
    return row.createdAt;
  }

  /** Takes the lease of a request found resting (lock() said it was not leased). */
  async lease(request: KeyedRequest, leaseSeconds: number): Promise<void> {
    await this.tx.query(
      `UPDATE idempotency_recovery_points
          SET locked_until = now() + make_interval(secs => $3), updated_at = now()
        WHERE merchant_id = $1 AND key = $2`,
      [request.merchantId, request.key, leaseSeconds],
    );
  }

  /** Moves the request on to `recoveryPoint`, at COMMIT; its tries start again from 0. */
  moveAtCommit(request: KeyedRequest, recoveryPoint: string): void {
    this.tx.atCommit(
      `UPDATE idempotency_recovery_points
          SET recovery_point = $3, attempts = 0, last_error = NULL, updated_at = now()
        WHERE merchant_id = $1 AND key = $2`,
      [request.merchantId, request.key, recoveryPoint],
    );
  }

  /** The request is answered: no recovery point is left, at COMMIT. */
  deleteAtCommit(request: KeyedRequest): void {
    this.tx.atCommit(
      `DELETE FROM idempotency_recovery_points WHERE merchant_id = $1 AND key = $2`,
      [request.merchantId, request.key],
    );
  }

  /**
   * Counts a try whose outcome stayed unknown, releases the lease, and sets when
   * the next one is due; only while the request still rests at `recoveryPoint`.
   * Returns the tries so far, or null when someone else moved it on meanwhile.
   */
  async countTry(
    request: KeyedRequest,
    recoveryPoint: string,
    error: string,
    delaySeconds: number,
  ): Promise<number | null> {
    const [row] = await this.tx.query<{ attempts: number }>(
      `UPDATE idempotency_recovery_points
          SET attempts = attempts + 1, last_error = $4, locked_until = NULL, updated_at = now(),
              next_attempt_at = now() + make_interval(secs => $5)
        WHERE merchant_id = $1 AND key = $2 AND recovery_point = $3
       RETURNING attempts`,
      [request.merchantId, request.key, recoveryPoint, error.slice(0, 500), delaySeconds],
    );
    return row?.attempts ?? null;
  }

  /**
   * For the completer of `operation`: leases up to `limit` of its requests whose
   * next try is due and that nobody holds, so that many instances can complete at
   * once without meeting. The lease is checked again on each row as it is taken:
   * of two passes that picked the same request, the second waits for the first's
   * UPDATE and then leaves it. (Not FOR UPDATE SKIP LOCKED, which Citus refuses in
   * a query across merchants.)
   */
  async leaseDue(operation: string, limit: number, leaseSeconds: number): Promise<UnderWay[]> {
    const rows = await this.tx.query<Row>(
      `UPDATE idempotency_recovery_points
          SET locked_until = now() + make_interval(secs => $3), updated_at = now()
        WHERE (merchant_id, key) IN (
              SELECT merchant_id, key FROM idempotency_recovery_points
               WHERE operation = $1 AND next_attempt_at <= now()
                 AND (locked_until IS NULL OR locked_until < now())
               ORDER BY next_attempt_at
               LIMIT $2)
          AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
       RETURNING ${COLUMNS}, true AS leased`,
      [operation, limit, leaseSeconds],
    );
    return rows.map(underWay);
  }
}

function underWay({ merchantId, key, method, path, fingerprint, ...rest }: Row): UnderWay {
  return { request: { merchantId, key, method, path, fingerprint }, ...rest };
}
