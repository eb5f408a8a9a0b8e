import { Injectable } from '@nestjs/common';
import { newId } from '../common/ids.js';
import type { List, ListQuery } from '../common/list.js';
import { TransactionHost } from '../database/transaction-host.js';
import { NotFoundError } from '../problems/problem.js';

/** What the merchant is told, by type: `<object>.<what happened>`. */
export type EventType =
  | 'account.created'
  | 'account.updated'
  | 'account.closed'
  | 'deposit.succeeded'
  | 'charge.succeeded'
  | 'charge.failed'
  | 'refund.succeeded'
  | 'top_up.succeeded'
  | 'top_up.declined'
  | 'top_up.failed';

export interface EventView {
  id: string;
  object: 'event';
  type: EventType;
  /** The object the event is about, as it was when it happened. */
  data: { object: unknown };
  createdAt: string;
}

interface EventRow {
  id: string;
  type: EventType;
  data: { object: unknown };
  createdAt: Date;
}

/** The events table, and the deliveries each event fans out to: their only writer. */
@Injectable()
export class EventsService {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * The outbox: records an event in the current transaction, with COMMIT, and a
   * delivery of it to each of the merchant's enabled webhook endpoints, in one
   * statement. An event exists if and only if the change it tells of committed:
   * written after the commit it could be lost, written before it could announce
   * a rollback. Sending it is the dispatcher's, afterwards (decision 0013).
   */
  recordAtCommit(merchantId: string, type: EventType, object: unknown): void {
    this.tx.atCommit(
      `WITH event AS (
         INSERT INTO events (merchant_id, id, type, data) VALUES ($1, $2, $3, $4)
         RETURNING merchant_id, id)
       INSERT INTO webhook_deliveries (merchant_id, event_id, endpoint_id)
       SELECT event.merchant_id, event.id, endpoint.id
         FROM event JOIN webhook_endpoints endpoint
           ON endpoint.merchant_id = event.merchant_id
          AND endpoint.enabled AND endpoint.deleted_at IS NULL`,
      [merchantId, newId('event'), type, JSON.stringify({ object })],
    );
  }

  /** The merchant's events, newest first (ids begin with their time). */
  async list(merchantId: string, { limit, startingAfter }: ListQuery): Promise<List<EventView>> {
    const rows = await this.tx.query<EventRow>(
      `SELECT id, type, data, created_at AS "createdAt" FROM events
        WHERE merchant_id = $1 AND ($2::text IS NULL OR id < $2)
        ORDER BY id DESC LIMIT $3`,
      [merchantId, startingAfter ?? null, limit + 1],
    );
    return { object: 'list', data: rows.slice(0, limit).map(toView), hasMore: rows.length > limit };
  }

  async get(merchantId: string, id: string): Promise<EventView> {
    const [row] = await this.tx.query<EventRow>(
      `SELECT id, type, data, created_at AS "createdAt" FROM events
        WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('event', id);
    return toView(row);
  }

  /**
   * Sends the event again, to every enabled endpoint: each delivery is set back to
   * pending, due now, its tries counted afresh (an endpoint added since gets one).
   * Setting a state, so safe to repeat: a receiver that got it already ignores the
   * duplicate by its webhook-id, the event's id. Returns how many deliveries.
   */
  async redeliver(merchantId: string, id: string): Promise<number> {
    await this.get(merchantId, id); // 404 for an unknown or foreign event
    const rows = await this.tx.query(
      `INSERT INTO webhook_deliveries (merchant_id, event_id, endpoint_id)
       SELECT $1, $2, endpoint.id FROM webhook_endpoints endpoint
        WHERE endpoint.merchant_id = $1 AND endpoint.enabled AND endpoint.deleted_at IS NULL
       ON CONFLICT (merchant_id, event_id, endpoint_id) DO UPDATE
         SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL,
             delivered_at = NULL
       RETURNING 1`,
      [merchantId, id],
    );
    return rows.length;
  }

  /**
   * Deletes up to `batchSize` events older than `ttlSeconds` none of whose
   * deliveries is still pending (their deliveries and attempts go with them);
   * rows locked by someone else are skipped. Returns how many.
   */
  async deleteExpired(ttlSeconds: number, batchSize: number): Promise<number> {
    const rows = await this.tx.query(
      `DELETE FROM events
        WHERE (merchant_id, id) IN (
              SELECT e.merchant_id, e.id FROM events e
               WHERE e.created_at < now() - make_interval(secs => $1)
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                  WHERE d.merchant_id = e.merchant_id AND d.event_id = e.id
                                    AND d.status = 'pending')
               ORDER BY e.created_at
               LIMIT $2
                 FOR UPDATE SKIP LOCKED)
       RETURNING 1`,
      [ttlSeconds, batchSize],
    );
    return rows.length;
  }
}

function toView(row: EventRow): EventView {
  return {
    id: row.id,
    object: 'event',
    type: row.type,
    data: row.data,
    createdAt: row.createdAt.toISOString(),
  };
}
