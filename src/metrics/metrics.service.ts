import { Inject, Injectable } from '@nestjs/common';
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AppConfig } from '../config/config.js';
import { APP_CONFIG } from '../config/config.module.js';

/** What happened to a request on an idempotent route (contract §3, /metrics). */
export type IdempotencyOutcome =
  'executed' | 'replayed' | 'in_use' | 'reused' | 'missing' | 'invalid';

/**
 * Prometheus metrics, in a registry of this app's own (not prom-client's global
 * one), so that several apps in one process (the tests) do not share counters.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly enabled: boolean;

  private readonly requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });

  private readonly duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer HTTP requests, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  private readonly idempotency = new Counter({
    name: 'idempotency_outcomes_total',
    help: 'Requests on idempotent routes by outcome: executed, replayed, in_use (409), reused (422), missing and invalid (400) keys.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly memoryReplays = new Counter({
    name: 'idempotency_memory_replays_total',
    help: 'Replays answered from the instance\'s memory of completed responses, without the database (part of idempotency_outcomes_total{outcome="replayed"}).',
    registers: [this.registry],
  });

  private readonly webhooks = new Counter({
    name: 'webhook_deliveries_total',
    help: 'Webhook delivery tries by outcome: delivered, retry (to be tried again), given_up.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly backgroundPasses = new Counter({
    name: 'background_task_passes_total',
    help: 'Passes of the background loops (key purge, event purge, top-up completer, webhook dispatcher), by task and outcome: ok or failed.',
    labelNames: ['task', 'outcome'] as const,
    registers: [this.registry],
  });

  private inFlight: () => number = () => 0;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    const inFlight: Gauge = new Gauge({
      name: 'http_requests_in_flight',
      help: 'Requests being handled, including those whose client has hung up (shutdown waits for them).',
      registers: [this.registry],
      collect: () => inFlight.set(this.inFlight()),
    });
    this.enabled = config.METRICS_ENABLED;
    if (this.enabled) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Counts and times every answered request, once its response is sent. The
   * route is its pattern (/charges/:id), never the raw path: bounded label values,
   * no ids in metrics.
   */
  observeRequests(http: FastifyInstance): void {
    if (!this.enabled) return;
    http.addHook('onResponse', (req, reply, done) => {
      const labels = {
        method: req.method,
        route: req.routeOptions.url ?? 'unmatched',
        status: String(reply.statusCode),
      };
      this.requests.inc(labels);
      this.duration.observe(labels, reply.elapsedTime / 1e3);
      done();
    });
  }

  /** Where http_requests_in_flight reads its value (createApp wires it to InFlightRequests). */
  countInFlightWith(count: () => number): void {
    this.inFlight = count;
  }

  countIdempotency(outcome: IdempotencyOutcome): void {
    if (this.enabled) this.idempotency.inc({ outcome });
  }

  countMemoryReplay(): void {
    if (this.enabled) this.memoryReplays.inc();
  }

  countWebhookDelivery(outcome: 'delivered' | 'retry' | 'given_up'): void {
    if (this.enabled) this.webhooks.inc({ outcome });
  }

  countBackgroundPass(task: string, outcome: 'ok' | 'failed'): void {
    if (this.enabled) this.backgroundPasses.inc({ task, outcome });
  }

  /**
   * A gauge of another module's figure that takes I/O to read (from the database,
   * say). A scrape never waits for it: each scrape shows the value the previous one
   * started reading, and starts the next read. So /metrics answers even when the
   * pool is exhausted or the database is down (the last value then stands), which
   * is when it matters most. Keep `read` cheap: it runs once per scrape.
   */
  gaugeFrom(name: string, help: string, read: () => Promise<number>): void {
    if (!this.enabled) return;
    let reading: Promise<void> | undefined;
    const gauge: Gauge = new Gauge({
      name,
      help,
      registers: [this.registry],
      collect: () => {
        reading ??= read()
          .then((value) => gauge.set(value))
          .catch(() => undefined) // the database did not answer: the last value stands
          .finally(() => (reading = undefined));
      },
    });
  }
}
