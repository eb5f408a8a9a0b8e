import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What the webhooks need to treat an endpoint as the Standard Webhooks guidance
 * advises (docs/webhooks.md#webhook-security):
 *
 * - `failing_since`: since when an endpoint has answered no try with a 2xx; past
 *   WEBHOOK_DISABLE_AFTER_SECONDS it is disabled (NULL: its last try succeeded);
 * - `disabled_reason`: why the service disabled it, `gone` (it answered 410) or
 *   `failing`; NULL when the merchant set `enabled` itself;
 * - `redelivered_at` on a delivery: when it was last queued again by hand, so that
 *   a redelivery of one event is refused (429) while the last one is recent;
 * - the deliveries due, indexed by endpoint instead of by time alone: a pass takes
 *   the first few of each endpoint (as many as it may have in flight), so that a
 *   backlog behind dead endpoints costs it nothing (with 120,000 due behind 60 of
 *   them, a lease took 0.5 s by time alone).
 *
 * One subcommand per ALTER TABLE: Citus refuses some of them beside any other.
 */
export class WebhookEndpointLifecycle1765440000000 implements MigrationInterface {
  name = 'WebhookEndpointLifecycle1765440000000';

  async up(db: QueryRunner): Promise<void> {
    await db.query('ALTER TABLE webhook_endpoints ADD COLUMN failing_since timestamptz');
    await db.query('ALTER TABLE webhook_endpoints ADD COLUMN disabled_reason code_name');
    await db.query('ALTER TABLE webhook_deliveries ADD COLUMN redelivered_at timestamptz');
    await db.query(
      `CREATE INDEX webhook_deliveries_due_by_endpoint
         ON webhook_deliveries (merchant_id, endpoint_id, next_attempt_at) WHERE status = 'pending'`,
    );
    await db.query('DROP INDEX webhook_deliveries_due');
    await db.query(
      `COMMENT ON TABLE webhook_endpoints IS 'Where a merchant wants its events, and the secrets that sign them (a rotated one
signs beside the new one for a while). One that answers 410, or no try with a 2xx for
WEBHOOK_DISABLE_AFTER_SECONDS, is disabled by the service (disabled_reason).'`,
    );
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(
      `CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'`,
    );
    await db.query('DROP INDEX webhook_deliveries_due_by_endpoint');
    await db.query('ALTER TABLE webhook_deliveries DROP COLUMN redelivered_at');
    await db.query('ALTER TABLE webhook_endpoints DROP COLUMN disabled_reason');
    await db.query('ALTER TABLE webhook_endpoints DROP COLUMN failing_since');
    await db.query(
      `COMMENT ON TABLE webhook_endpoints IS 'Where a merchant wants its events, and the secrets that sign them (a rotated one
signs beside the new one for a while).'`,
    );
  }
}
