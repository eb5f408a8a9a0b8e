import { Injectable, Optional } from '@nestjs/common';
import { newId } from '../common/ids.js';
import { type List, type ListQuery, pageAfter, pageParams, toList } from '../common/list.js';
import { TransactionHost } from '../database/transaction-host.js';
import { NotFoundError } from '../problems/problem.js';
import { type Event, type EventType, type EventView, toEventView } from './event.js';
import { EventSubscriber } from './event-subscriber.js';

/**
 * The outbox: the events table, its only writer. An event is recorded with the
 * change it tells of, in that change's transaction; whoever reads the outbox (the
 * webhooks, an EventSubscriber) learns of it in the same statement.
 */
@Injectable()
export class EventsService {
  private readonly recordStatement: string;
  private readonly deleteStatement: string;

  constructor(
    private readonly tx: TransactionHost,
    @Optional() subscriber?: EventSubscriber,
  ) {
    const insert = `INSERT INTO events (merchant_id, id, type, data) VALUES ($1, $2, $3, $4)`;
    this.recordStatement = subscriber ? `WITH event AS (${insert}) ${subscriber.onEvent}` : insert;
    this.deleteStatement = deleteExpired(subscriber?.stillNeeds);
  }

  /**
   * Records an event in the current transaction, with COMMIT: it exists if and
   * only if the change it tells of committed. Written after the commit it could
   * be lost; written before, it could announce a rollback. Sending it is the
   * subscriber's, afterwards (decision 0013).
   */
  recordAtCommit(merchantId: string, type: EventType, object: unknown): void {
    this.tx.atCommit(this.recordStatement, [
      merchantId,
      newId('event'),
      type,
      JSON.stringify({ object }),
    ]);
  }

  /** The merchant's events, newest first. */
  async list(merchantId: string, query: ListQuery): Promise<List<EventView>> {
    const rows = await this.tx.query<Event>(
      `SELECT id, type, data, created_at AS "createdAt" FROM events
        WHERE merchant_id = $1 ${pageAfter(2)}`,
      [merchantId, ...pageParams(query)],
    );
    return toList(rows, query, toEventView);
  }

  /** The merchant's event, or a 404 (also for another merchant's). */
  async get(merchantId: string, id: string): Promise<EventView> {
    const [row] = await this.tx.query<Event>(
      `SELECT id, type, data, created_at AS "createdAt" FROM events
        WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('event', id);
    return toEventView(row);
  }

  /**
   * Deletes up to `batchSize` events older than `ttlSeconds` that no subscriber
   * still needs (the webhooks' deliveries and attempts go with them: their rows
   * reference the event ON DELETE CASCADE). Returns how many. Old events change
   * no more, so nothing is checked again as they are deleted: a redelivery asked
   * meanwhile holds the event's row until it commits, and then there is no event
   * left to redeliver, as if it came later.
   */
  async deleteExpired(ttlSeconds: number, batchSize: number): Promise<number> {
    const rows = await this.tx.query(this.deleteStatement, [ttlSeconds, batchSize]);
    return rows.length;
  }
}

function deleteExpired(stillNeeds = 'false'): string {
  return `DELETE FROM events
           WHERE (merchant_id, id) IN (
                 SELECT e.merchant_id, e.id FROM events e
                  WHERE e.created_at < now() - make_interval(secs => $1) AND NOT (${stillNeeds})
                  ORDER BY e.created_at
                  LIMIT $2)
          RETURNING 1`;
}
