import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { IdempotencyInterceptor } from './idempotency.interceptor.js';
import { IdempotencyKeysController } from './idempotency-keys.controller.js';
import { IdempotencyPurger } from './idempotency-purger.js';
import { IdempotencyService } from './idempotency.service.js';

/** Registers the interceptor for every route; it acts only on routes marked @Idempotent(). */
@Global()
@Module({
  controllers: [IdempotencyKeysController],
  providers: [
    IdempotencyService,
    IdempotencyPurger,
    { provide: APP_INTERCEPTOR, useClass: IdempotencyInterceptor },
  ],
  exports: [IdempotencyService],
})
export class IdempotencyModule {}
