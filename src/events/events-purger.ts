import { Inject, Injectable } from '@nestjs/common';
import { BackgroundTasks } from '../background/background-tasks.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { EventsService } from './events.service.js';

/**
 * Retention of events: an event older than EVENTS_TTL_SECONDS that no subscriber
 * still needs (all its deliveries delivered or given up) is deleted, in batches,
 * every EVENTS_PURGE_INTERVAL_SECONDS. One still waiting to be delivered is kept,
 * however old.
 */
@Injectable()
export class EventsPurger {
  constructor(
    private readonly events: EventsService,
    tasks: BackgroundTasks,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    tasks.every('event purge', config.EVENTS_PURGE_INTERVAL_SECONDS * 1_000, () =>
      this.purgeExpired(),
    );
  }

  /** Deletes every event past retention, 1,000 per statement. Returns how many. */
  async purgeExpired(batchSize = 1_000): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await this.events.deleteExpired(this.config.EVENTS_TTL_SECONDS, batchSize);
      total += deleted;
      if (deleted < batchSize) return total;
    }
  }
}
