import { Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import type { ChargeView } from './charge.js';
import { ChargesService } from './charges.service.js';
import { CreateChargeDto } from './dto/create-charge.dto.js';
import { ListChargesQuery } from './dto/list-charges.query.js';

@Controller('charges')
export class ChargesController {
  constructor(private readonly charges: ChargesService) {}

  @Post()
  @Idempotent({ required: true, location: (charge) => `/charges/${charge.id}` })
  create(@MerchantId() merchantId: string, @Body() dto: CreateChargeDto): Promise<ChargeView> {
    return this.charges.create(merchantId, dto);
  }

  @Get()
  list(@MerchantId() merchantId: string, @Query() query: ListChargesQuery) {
    return this.charges.list(merchantId, query);
  }

  @Get(':id')
  get(@MerchantId() merchantId: string, @Param('id') id: string): Promise<ChargeView> {
    return this.charges.get(merchantId, id);
  }
}
