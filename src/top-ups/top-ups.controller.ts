import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import type { PhasedRequest } from '../idempotency/idempotency.service.js';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import { Keyed } from '../idempotency/keyed.decorator.js';
import type { RecordedResponse } from '../idempotency/recorded-response.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { CreateTopUpDto } from './dto/create-top-up.dto.js';
import type { TopUpView } from './top-up.view.js';
import { TopUpsService } from './top-ups.service.js';

@Controller()
export class TopUpsController {
  constructor(private readonly topUps: TopUpsService) {}

  /** Money in from a card: charged at the processor, credited here, in phases. */
  @Post('accounts/:accountId/top-ups')
  @Idempotent({ required: true, phases: true })
  create(
    @Keyed() request: PhasedRequest,
    @Param('accountId') accountId: string,
    @Body() dto: CreateTopUpDto,
  ): Promise<RecordedResponse> {
    return this.topUps.create(request, accountId, dto);
  }

  @Get('top-ups/:id')
  get(@MerchantId() merchantId: string, @Param('id') id: string): Promise<TopUpView> {
    return this.topUps.get(merchantId, id);
  }
}
