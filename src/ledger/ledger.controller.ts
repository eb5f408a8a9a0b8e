import { Controller, Get, Param, Query } from '@nestjs/common';
import { AccountsService } from '../accounts/accounts.service.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { ListLedgerQuery } from './list-ledger.query.js';
import { LedgerService } from './ledger.service.js';

@Controller('accounts/:accountId/ledger')
export class LedgerController {
  constructor(
    private readonly accounts: AccountsService,
    private readonly ledger: LedgerService,
  ) {}

  @Get()
  async list(
    @MerchantId() merchantId: string,
    @Param('accountId') accountId: string,
    @Query() query: ListLedgerQuery,
  ) {
    await this.accounts.get(merchantId, accountId); // 404 for an unknown or foreign account
    return this.ledger.list(merchantId, accountId, query);
  }
}
