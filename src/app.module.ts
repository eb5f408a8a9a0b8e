import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { AccountsModule } from './accounts/accounts.module.js';
import { ApiDocsController } from './api-docs/api-docs.controller.js';
import { BackgroundModule } from './background/background.module.js';
import { BrowserLabController } from './browser-lab/browser-lab.controller.js';
import { ChargesModule } from './charges/charges.module.js';
import { type AppConfig, connectionSettings } from './config/config.js';
import { ConfigModule } from './config/config.module.js';
import { DatabaseModule } from './database/database.module.js';
import { DepositsModule } from './deposits/deposits.module.js';
import { EventsModule } from './events/events.module.js';
import { HealthController } from './health/health.controller.js';
import { ProblemFilter } from './http/problem.filter.js';
import { IdempotencyModule } from './idempotency/idempotency.module.js';
import { LedgerModule } from './ledger/ledger.module.js';
import { MerchantsModule } from './merchants/merchants.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { RefundsModule } from './refunds/refunds.module.js';
import { TopUpsModule } from './top-ups/top-ups.module.js';
import { WebhooksModule } from './webhooks/webhooks.module.js';

@Module({})
export class AppModule {
  /**
   * The whole application, on the database at `databaseUrl` (already migrated),
   * calling the card processor at `processorUrl` (PROCESSOR_URL unless main.ts
   * started the local one).
   */
  static forRoot(
    config: AppConfig,
    databaseUrl: string,
    processorUrl = config.PROCESSOR_URL,
  ): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        DatabaseModule.forRoot(databaseUrl, config.DB_POOL_SIZE, connectionSettings(config)),
        MetricsModule,
        BackgroundModule,
        EventsModule,
        WebhooksModule,
        MerchantsModule,
        IdempotencyModule,
        AccountsModule,
        DepositsModule,
        ChargesModule,
        RefundsModule,
        LedgerModule,
        TopUpsModule.forRoot(processorUrl),
      ],
      controllers: [
        HealthController,
        ApiDocsController,
        // The retry lab in the browser offers the demo key: never in production.
        ...(config.NODE_ENV === 'production' ? [] : [BrowserLabController]),
      ],
      providers: [{ provide: APP_FILTER, useClass: ProblemFilter }],
    };
  }
}
