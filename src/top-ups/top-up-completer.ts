import { Inject, Injectable } from '@nestjs/common';
import { BackgroundTasks } from '../background/background-tasks.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import { AtomicPhases } from '../idempotency/atomic-phases.js';
import { TopUpsService } from './top-ups.service.js';

/**
 * Finishes the top-ups that requests left halfway: the process died between
 * phases, the client went away after a 202, or the processor did not answer. On
 * every instance, every COMPLETER_INTERVAL_SECONDS. A top-up is taken only once
 * its lease has run out and its next try is due, and it is driven exactly as the
 * client's retry would drive it: through AtomicPhases, with the same processor
 * call and the same key.
 */
@Injectable()
export class TopUpCompleter {
  constructor(
    private readonly phases: AtomicPhases,
    private readonly topUps: TopUpsService,
    tasks: BackgroundTasks,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    tasks.every('top-up completer', config.COMPLETER_INTERVAL_SECONDS * 1_000, () =>
      this.completeDue(),
    );
  }

  /** Drives every top-up that is due, batch after batch. Returns how many it took. */
  completeDue(): Promise<number> {
    return this.phases.resumeDue(this.topUps.phases);
  }
}
