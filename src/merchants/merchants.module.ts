import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiKeyGuard } from './api-key.guard.js';
import { Authentication } from './authentication.js';
import { MerchantsService } from './merchants.service.js';

@Module({
  providers: [MerchantsService, Authentication, { provide: APP_GUARD, useClass: ApiKeyGuard }],
  exports: [MerchantsService, Authentication],
})
export class MerchantsModule {}
