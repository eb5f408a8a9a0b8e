import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { TopUpsService } from './top-ups.service.js';

/** Top-ups leased per pass: a pass stays short, and other instances take the rest. */
export const COMPLETER_BATCH = 10;

/**
 * Finishes the top-ups that requests left halfway: the process died between phases,
 * the client went away, or the processor did not answer. It runs on every
 * instance; a top-up is taken only when its lease has run out and its next try is
 * due, with SKIP LOCKED, so instances never work on the same one. Each is driven
 * exactly as a retry would drive it: the same processor call, with the same key.
 */
@Injectable()
export class TopUpCompleter implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('TopUpCompleter');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly topUps: TopUpsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    const seconds = this.config.COMPLETER_INTERVAL_SECONDS;
    if (seconds > 0) this.timer = setInterval(() => void this.runPass(), seconds * 1_000).unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass (at most one at a time). A failure is logged; the next pass tries again. */
  runPass(): Promise<void> {
    this.running ??= this.completeDue()
      .then((done) => {
        if (done > 0) this.logger.log({ msg: 'top-ups driven by the completer', count: done });
      })
      .catch((error: unknown) => {
        this.logger.warn({ msg: 'completer pass failed; will retry', error: String(error) });
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Leases the due top-ups, batch after batch, and drives each. Returns how many. */
  async completeDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const due = await this.topUps.leaseDue(COMPLETER_BATCH);
      for (const topUp of due) {
        if (topUp.recoveryPoint === 'refunding') await this.topUps.refund(topUp);
        else await this.topUps.drive(topUp, this.topUps.requestOf(topUp));
      }
      total += due.length;
      if (due.length < COMPLETER_BATCH) return total;
    }
  }
}
