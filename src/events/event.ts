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
  | 'top_up.failed'
  | 'webhook_endpoint.disabled';

/** An event as stored in `events` (EventsService owns the table). */
export interface Event {
  id: string;
  type: EventType;
  /** The object the event is about, as it was when it happened. */
  data: { object: unknown };
  createdAt: Date;
}

/** An event as the API shows it (and as a webhook carries it). */
export interface EventView {
  id: string;
  object: 'event';
  type: EventType;
  data: { object: unknown };
  createdAt: string;
}

export function toEventView(event: Event): EventView {
  return {
    id: event.id,
    object: 'event',
    type: event.type,
    data: event.data,
    createdAt: event.createdAt.toISOString(),
  };
}
