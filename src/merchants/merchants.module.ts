import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiKeyGuard } from './api-key.guard.js';
import { MerchantsService } from './merchants.service.js';

@Module({
  providers: [MerchantsService, { provide: APP_GUARD, useClass: ApiKeyGuard }],
  exports: [MerchantsService],
})
export class MerchantsModule {}
