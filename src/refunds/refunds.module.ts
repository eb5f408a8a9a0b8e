import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module.js';
import { ChargesModule } from '../charges/charges.module.js';
import { LedgerModule } from '../ledger/ledger.module.js';
import { RefundsController } from './refunds.controller.js';
import { RefundsService } from './refunds.service.js';

@Module({
  imports: [AccountsModule, ChargesModule, LedgerModule],
  controllers: [RefundsController],
  providers: [RefundsService],
})
export class RefundsModule {}
