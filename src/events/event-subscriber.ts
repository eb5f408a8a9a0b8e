/**
 * Who else learns of each event, inside the outbox's own statements: so that an
 * event costs a charge one statement, and none is purged while still needed. The
 * webhooks are the one subscriber: WebhooksModule provides this, and events/
 * never imports webhooks/ (decision 0013).
 */
export abstract class EventSubscriber {
  /**
   * A data-modifying statement that runs in the event's own statement, behind its
   * INSERT: an INSERT ... SELECT whose parameters $1 and $2 are the event's
   * merchant and id (the webhooks queue a delivery to each enabled endpoint).
   */
  abstract readonly onEvent: string;

  /**
   * A condition on `e`, a row of events: true while the subscriber still needs
   * the event (a delivery of it still pending), which the purge then keeps.
   */
  abstract readonly stillNeeds: string;
}
