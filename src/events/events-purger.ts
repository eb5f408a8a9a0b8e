import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { EventsService } from './events.service.js';

/**
 * Retention of events: an event older than EVENTS_TTL_SECONDS whose deliveries are
 * all done (delivered or given up) is deleted with its deliveries and their
 * attempts, in batches, every EVENTS_PURGE_INTERVAL_SECONDS. One still waiting to
 * be delivered is kept, however old.
 */
@Injectable()
export class EventsPurger implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('EventsPurger');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly events: EventsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap(): void {
    const seconds = this.config.EVENTS_PURGE_INTERVAL_SECONDS;
    if (seconds > 0) this.timer = setInterval(() => void this.runPass(), seconds * 1_000).unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  runPass(): Promise<void> {
    this.running ??= this.purgeExpired()
      .then((deleted) => {
        if (deleted > 0) this.logger.log({ msg: 'old events purged', deleted });
      })
      .catch((error: unknown) => {
        this.logger.warn({ msg: 'event purge failed; will retry', error: String(error) });
      })
      .finally(() => (this.running = undefined));
    return this.running;
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
