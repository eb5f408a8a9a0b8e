import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module.js';
import { LedgerModule } from '../ledger/ledger.module.js';
import { ProcessorClient } from './processor.client.js';
import { TopUpCompleter } from './top-up-completer.js';
import { TopUpsController } from './top-ups.controller.js';
import { TopUpsService } from './top-ups.service.js';

@Module({
  imports: [AccountsModule, LedgerModule],
  controllers: [TopUpsController],
  providers: [TopUpsService, ProcessorClient, TopUpCompleter],
  exports: [TopUpsService, TopUpCompleter],
})
export class TopUpsModule {}
