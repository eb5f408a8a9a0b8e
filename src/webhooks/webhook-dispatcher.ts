import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { Webhook } from 'standardwebhooks';
import { BackgroundTasks } from '../background/background-tasks.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { type Attempt, type DueDelivery, WebhookDeliveries } from './webhook-deliveries.js';

/** Deliveries leased per pass, and sent at once. */
export const DISPATCH_BATCH = 20;
/**
 * A lease outlives the try (WEBHOOK_TIMEOUT_MS) by this much, time to record it.
 * Should an instance die holding one, another sends the delivery once it ends.
 */
const LEASE_MARGIN_SECONDS = 5;
/** The longest wait between two tries of one delivery. */
const MAX_RETRY_SECONDS = 6 * 3_600;

/**
 * Sends the outbox's webhooks: on every instance, every WEBHOOK_DISPATCH_INTERVAL_MS,
 * it leases the deliveries that are due (a lease, which another instance's pass
 * respects, so that instances do not send the same one at once), signs each as
 * Standard Webhooks asks, posts it, and records the try. At least once: a delivery
 * is done only when the endpoint answered 2xx, so one whose answer was lost goes
 * out again, with the same webhook-id for the receiver to recognise. Failed tries
 * wait longer each time (doubling, with jitter, up to six hours), up to
 * WEBHOOK_MAX_ATTEMPTS.
 */
@Injectable()
export class WebhookDispatcher implements OnModuleInit {
  constructor(
    private readonly deliveries: WebhookDeliveries,
    private readonly metrics: MetricsService,
    tasks: BackgroundTasks,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    tasks.every('webhook dispatcher', config.WEBHOOK_DISPATCH_INTERVAL_MS, () =>
      this.dispatchDue(),
    );
  }

  onModuleInit(): void {
    this.metrics.gaugeFrom(
      'webhook_oldest_undelivered_seconds',
      'Age of the oldest webhook delivery not yet done (0: none waiting).',
      () => this.deliveries.oldestPendingAge(),
    );
  }

  /** Sends every delivery that is due, batch after batch. Returns how many tries were made. */
  async dispatchDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const due = await this.deliveries.leaseDue(
        DISPATCH_BATCH,
        Math.ceil(this.config.WEBHOOK_TIMEOUT_MS / 1_000) + LEASE_MARGIN_SECONDS,
      );
      const attempts = await Promise.all(due.map((delivery) => this.send(delivery)));
      const outcomes = await this.deliveries.recordAttempts(
        due.map((delivery, i) => ({ delivery, attempt: attempts[i] })),
        {
          maxAttempts: this.config.WEBHOOK_MAX_ATTEMPTS,
          retrySeconds: this.config.WEBHOOK_RETRY_SECONDS,
          maxRetrySeconds: MAX_RETRY_SECONDS,
        },
      );
      for (const outcome of outcomes) this.metrics.countWebhookDelivery(outcome);
      total += due.length;
      if (due.length < DISPATCH_BATCH) return total;
    }
  }

  /** One try: sign and post; what came of it (recorded with the batch's). */
  private async send(delivery: DueDelivery): Promise<Attempt> {
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
    const latencyMs = Math.round(performance.now() - started);
    return {
      delivered: status !== null && status >= 200 && status < 300,
      status,
      error,
      latencyMs,
    };
  }
}

/**
 * Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per signing
 * secret still valid, separated by spaces, so that a receiver in the middle of a
 * secret rotation accepts either (the standardwebhooks package signs).
 */
function signatures(delivery: DueDelivery, now: Date, body: string): string {
  return delivery.secrets
    .filter((s) => s.expiresAt === null || new Date(s.expiresAt) > now)
    .map((s) => new Webhook(s.secret).sign(delivery.eventId, now, body))
    .join(' ');
}
