import {
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { MetricsService } from '../metrics/metrics.service.js';

/**
 * A pass of a loop: does what is due, returns how many things it did. `stopping` is
 * aborted on shutdown: a long pass stops taking new work, and ends what it holds.
 */
export type Pass = (stopping: AbortSignal) => Promise<number>;

/** One background loop: a pass, run every `intervalMs` (0: never on its own). */
export class PeriodicTask {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private readonly stopping = new AbortController();

  constructor(
    readonly name: string,
    private readonly intervalMs: number,
    private readonly pass: Pass,
    private readonly logger: Logger,
    private readonly metrics: MetricsService,
  ) {}

  start(): void {
    if (this.intervalMs > 0 && !this.timer) {
      this.timer = setInterval(() => void this.runPass(), this.intervalMs).unref();
    }
  }

  /**
   * One pass now, or the one under way: never two at once. A pass that fails is
   * logged and counted, and the next one tries again; it never throws.
   */
  runPass(): Promise<void> {
    this.running ??= this.pass(this.stopping.signal)
      .then((done) => {
        this.metrics.countBackgroundPass(this.name, 'ok');
        if (done > 0) this.logger.debug({ msg: `${this.name}: pass done`, count: done });
      })
      .catch((error: unknown) => {
        this.metrics.countBackgroundPass(this.name, 'failed');
        this.logger.warn({
          msg: `${this.name}: pass failed; the next one tries again`,
          error: String(error),
        });
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** No new pass; resolves once the one under way, if any, has ended. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.stopping.abort();
    await this.running;
  }
}

/**
 * The service's background loops, in one place: the purge of expired keys and
 * that of old events, the top-up completer, the webhook dispatcher. Each runs on
 * every instance (their statements let many run at once without meeting), starts
 * once the application is up, and on shutdown starts no new pass and waits for the
 * one under way, before the database pool closes (DatabaseModule closes it last).
 */
@Injectable()
export class BackgroundTasks implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('BackgroundTasks');
  private readonly tasks: PeriodicTask[] = [];

  constructor(private readonly metrics: MetricsService) {}

  /**
   * Registers a loop: `pass` every `intervalMs` (0 turns it off), returning how
   * many things it did, for the log.
   */
  every(name: string, intervalMs: number, pass: Pass): PeriodicTask {
    const task = new PeriodicTask(name, intervalMs, pass, this.logger, this.metrics);
    this.tasks.push(task);
    return task;
  }

  onApplicationBootstrap(): void {
    for (const task of this.tasks) task.start();
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.tasks.map((task) => task.stop()));
  }
}
