import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { AtomicPhases } from './atomic-phases.js';
import { IdempotencyInterceptor } from './idempotency.interceptor.js';
import { IdempotencyKeysController } from './idempotency-keys.controller.js';
import { IdempotencyPurger } from './idempotency-purger.js';
import { IdempotencyService } from './idempotency.service.js';
import { KeyStorageGauges } from './key-storage.gauges.js';
import { RecoveryPoints } from './recovery-points.js';

/**
 * The idempotency protocol, whole: the interceptor on every route (it acts on
 * those marked @Idempotent()), the keys and their memory, requests in atomic
 * phases (AtomicPhases, which a feature's completer drives too), the purge.
 */
@Global()
@Module({
  controllers: [IdempotencyKeysController],
  providers: [
    IdempotencyService,
    AtomicPhases,
    RecoveryPoints,
    IdempotencyPurger,
    KeyStorageGauges,
    { provide: APP_INTERCEPTOR, useClass: IdempotencyInterceptor },
  ],
  exports: [AtomicPhases],
})
export class IdempotencyModule {}
