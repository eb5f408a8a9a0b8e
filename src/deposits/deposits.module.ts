import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module.js';
import { LedgerModule } from '../ledger/ledger.module.js';
import { DepositsController } from './deposits.controller.js';
import { DepositsService } from './deposits.service.js';

@Module({
  imports: [AccountsModule, LedgerModule],
  controllers: [DepositsController],
  providers: [DepositsService],
})
export class DepositsModule {}
