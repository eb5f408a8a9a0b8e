import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { Webhook } from 'standardwebhooks';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { TransactionHost } from '../database/transaction-host.js';
import { MetricsService } from '../metrics/metrics.service.js';
import type { SigningSecret } from './webhook-endpoints.service.js';

/** Deliveries leased per pass, and sent at once. */
export const DISPATCH_BATCH = 20;
/**
 * A lease outlives the try (WEBHOOK_TIMEOUT_MS) by this much, time to record it.
 * Should an instance die holding one, another sends the delivery once it ends.
 */
const LEASE_MARGIN_SECONDS = 5;
/** The longest wait between two tries of one delivery. */
const MAX_RETRY_SECONDS = 6 * 3_600;

interface Due {
  merchantId: string;
  eventId: string;
  endpointId: string;
  attempts: number;
  lease: Date;
  type: string;
  data: unknown;
  createdAt: Date;
  url: string;
  secrets: SigningSecret[];
}

/**
 * Sends the outbox: on every instance, it leases the deliveries that are due (SKIP
 * LOCKED, and a lease, so that instances never send the same one at once), signs
 * each as Standard Webhooks asks, posts it, and records the try. At least once: a
 * delivery is done only when the endpoint answered 2xx, so one whose answer was
 * lost goes out again, with the same webhook-id for the receiver to recognise.
 * Failed tries wait longer each time (doubling, with jitter, up to six hours),
 * up to WEBHOOK_MAX_ATTEMPTS.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('WebhookDispatcher');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly tx: TransactionHost,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    const ms = this.config.WEBHOOK_DISPATCH_INTERVAL_MS;
    if (ms > 0) this.timer = setInterval(() => void this.runPass(), ms).unref();
    this.metrics.gaugeFrom(
      'webhook_oldest_undelivered_seconds',
      'Age of the oldest webhook delivery not yet done (0: none waiting).',
      async () => {
        const [row] = await this.tx.query<{ age: number | null }>(
          `SELECT extract(epoch FROM now() - min(created_at))::float8 AS age
             FROM webhook_deliveries WHERE status = 'pending'`,
        );
        return row?.age ?? 0;
      },
    );
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass (at most one at a time); a failure is logged and the next pass tries again. */
  runPass(): Promise<void> {
    this.running ??= this.dispatchDue()
      .then(() => undefined)
      .catch((error: unknown) => {
        this.logger.warn({ msg: 'webhook dispatch failed; will retry', error: String(error) });
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Sends every delivery that is due, batch after batch. Returns how many tries were made. */
  async dispatchDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const due = await this.lease();
      await Promise.all(due.map((delivery) => this.send(delivery)));
      total += due.length;
      if (due.length < DISPATCH_BATCH) return total;
    }
  }

  private lease(): Promise<Due[]> {
    return this.tx.query<Due>(
      `WITH due AS (
         SELECT d.merchant_id, d.event_id, d.endpoint_id
           FROM webhook_deliveries d
           JOIN webhook_endpoints w ON w.merchant_id = d.merchant_id AND w.id = d.endpoint_id
          WHERE d.status = 'pending' AND d.next_attempt_at <= now()
            AND (d.locked_until IS NULL OR d.locked_until < now())
            AND w.enabled AND w.deleted_at IS NULL
          ORDER BY d.next_attempt_at
          LIMIT $1
            FOR UPDATE OF d SKIP LOCKED)
       UPDATE webhook_deliveries d
          -- to the millisecond: the lease is handed back as it is, to compare (see record)
          SET locked_until = date_trunc('milliseconds', now() + make_interval(secs => $2))
         FROM due, events e, webhook_endpoints w
        WHERE d.merchant_id = due.merchant_id AND d.event_id = due.event_id
          AND d.endpoint_id = due.endpoint_id
          AND e.merchant_id = d.merchant_id AND e.id = d.event_id
          AND w.merchant_id = d.merchant_id AND w.id = d.endpoint_id
       RETURNING d.merchant_id AS "merchantId", d.event_id AS "eventId",
                 d.endpoint_id AS "endpointId", d.attempts, d.locked_until AS lease,
                 e.type, e.data, e.created_at AS "createdAt", w.url, w.secrets`,
      [DISPATCH_BATCH, Math.ceil(this.config.WEBHOOK_TIMEOUT_MS / 1_000) + LEASE_MARGIN_SECONDS],
    );
  }

  /** One try: sign, post, record; then done, or the next try set, or given up. */
  private async send(delivery: Due): Promise<void> {
    const body = JSON.stringify({
      id: delivery.eventId,
      object: 'event',
      type: delivery.type,
      data: delivery.data,
      createdAt: delivery.createdAt.toISOString(),
    });
    const now = new Date();
    const started = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    try {
      const res = await fetch(delivery.url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': 'payments-api-webhooks',
          'webhook-id': delivery.eventId,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1_000)),
          'webhook-signature': signatures(delivery, now, body),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.config.WEBHOOK_TIMEOUT_MS),
      });
      status = res.status;
      await res.body?.cancel();
    } catch (e) {
      error = (e as Error).name === 'TimeoutError' ? 'no answer in time' : String(e);
    }
    const latency = Math.round(performance.now() - started);
    const delivered = status !== null && status >= 200 && status < 300;
    const outcome = await this.record(delivery, { delivered, status, error, latency });
    this.metrics.countWebhookDelivery(outcome);
  }

  private record(
    delivery: Due,
    attempt: { delivered: boolean; status: number | null; error: string | null; latency: number },
  ): Promise<'delivered' | 'retry' | 'given_up'> {
    const key = [delivery.merchantId, delivery.eventId, delivery.endpointId];
    return this.tx.run(async () => {
      await this.tx.query(
        `INSERT INTO webhook_attempts (merchant_id, event_id, endpoint_id, status_code, latency_ms, error)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [
          ...key,
          attempt.status,
          attempt.latency,
          attempt.error ?? (attempt.delivered ? null : `answered ${attempt.status}`),
        ],
      );
      // Only while the lease is ours: a redelivery asked meanwhile starts afresh.
      const [row] = await this.tx.query<{ status: 'delivered' | 'pending' | 'failed' }>(
        `UPDATE webhook_deliveries
            SET attempts = attempts + 1, locked_until = NULL,
                status = CASE WHEN $5 THEN 'delivered'
                              WHEN attempts + 1 >= $6 THEN 'failed' ELSE 'pending' END,
                delivered_at = CASE WHEN $5 THEN now() END,
                next_attempt_at = now() + make_interval(
                  secs => least($7 * power(2, attempts), $8) * (0.5 + random()))
          WHERE merchant_id = $1 AND event_id = $2 AND endpoint_id = $3 AND locked_until = $4
         RETURNING status`,
        [
          ...key,
          delivery.lease,
          attempt.delivered,
          this.config.WEBHOOK_MAX_ATTEMPTS,
          this.config.WEBHOOK_RETRY_SECONDS,
          MAX_RETRY_SECONDS,
        ],
      );
      if (!row || row.status === 'pending') return 'retry';
      return row.status === 'delivered' ? 'delivered' : 'given_up';
    });
  }
}

/**
 * Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per signing
 * secret still valid, separated by spaces, so that a receiver in the middle of a
 * secret rotation accepts either (the standardwebhooks package signs).
 */
function signatures(delivery: Due, now: Date, body: string): string {
  return delivery.secrets
    .filter((s) => s.expiresAt === null || new Date(s.expiresAt) > now)
    .map((s) => new Webhook(s.secret).sign(delivery.eventId, now, body))
    .join(' ');
}
