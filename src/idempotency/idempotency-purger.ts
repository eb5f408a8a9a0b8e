import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import type { AppConfig } from '../config/config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { IdempotencyService, PURGE_BATCH_SIZE } from './idempotency.service.js';

/**
 * Deletes expired idempotency keys in the background (contract §4.9). Requests
 * never depend on it: an expired key is already treated as unused when it is
 * looked up. Each batch skips the rows a request has locked (see
 * IdempotencyService.deleteExpired), so the purge never waits on, or holds up, a request.
 */
@Injectable()
export class IdempotencyPurger implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('IdempotencyPurger');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly keys: IdempotencyService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    const seconds = this.config.IDEMPOTENCY_PURGE_INTERVAL_SECONDS;
    if (seconds > 0) this.timer = setInterval(() => void this.runPass(), seconds * 1_000).unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One scheduled pass. A failure is logged and the next pass tries again. */
  runPass(): Promise<void> {
    this.running ??= this.purgeExpired()
      .then((deleted) => {
        if (deleted > 0) this.logger.log({ msg: 'expired idempotency keys purged', deleted });
      })
      .catch((error: unknown) => {
        this.logger.warn({ msg: 'idempotency key purge failed; will retry', error: String(error) });
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Deletes every expired key, `batchSize` rows per statement. Returns how many. */
  async purgeExpired(batchSize = PURGE_BATCH_SIZE): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await this.keys.deleteExpired(batchSize);
      total += deleted;
      if (deleted < batchSize) return total;
    }
  }
}
