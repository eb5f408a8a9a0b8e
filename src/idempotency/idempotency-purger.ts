import { Inject, Injectable } from '@nestjs/common';
import { BackgroundTasks } from '../background/background-tasks.js';
import type { AppConfig } from '../config/config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { IdempotencyService, PURGE_BATCH_SIZE } from './idempotency.service.js';

/**
 * Deletes expired idempotency keys in the background (contract §4.9), every
 * IDEMPOTENCY_PURGE_INTERVAL_SECONDS. Requests never depend on it: an expired key
 * is already treated as unused when it is claimed. Each batch is one short
 * statement (IdempotencyService.deleteExpired), which leaves a key claimed anew.
 */
@Injectable()
export class IdempotencyPurger {
  constructor(
    private readonly keys: IdempotencyService,
    tasks: BackgroundTasks,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    tasks.every('idempotency key purge', config.IDEMPOTENCY_PURGE_INTERVAL_SECONDS * 1_000, () =>
      this.purgeExpired(),
    );
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
