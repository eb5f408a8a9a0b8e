import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import type { Phases } from '../idempotency/phases.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { CreateTopUpDto } from './dto/create-top-up.dto.js';
import type { TopUpView } from './top-up.js';
import { TopUpsService } from './top-ups.service.js';

@Controller()
export class TopUpsController {
  constructor(private readonly topUps: TopUpsService) {}

  /**
   * Money in from a card: charged at the processor, credited here. Its phases,
   * which the idempotency interceptor runs under the request's key: 201 once done,
   * 202 with Retry-After while the processor's answer is unknown, 402 declined.
   */
  @Post('accounts/:accountId/top-ups')
  @Idempotent({ required: true, phases: true })
  create(@Param('accountId') accountId: string, @Body() dto: CreateTopUpDto): Phases<TopUpView> {
    return this.topUps.create(accountId, dto);
  }

  @Get('top-ups/:id')
  get(@MerchantId() merchantId: string, @Param('id') id: string): Promise<TopUpView> {
    return this.topUps.get(merchantId, id);
  }
}
