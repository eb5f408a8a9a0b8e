import { Body, Controller, Param, Post } from '@nestjs/common';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import type { DepositView } from './deposit.js';
import { DepositsService } from './deposits.service.js';
import { CreateDepositDto } from './dto/create-deposit.dto.js';

@Controller('accounts/:accountId/deposits')
export class DepositsController {
  constructor(private readonly deposits: DepositsService) {}

  @Post()
  @Idempotent({ required: true })
  create(
    @MerchantId() merchantId: string,
    @Param('accountId') accountId: string,
    @Body() dto: CreateDepositDto,
  ): Promise<DepositView> {
    return this.deposits.create(merchantId, accountId, dto);
  }
}
