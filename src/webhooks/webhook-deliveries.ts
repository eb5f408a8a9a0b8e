import { Injectable } from '@nestjs/common';
import type { List } from '../common/list.js';
import { TransactionHost } from '../database/transaction-host.js';
import type { EventType } from '../events/event.js';
import { EventSubscriber } from '../events/event-subscriber.js';
import { ProblemError } from '../problems/problem.js';
import type { SigningSecret } from './webhook-endpoints.service.js';

/** An event's delivery to one endpoint, with its latest tries (newest first). */
export interface DeliveryView {
  object: 'webhook_delivery';
  eventId: string;
  endpointId: string;
  /** pending (sent again at `nextAttemptAt`), delivered, or failed (given up). */
  status: 'pending' | 'delivered' | 'failed';
  /** Tries since it was queued or last redelivered. */
  attemptCount: number;
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  attempts: Array<{
    createdAt: string;
    /** What the endpoint answered; null when it did not (refused, cut, timed out). */
    statusCode: number | null;
    latencyMs: number;
    error: string | null;
  }>;
}

/** A redelivery of one event at most this often (429 between): three calls are not three sends each. */
export const REDELIVER_INTERVAL_SECONDS = 60;
/** Deliveries one recover call sends again at the most; a larger backlog takes several calls. */
export const RECOVER_LIMIT = 1_000;

/** Tries shown per delivery: redeliveries add to them, the retention ends them. */
export const ATTEMPTS_SHOWN = 50;
/** Deliveries shown per event: one per endpoint it was queued for. */
const DELIVERIES_SHOWN = 100;

/** A delivery leased to be sent: the event, where to, and how to sign it. */
export interface DueDelivery {
  merchantId: string;
  eventId: string;
  endpointId: string;
  attempts: number;
  /** Until when it is ours; recording a try checks it is still this. */
  lease: Date;
  type: EventType;
  data: { object: unknown };
  createdAt: Date;
  url: string;
  secrets: SigningSecret[];
}

/** One try of a delivery, as the dispatcher saw it. */
export interface Attempt {
  delivered: boolean;
  status: number | null;
  error: string | null;
  latencyMs: number;
  /** The endpoint's Retry-After (429, 503), in seconds: the next try waits at least that. */
  retryAfterSeconds: number | null;
}

/** Sends in flight now, by merchant and by endpoint (`merchant endpoint`), which a lease respects. */
export interface InFlight {
  merchants: Map<string, number>;
  endpoints: Map<string, number>;
}

/** How many sends may be in flight at once for one merchant, and for one endpoint. */
export interface SendCaps {
  perMerchant: number;
  perEndpoint: number;
}

/** When to try again: `retrySeconds · 2^tries` (capped), times 0.5 to 1.5. */
export interface RetryPolicy {
  maxAttempts: number;
  retrySeconds: number;
  maxRetrySeconds: number;
}

/**
 * The webhooks' deliveries and their attempts: their tables' only writer. Each
 * event is queued for the merchant's enabled endpoints in the event's own
 * statement (this is the outbox's EventSubscriber); the dispatcher leases what is
 * due and records each try through it; an endpoint's deletion drops what waited
 * for it. Its statements read the events and endpoints they join (one statement
 * each, where a method call would add a round trip).
 */
@Injectable()
export class WebhookDeliveries implements EventSubscriber {
  /**
   * A delivery of the event to each of the merchant's enabled endpoints. It names
   * the merchant and the event by parameter, not from the event's CTE: a
   * data-modifying CTE runs whether or not it is read, and on Citus an
   * INSERT … SELECT keyed by parameters goes to the merchant's node in one step,
   * where one keyed from the CTE was repartitioned through the coordinator (1 ms
   * against 14-56 ms per charge).
   */
  readonly onEvent = `INSERT INTO webhook_deliveries (merchant_id, event_id, endpoint_id)
    SELECT $1, $2, endpoint.id FROM webhook_endpoints endpoint
     WHERE endpoint.merchant_id = $1 AND endpoint.enabled AND endpoint.deleted_at IS NULL`;

  /** An event is needed while a delivery of it is still pending. */
  readonly stillNeeds = `EXISTS (SELECT 1 FROM webhook_deliveries d
    WHERE d.merchant_id = e.merchant_id AND d.event_id = e.id AND d.status = 'pending')`;

  constructor(private readonly tx: TransactionHost) {}

  /**
   * Leases up to `limit` deliveries that are due, to enabled endpoints, for
   * `leaseSeconds`: a lease that another instance's pass respects until it runs out
   * (then the delivery is sent again: at least once). Those in `skip` (`merchant
   * event endpoint`: tried already in this pass) wait for the next. Fair: no merchant gets more
   * than `caps.perMerchant` sends in flight, nor an endpoint `caps.perEndpoint`,
   * counting those `inFlight` already, so that one merchant's slow or dead endpoints
   * hold a few sending slots and never all of them. Oldest due first, within that.
   * Two passes that pick the same deliveries at once do not both lease them: the
   * second's UPDATE waits for the first's, checks the lease again on each row, and
   * leaves it. (Not FOR UPDATE SKIP LOCKED, which Citus refuses in a query across
   * merchants.)
   */
  leaseDue(
    limit: number,
    leaseSeconds: number,
    inFlight: InFlight,
    caps: SendCaps,
    skip: string[] = [],
  ): Promise<DueDelivery[]> {
    const endpoints = [...inFlight.endpoints.entries()];
    return this.tx.query<DueDelivery>(
      `WITH busy_merchant AS (
         SELECT * FROM unnest($3::text[], $4::int[]) AS b(merchant_id, n)),
       busy_endpoint AS (
         SELECT * FROM unnest($5::text[], $6::int[]) AS b(endpoint_key, n)),
       -- The first few due of each enabled endpoint, each from its own range of
       -- webhook_deliveries_due_by_endpoint: as many as the endpoint may take, so
       -- that a backlog behind one endpoint costs nothing here.
       candidate AS (
         SELECT d.merchant_id, d.event_id, d.endpoint_id, d.next_attempt_at,
                row_number() OVER (PARTITION BY d.merchant_id ORDER BY d.next_attempt_at) AS nth_of_merchant
           FROM webhook_endpoints w
           LEFT JOIN busy_endpoint be ON be.endpoint_key = w.merchant_id || ' ' || w.id
           CROSS JOIN LATERAL (
             SELECT d.merchant_id, d.event_id, d.endpoint_id, d.next_attempt_at
               FROM webhook_deliveries d
              WHERE d.merchant_id = w.merchant_id AND d.endpoint_id = w.id
                AND d.status = 'pending' AND d.next_attempt_at <= now()
                AND (d.locked_until IS NULL OR d.locked_until < now())
                AND NOT (d.merchant_id || ' ' || d.event_id || ' ' || d.endpoint_id = ANY ($9::text[]))
              ORDER BY d.next_attempt_at
              LIMIT greatest($8 - coalesce(be.n, 0), 0)) d
          WHERE w.enabled AND w.deleted_at IS NULL),
       due AS (
         SELECT c.merchant_id, c.event_id, c.endpoint_id
           FROM candidate c
           LEFT JOIN busy_merchant bm ON bm.merchant_id = c.merchant_id
          WHERE c.nth_of_merchant + coalesce(bm.n, 0) <= $7
          ORDER BY c.next_attempt_at
          LIMIT $1)
       UPDATE webhook_deliveries d
          -- to the millisecond: the lease is handed back as it is, to compare (see recordAttempts)
          SET locked_until = date_trunc('milliseconds', now() + make_interval(secs => $2))
         FROM due, events e, webhook_endpoints w
        WHERE d.merchant_id = due.merchant_id AND d.event_id = due.event_id
          AND d.endpoint_id = due.endpoint_id
          AND d.status = 'pending' AND (d.locked_until IS NULL OR d.locked_until < now())
          AND e.merchant_id = d.merchant_id AND e.id = d.event_id
          AND w.merchant_id = d.merchant_id AND w.id = d.endpoint_id
       RETURNING d.merchant_id AS "merchantId", d.event_id AS "eventId",
                 d.endpoint_id AS "endpointId", d.attempts, d.locked_until AS lease,
                 e.type, e.data, e.created_at AS "createdAt", w.url, w.secrets`,
      [
        limit,
        leaseSeconds,
        [...inFlight.merchants.keys()],
        [...inFlight.merchants.values()],
        endpoints.map(([key]) => key),
        endpoints.map(([, n]) => n),
        caps.perMerchant,
        caps.perEndpoint,
        skip,
      ],
    );
  }

  /**
   * Records a batch of tries and each delivery's next state, in one statement:
   * delivered, due again later, or given up after `maxAttempts`. A state changes
   * only while the lease is still the one handed out (a redelivery asked meanwhile
   * starts afresh); the try is recorded either way, unless its delivery is gone (its
   * endpoint deleted). Outcomes in the order given.
   */
  async recordAttempts(
    tries: Array<{ delivery: DueDelivery; attempt: Attempt }>,
    policy: RetryPolicy,
  ): Promise<Array<'delivered' | 'retry' | 'given_up'>> {
    if (tries.length === 0) return [];
    const column = <T>(pick: (t: { delivery: DueDelivery; attempt: Attempt }) => T) =>
      tries.map(pick);
    const rows = await this.tx.query<{ n: number; status: 'delivered' | 'pending' | 'failed' }>(
      `WITH try AS (
         -- now() as a column: Citus refuses it inside the CASE below
         SELECT *, now() AS at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                              $5::boolean[], $6::int[], $7::int[], $8::text[], $10::timestamptz[])
                  WITH ORDINALITY AS t(merchant_id, event_id, endpoint_id, lease,
                                       delivered, status_code, latency_ms, error, next_at, n)),
       recorded AS (
         INSERT INTO webhook_attempts (merchant_id, event_id, endpoint_id, status_code, latency_ms, error)
         -- a join, not a correlated EXISTS, which Citus refuses beside a CTE
         SELECT t.merchant_id, t.event_id, t.endpoint_id, t.status_code, t.latency_ms, t.error
           FROM try t
           JOIN webhook_deliveries d
             ON d.merchant_id = t.merchant_id AND d.event_id = t.event_id
            AND d.endpoint_id = t.endpoint_id)
       UPDATE webhook_deliveries d
          SET attempts = d.attempts + 1, locked_until = NULL,
              status = CASE WHEN t.delivered THEN 'delivered'
                            WHEN d.attempts + 1 >= $9 THEN 'failed' ELSE 'pending' END,
              delivered_at = CASE WHEN t.delivered THEN t.at END,
              next_attempt_at = t.next_at
         FROM try t
        WHERE d.merchant_id = t.merchant_id AND d.event_id = t.event_id
          AND d.endpoint_id = t.endpoint_id AND d.locked_until = t.lease
       RETURNING t.n::int AS n, d.status`,
      [
        column((t) => t.delivery.merchantId),
        column((t) => t.delivery.eventId),
        column((t) => t.delivery.endpointId),
        column((t) => t.delivery.lease),
        column((t) => t.attempt.delivered),
        column((t) => t.attempt.status),
        column((t) => t.attempt.latencyMs),
        column(
          (t) => t.attempt.error ?? (t.attempt.delivered ? null : `answered ${t.attempt.status}`),
        ),
        policy.maxAttempts,
        column((t) => nextTry(t.delivery.attempts, policy, t.attempt.retryAfterSeconds)),
      ],
    );
    const byPosition = new Map(rows.map((row) => [row.n, row.status]));
    return tries.map((_, i) => {
      const status = byPosition.get(i + 1);
      if (status === 'delivered') return 'delivered';
      return status === 'failed' ? 'given_up' : 'retry';
    });
  }

  /** Drops the deliveries still waiting for an endpoint (it is being deleted). */
  async dropPendingFor(merchantId: string, endpointId: string): Promise<void> {
    await this.tx.query(
      `DELETE FROM webhook_deliveries WHERE merchant_id = $1 AND endpoint_id = $2 AND status = 'pending'`,
      [merchantId, endpointId],
    );
  }

  /** Seconds since the oldest delivery still waiting was queued; 0 when none waits. */
  async oldestPendingAge(): Promise<number> {
    const [row] = await this.tx.query<{ age: number | null }>(
      `SELECT extract(epoch FROM now() - min(created_at))::float8 AS age
         FROM webhook_deliveries WHERE status = 'pending'`,
    );
    return row?.age ?? 0;
  }

  /**
   * Where the merchant's event went: one delivery per endpoint it was queued for
   * (at most DELIVERIES_SHOWN, oldest first), each with its last ATTEMPTS_SHOWN tries.
   */
  async of(merchantId: string, id: string): Promise<List<DeliveryView>> {
    const rows = await this.tx.query<
      Omit<DeliveryView, 'nextAttemptAt' | 'deliveredAt'> & {
        nextAttemptAt: Date | null;
        deliveredAt: Date | null;
      }
    >(
      `SELECT 'webhook_delivery' AS object, d.event_id AS "eventId", d.endpoint_id AS "endpointId",
              d.status, d.attempts AS "attemptCount",
              CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS "nextAttemptAt",
              d.delivered_at AS "deliveredAt",
              coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                         'createdAt', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                         'statusCode', a.status_code, 'latencyMs', a.latency_ms, 'error', a.error)
                         ORDER BY a.id DESC)
                  FROM (SELECT * FROM webhook_attempts a
                         WHERE a.merchant_id = d.merchant_id AND a.event_id = d.event_id
                           AND a.endpoint_id = d.endpoint_id
                         ORDER BY a.id DESC LIMIT $3) a), '[]') AS attempts
         FROM webhook_deliveries d
        WHERE d.merchant_id = $1 AND d.event_id = $2
        ORDER BY d.created_at, d.endpoint_id
        LIMIT $4`,
      [merchantId, id, ATTEMPTS_SHOWN, DELIVERIES_SHOWN + 1],
    );
    const data = rows.slice(0, DELIVERIES_SHOWN).map((row) => ({
      ...row,
      nextAttemptAt: toIso(row.nextAttemptAt),
      deliveredAt: toIso(row.deliveredAt),
    }));
    return { object: 'list', data, hasMore: rows.length > DELIVERIES_SHOWN };
  }

  /**
   * Sends the event again, to every enabled endpoint: each delivery is set back to
   * pending, due now, its tries counted afresh (an endpoint added since gets one).
   * Setting a state, so safe to repeat: a receiver that got it already ignores the
   * duplicate by its webhook-id, the event's id. Returns how many deliveries. At
   * most once per REDELIVER_INTERVAL_SECONDS for one event: a 429 with Retry-After
   * before that. "Due now" is the new row's default (EXCLUDED), not now() in the
   * SET: Citus takes no function that is not IMMUTABLE there.
   */
  async redeliver(merchantId: string, id: string): Promise<number> {
    const [recent] = await this.tx.query<{ wait: number | null }>(
      `SELECT ceil(extract(epoch FROM max(redelivered_at) + make_interval(secs => $3) - now()))::int AS wait
         FROM webhook_deliveries WHERE merchant_id = $1 AND event_id = $2`,
      [merchantId, id, REDELIVER_INTERVAL_SECONDS],
    );
    if (recent?.wait && recent.wait > 0) {
      throw new ProblemError(
        'too-many-requests',
        `Event ${id} was sent again less than ${REDELIVER_INTERVAL_SECONDS} s ago; its deliveries are under way.`,
        {},
        { 'Retry-After': String(recent.wait) },
      );
    }
    const rows = await this.tx.query(
      `INSERT INTO webhook_deliveries (merchant_id, event_id, endpoint_id, redelivered_at)
       SELECT $1, $2, endpoint.id, $3 FROM webhook_endpoints endpoint
        WHERE endpoint.merchant_id = $1 AND endpoint.enabled AND endpoint.deleted_at IS NULL
       ON CONFLICT (merchant_id, event_id, endpoint_id) DO UPDATE
         SET status = 'pending', attempts = 0, next_attempt_at = EXCLUDED.next_attempt_at,
             locked_until = NULL, delivered_at = NULL, redelivered_at = EXCLUDED.redelivered_at
       RETURNING 1`,
      [merchantId, id, new Date()],
    );
    return rows.length;
  }

  /**
   * Sends again what an endpoint missed: its failed deliveries (given up) queued
   * since `since`, at most RECOVER_LIMIT of them, oldest first, set back to pending
   * and due now. Safe to repeat: what was recovered is pending or delivered, not
   * failed, and is not taken twice. Returns how many.
   */
  async recover(merchantId: string, endpointId: string, since: Date): Promise<number> {
    const rows = await this.tx.query(
      `UPDATE webhook_deliveries
          SET status = 'pending', attempts = 0, next_attempt_at = $4, locked_until = NULL,
              redelivered_at = $4
        WHERE (merchant_id, event_id, endpoint_id) IN (
              SELECT merchant_id, event_id, endpoint_id FROM webhook_deliveries
               WHERE merchant_id = $1 AND endpoint_id = $2 AND status = 'failed'
                 AND created_at >= $3
               ORDER BY created_at
               LIMIT $5)
          AND status = 'failed'
       RETURNING 1`,
      [merchantId, endpointId, since, new Date(), RECOVER_LIMIT],
    );
    return rows.length;
  }
}

function toIso(value: Date | null): string | null {
  return value?.toISOString() ?? null;
}

/**
 * When a delivery that has had `attempts` tries is tried next: retrySeconds,
 * doubling with each try, capped at maxRetrySeconds, times a jitter of 0.5-1.5 so
 * that endpoints back from an outage are not all retried in the same second; and
 * never before the endpoint's own Retry-After, up to the same cap. Worked out
 * here, not in the UPDATE: Citus refuses `now() + <a function of a column>` in a
 * distributed write.
 */
function nextTry(attempts: number, policy: RetryPolicy, retryAfter: number | null): Date {
  const backoff = Math.min(policy.retrySeconds * 2 ** attempts, policy.maxRetrySeconds);
  const seconds = Math.max(
    backoff * (0.5 + Math.random()),
    Math.min(retryAfter ?? 0, policy.maxRetrySeconds),
  );
  return new Date(Date.now() + seconds * 1000);
}
