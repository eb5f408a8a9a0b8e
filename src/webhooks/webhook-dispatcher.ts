import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { Webhook } from 'standardwebhooks';
import { BackgroundTasks } from '../background/background-tasks.js';
import { SecretBox } from '../config/secret-box.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import {
  type DueDelivery,
  type InFlight,
  type RetryPolicy,
  type SendCaps,
  WebhookDeliveries,
} from './webhook-deliveries.js';
import { WebhookEndpointsService } from './webhook-endpoints.service.js';
import { postWebhook } from './webhook-sender.js';
import { WebhookTargets } from './webhook-targets.js';

/**
 * Sends in flight on one instance at once. Each holds a socket until its endpoint
 * answers or WEBHOOK_TIMEOUT_MS runs out; a slot is given to the next delivery as
 * soon as one frees.
 */
export const MAX_IN_FLIGHT = 32;
/**
 * At most this many of them for one merchant, and for one endpoint: a merchant whose
 * endpoints hang holds eight slots for a timeout, never all of them, and a receiver
 * is not flooded by the retries of a backlog.
 */
export const SEND_CAPS: SendCaps = { perMerchant: 8, perEndpoint: 2 };
/**
 * A lease outlives the try (WEBHOOK_TIMEOUT_MS) by this much, time to record it.
 * Should an instance die holding one, another sends the delivery once it ends.
 */
const LEASE_MARGIN_SECONDS = 5;
/** The longest wait between two tries of one delivery. */
const MAX_RETRY_SECONDS = 6 * 3_600;

/**
 * Sends the outbox's webhooks: on every instance, every WEBHOOK_DISPATCH_INTERVAL_MS,
 * a pass leases the deliveries that are due (a lease, which another instance's
 * pass respects, so that instances do not send the same one at once), signs each
 * as Standard Webhooks asks, posts it to an address WebhookTargets allows, and
 * records the try as soon as it ends. At least once: a delivery is done only when
 * the endpoint answered 2xx, so one whose answer was lost goes out again, with the
 * same webhook-id for the receiver to recognise. Failed tries wait longer each time
 * (doubling, with jitter, up to six hours, never less than the endpoint's own
 * Retry-After), up to WEBHOOK_MAX_ATTEMPTS; what each try says of its endpoint
 * (410 Gone, failing for days) WebhookEndpointsService acts on.
 */
@Injectable()
export class WebhookDispatcher implements OnModuleInit {
  private readonly logger = new Logger('WebhookDispatcher');
  private readonly policy: RetryPolicy;
  private readonly leaseSeconds: number;

  constructor(
    private readonly deliveries: WebhookDeliveries,
    private readonly endpoints: WebhookEndpointsService,
    private readonly targets: WebhookTargets,
    private readonly box: SecretBox,
    private readonly metrics: MetricsService,
    tasks: BackgroundTasks,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.policy = {
      maxAttempts: config.WEBHOOK_MAX_ATTEMPTS,
      retrySeconds: config.WEBHOOK_RETRY_SECONDS,
      maxRetrySeconds: MAX_RETRY_SECONDS,
    };
    this.leaseSeconds = Math.ceil(config.WEBHOOK_TIMEOUT_MS / 1_000) + LEASE_MARGIN_SECONDS;
    tasks.every('webhook dispatcher', config.WEBHOOK_DISPATCH_INTERVAL_MS, (stopping) =>
      this.dispatchDue(stopping),
    );
  }

  onModuleInit(): void {
    this.metrics.gaugeFrom(
      'webhook_oldest_undelivered_seconds',
      'Age of the oldest webhook delivery not yet done (0: none waiting).',
      () => this.deliveries.oldestPendingAge(),
    );
  }

  /**
   * One pass: tries every delivery that is due, each once, MAX_IN_FLIGHT at a
   * time and fairly (SEND_CAPS); leases more as slots free, and what comes due
   * meanwhile, until nothing is due and nothing in flight. On shutdown (`stopping`)
   * it leases nothing more, and ends when what it sends has ended. Returns how many
   * tries it made.
   */
  async dispatchDue(stopping?: AbortSignal): Promise<number> {
    const sending = new Map<Promise<void>, DueDelivery>();
    // Deliveries whose next try is due at once (WEBHOOK_RETRY_SECONDS=0, as in the
    // tests) go again in the next pass, not this one; otherwise a try's next one is
    // later, and this stays empty however long the pass.
    const dueAgainAtOnce = new Set<string>();
    let tries = 0;
    let slotFreed = (): void => undefined;
    for (;;) {
      // Woken when a send ends (a slot is free), or at the next interval (more may be
      // due by then), whichever comes first; on shutdown, only when a send ends.
      const woken = new Promise<void>((resolve) => (slotFreed = resolve));
      const room = stopping?.aborted ? 0 : MAX_IN_FLIGHT - sending.size;
      const due = room > 0 ? await this.lease(room, sending, dueAgainAtOnce) : [];
      for (const delivery of due) {
        tries += 1;
        if (this.policy.retrySeconds === 0) dueAgainAtOnce.add(keyOf(delivery));
        const send: Promise<void> = this.sendAndRecord(delivery).finally(() => {
          sending.delete(send);
          slotFreed();
        });
        sending.set(send, delivery);
      }
      if (sending.size === 0) return tries;
      const interval = stopping?.aborted
        ? undefined
        : setTimeout(slotFreed, this.config.WEBHOOK_DISPATCH_INTERVAL_MS || 1_000);
      await woken;
      clearTimeout(interval);
    }
  }

  /** Up to `room` due deliveries, within the caps of what is in flight, but those to `skip`. */
  private async lease(
    room: number,
    sending: Map<Promise<void>, DueDelivery>,
    skip: Set<string>,
  ): Promise<DueDelivery[]> {
    const inFlight: InFlight = { merchants: new Map(), endpoints: new Map() };
    for (const { merchantId, endpointId } of sending.values()) {
      const endpoint = `${merchantId} ${endpointId}`;
      inFlight.merchants.set(merchantId, (inFlight.merchants.get(merchantId) ?? 0) + 1);
      inFlight.endpoints.set(endpoint, (inFlight.endpoints.get(endpoint) ?? 0) + 1);
    }
    return this.deliveries.leaseDue(room, this.leaseSeconds, inFlight, SEND_CAPS, [...skip]);
  }

  /**
   * One try, and its record, as soon as it ends. A record the database does not
   * take is not lost: the lease runs out, and the delivery goes again.
   */
  private async sendAndRecord(delivery: DueDelivery): Promise<void> {
    try {
      const body = JSON.stringify({
        id: delivery.eventId,
        object: 'event',
        type: delivery.type,
        data: delivery.data,
        createdAt: delivery.createdAt.toISOString(),
      });
      const now = new Date();
      const headers = {
        'Content-Type': 'application/json',
        'User-Agent': 'payments-api-webhooks',
        'webhook-id': delivery.eventId,
        'webhook-timestamp': String(Math.floor(now.getTime() / 1_000)),
        'webhook-signature': signatures(delivery, now, body, this.box),
      };
      const outcome = await postWebhook(
        delivery.url,
        headers,
        body,
        this.config.WEBHOOK_TIMEOUT_MS,
        this.targets,
      );
      const delivered = outcome.status !== null && outcome.status >= 200 && outcome.status < 300;
      const [recorded] = await this.deliveries.recordAttempts(
        [{ delivery, attempt: { ...outcome, delivered } }],
        this.policy,
      );
      this.metrics.countWebhookDelivery(recorded);
      await this.endpoints.afterTry(delivery.merchantId, delivery.endpointId, outcome);
    } catch (error) {
      this.logger.warn({
        msg: 'a webhook try was not recorded; it goes again when its lease runs out',
        eventId: delivery.eventId,
        error: String(error),
      });
    }
  }
}

function keyOf({ merchantId, eventId, endpointId }: DueDelivery): string {
  return `${merchantId} ${eventId} ${endpointId}`;
}

/**
 * Standard Webhooks: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per signing
 * secret still valid, separated by spaces, so that a receiver in the middle of a
 * secret rotation accepts either (the standardwebhooks package signs). The
 * secrets are kept sealed (SecretBox), and opened only here, to sign.
 */
function signatures(delivery: DueDelivery, now: Date, body: string, box: SecretBox): string {
  return delivery.secrets
    .filter((s) => s.expiresAt === null || new Date(s.expiresAt) > now)
    .map((s) => new Webhook(box.open(s.secret)).sign(delivery.eventId, now, body))
    .join(' ');
}
