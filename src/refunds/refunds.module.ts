import { Module } from '@nestjs/common';
import { ChargesModule } from '../charges/charges.module.js';
import { LedgerModule } from '../ledger/ledger.module.js';
import { RefundsController } from './refunds.controller.js';
import { RefundsService } from './refunds.service.js';

@Module({
  imports: [ChargesModule, LedgerModule],
  controllers: [RefundsController],
  providers: [RefundsService],
})
export class RefundsModule {}
