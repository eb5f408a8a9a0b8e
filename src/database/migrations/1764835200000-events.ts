import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Events and their delivery to merchants' webhook endpoints: a transactional outbox
 * (decision 0013). An event is written in the transaction of the change it tells
 * of, so it exists if and only if that change committed; its deliveries are written
 * with it, one per enabled endpoint, and a dispatcher sends them afterwards, at
 * least once.
 */
export class Events1764835200000 implements MigrationInterface {
  name = 'Events1764835200000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      -- What happened, as the merchant is told: the object as it was then.
      CREATE TABLE events (
        merchant_id text NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
        id          text NOT NULL,
        type        text NOT NULL CHECK (type ~ '^[a-z_]+\\.[a-z_]+$'),
        data        jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id)
      )`);
    await db.query(`CREATE INDEX events_created_idx ON events (created_at)`);
    await db.query(`
      -- Where a merchant wants its events. The signing secrets are kept as they are:
      -- signing needs them (newest first; an older one signs too until it expires,
      -- so that a receiver can rotate without a gap).
      CREATE TABLE webhook_endpoints (
        merchant_id text NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
        id          text NOT NULL,
        url         text NOT NULL CHECK (url ~ '^https?://' AND char_length(url) <= 2048),
        description text CHECK (char_length(description) <= 500),
        enabled     boolean NOT NULL DEFAULT true,
        secrets     jsonb NOT NULL CHECK (jsonb_typeof(secrets) = 'array'),
        deleted_at  timestamptz,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, id)
      )`);
    await db.query(`
      -- One per event and endpoint: sent at least once, retried with back-off, given
      -- up after a bound. Its webhook-id is the event's id, the same on every try.
      CREATE TABLE webhook_deliveries (
        merchant_id     text NOT NULL,
        event_id        text NOT NULL,
        endpoint_id     text NOT NULL,
        status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
        attempts        int NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        locked_until    timestamptz,
        delivered_at    timestamptz,
        created_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (merchant_id, event_id, endpoint_id),
        FOREIGN KEY (merchant_id, event_id) REFERENCES events (merchant_id, id) ON DELETE CASCADE,
        FOREIGN KEY (merchant_id, endpoint_id) REFERENCES webhook_endpoints (merchant_id, id) ON DELETE CASCADE
      )`);
    await db.query(`
      CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE status = 'pending'`);
    // The oldest delivery still pending, for /metrics.
    await db.query(`
      CREATE INDEX webhook_deliveries_oldest ON webhook_deliveries (created_at)
        WHERE status = 'pending'`);
    await db.query(`
      -- Every try of a delivery: what the endpoint answered, how fast, or what failed.
      CREATE TABLE webhook_attempts (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        merchant_id text NOT NULL,
        event_id    text NOT NULL,
        endpoint_id text NOT NULL,
        status_code int,
        latency_ms  int NOT NULL,
        error       text,
        created_at  timestamptz NOT NULL DEFAULT now(),
        FOREIGN KEY (merchant_id, event_id, endpoint_id)
          REFERENCES webhook_deliveries (merchant_id, event_id, endpoint_id) ON DELETE CASCADE
      )`);
    await db.query(
      `CREATE INDEX webhook_attempts_delivery ON webhook_attempts (merchant_id, event_id, endpoint_id)`,
    );
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query('DROP TABLE webhook_attempts, webhook_deliveries, webhook_endpoints, events');
  }
}
