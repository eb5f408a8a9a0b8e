import { type DynamicModule, Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module.js';
import { LedgerModule } from '../ledger/ledger.module.js';
import { PROCESSOR_URL, ProcessorClient } from './processor.client.js';
import { TopUpCompleter } from './top-up-completer.js';
import { TopUpsController } from './top-ups.controller.js';
import { TopUpsService } from './top-ups.service.js';

@Module({})
export class TopUpsModule {
  /**
   * `processorUrl`: the card processor this instance calls, PROCESSOR_URL or the
   * stand-in that `npm start` runs beside the API when it is unset (main.ts);
   * undefined: none, and top-ups stay pending until one is set.
   */
  static forRoot(processorUrl: string | undefined): DynamicModule {
    return {
      module: TopUpsModule,
      imports: [AccountsModule, LedgerModule],
      controllers: [TopUpsController],
      providers: [
        TopUpsService,
        ProcessorClient,
        TopUpCompleter,
        { provide: PROCESSOR_URL, useValue: processorUrl },
      ],
      exports: [TopUpsService, TopUpCompleter],
    };
  }
}
