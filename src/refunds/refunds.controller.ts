import { Body, Controller, Param, Post } from '@nestjs/common';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { CreateRefundDto } from './dto/create-refund.dto.js';
import type { RefundView } from './refund.js';
import { RefundsService } from './refunds.service.js';

@Controller('charges/:chargeId/refunds')
export class RefundsController {
  constructor(private readonly refunds: RefundsService) {}

  @Post()
  @Idempotent({ required: true })
  create(
    @MerchantId() merchantId: string,
    @Param('chargeId') chargeId: string,
    @Body() dto: CreateRefundDto,
  ): Promise<RefundView> {
    return this.refunds.create(merchantId, chargeId, dto);
  }
}
