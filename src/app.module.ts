import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { AccountsModule } from './accounts/accounts.module.js';
import { ChargesModule } from './charges/charges.module.js';
import { ProblemFilter } from './http/problem.filter.js';
import { type AppConfig, connectionSettings } from './config/config.js';
import { ConfigModule } from './config/config.module.js';
import { DatabaseModule } from './database/database.module.js';
import { DepositsModule } from './deposits/deposits.module.js';
import { DocsController } from './docs/docs.controller.js';
import { HealthController } from './health/health.controller.js';
import { LabController } from './lab/lab.controller.js';
import { IdempotencyModule } from './idempotency/idempotency.module.js';
import { LedgerModule } from './ledger/ledger.module.js';
import { MerchantsModule } from './merchants/merchants.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { RefundsModule } from './refunds/refunds.module.js';
import { TopUpsModule } from './top-ups/top-ups.module.js';
import { EventsModule } from './events/events.module.js';

@Module({})
export class AppModule {
  /** The whole application, on the database at `databaseUrl` (already migrated). */
  static forRoot(config: AppConfig, databaseUrl: string): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        DatabaseModule.forRoot(databaseUrl, config.DB_POOL_SIZE, connectionSettings(config)),
        MetricsModule,
        EventsModule,
        MerchantsModule,
        IdempotencyModule,
        AccountsModule,
        DepositsModule,
        ChargesModule,
        RefundsModule,
        LedgerModule,
        TopUpsModule,
      ],
      controllers: [
        HealthController,
        DocsController,
        // The retry lab in the browser offers the demo key: never in production.
        ...(config.NODE_ENV === 'production' ? [] : [LabController]),
      ],
      providers: [{ provide: APP_FILTER, useClass: ProblemFilter }],
    };
  }
}
