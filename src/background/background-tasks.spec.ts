import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Logger } from '@nestjs/common';
import type { AppConfig } from '../config/config.js';
import { IdempotencyPurger } from '../idempotency/idempotency-purger.js';
import type { IdempotencyService } from '../idempotency/idempotency.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { BackgroundTasks } from './background-tasks.js';

/** A pass that fails `failures` times, then does `rows` things, one batch per call. */
function flaky(failures: number, rows: number) {
  const calls: string[] = [];
  return {
    calls,
    remaining: () => rows,
    pass: async () => {
      calls.push('pass');
      if (failures-- > 0) throw new Error('connection terminated');
      const done = rows;
      rows = 0;
      return done;
    },
  };
}

/** A pass that runs until `finish()` is called. */
function held() {
  let finish!: () => void;
  let started = 0;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    finish,
    started: () => started,
    pass: async () => {
      started += 1;
      await done;
      return 1;
    },
  };
}

async function passes(metrics: MetricsService): Promise<Record<string, number>> {
  const metric = await metrics.registry.getSingleMetric('background_task_passes_total')!.get();
  return Object.fromEntries(metric.values.map((v) => [v.labels.outcome, v.value]));
}

let metrics: MetricsService;
let tasks: BackgroundTasks;

beforeAll(() => Logger.overrideLogger(false));

describe('BackgroundTasks: one helper for every background loop', () => {
  beforeEach(() => {
    metrics = new MetricsService({ METRICS_ENABLED: true } as AppConfig);
    tasks = new BackgroundTasks(metrics);
  });

  it('keeps going after a failed pass, which it counts: the next pass does the work', async () => {
    const work = flaky(1, 3);
    const task = tasks.every('purge', 0, work.pass);

    await expect(task.runPass()).resolves.toBeUndefined();
    expect(work.remaining()).toBe(3);
    await task.runPass();

    expect(work.calls).toHaveLength(2);
    expect(work.remaining()).toBe(0);
    expect(await passes(metrics)).toEqual({ failed: 1, ok: 1 });
  });

  it('never runs two passes of one loop at once', async () => {
    const work = held();
    const task = tasks.every('dispatcher', 0, work.pass);

    const first = task.runPass();
    const second = task.runPass();
    work.finish();
    await Promise.all([first, second]);

    expect(second).toBe(first);
    expect(work.started()).toBe(1);
  });

  it('on shutdown waits for the pass under way, and starts none after it', async () => {
    const work = held();
    const task = tasks.every('completer', 10, work.pass);
    tasks.onApplicationBootstrap();
    const running = task.runPass();

    let stopped = false;
    const stopping = tasks.onModuleDestroy().then(() => (stopped = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    work.finish();
    await stopping;
    await running;
    await new Promise((resolve) => setTimeout(resolve, 30)); // three intervals: no new pass

    expect(work.started()).toBe(1);
  });
});

describe('a purger on it', () => {
  it('deletes batch after batch until a batch comes back short', async () => {
    let rows = 5;
    const keys = {
      deleteExpired: async (batchSize: number) => {
        const batch = Math.min(rows, batchSize);
        rows -= batch;
        return batch;
      },
    } as unknown as IdempotencyService;
    const config = { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: 60 } as AppConfig;
    const purger = new IdempotencyPurger(keys, new BackgroundTasks(metrics), config);

    expect(await purger.purgeExpired(2)).toBe(5);
    expect(rows).toBe(0);
  });
});
