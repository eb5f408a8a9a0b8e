import { Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { type AccountView, toAccountView } from './account.view.js';
import { AccountsService } from './accounts.service.js';
import { CreateAccountDto } from './dto/create-account.dto.js';
import { ListAccountsQuery } from './dto/list-accounts.query.js';

@Controller('accounts')
export class AccountsController {
  constructor(private readonly accounts: AccountsService) {}

  @Post()
  @Idempotent({ required: false, location: (account) => `/accounts/${account.id}` })
  create(@MerchantId() merchantId: string, @Body() dto: CreateAccountDto): Promise<AccountView> {
    return this.accounts.create(merchantId, dto);
  }

  @Get()
  list(@MerchantId() merchantId: string, @Query() query: ListAccountsQuery) {
    return this.accounts.list(merchantId, query);
  }

  @Get(':id')
  async get(@MerchantId() merchantId: string, @Param('id') id: string): Promise<AccountView> {
    return toAccountView(await this.accounts.get(merchantId, id));
  }
}
