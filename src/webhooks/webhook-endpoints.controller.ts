import { Body, Controller, Delete, Get, HttpCode, Param, Post, Put, Query } from '@nestjs/common';
import { ListWebhookEndpointsQuery } from './dto/list-webhook-endpoints.query.js';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import {
  CreateWebhookEndpointDto,
  RecoverWebhookEndpointDto,
  ReplaceWebhookEndpointDto,
} from './dto/webhook-endpoint.dto.js';
import { type WebhookEndpointView, WebhookEndpointsService } from './webhook-endpoints.service.js';

@Controller('webhook-endpoints')
export class WebhookEndpointsController {
  constructor(private readonly endpoints: WebhookEndpointsService) {}

  /** The answer carries the signing secret, this once (and in a replay with the same key). */
  @Post()
  @Idempotent({
    required: false,
    location: (endpoint) => `/webhook-endpoints/${endpoint.id}`,
    sealed: true,
  })
  create(
    @MerchantId() merchantId: string,
    @Body() dto: CreateWebhookEndpointDto,
  ): Promise<WebhookEndpointView> {
    return this.endpoints.create(merchantId, dto);
  }

  @Get()
  list(@MerchantId() merchantId: string, @Query() query: ListWebhookEndpointsQuery) {
    return this.endpoints.list(merchantId, query);
  }

  @Get(':id')
  get(@MerchantId() merchantId: string, @Param('id') id: string): Promise<WebhookEndpointView> {
    return this.endpoints.get(merchantId, id);
  }

  /** Sets url, description and enabled (false: disabled; events meanwhile are not queued for it). */
  @Put(':id')
  replace(
    @MerchantId() merchantId: string,
    @Param('id') id: string,
    @Body() dto: ReplaceWebhookEndpointDto,
  ): Promise<WebhookEndpointView> {
    return this.endpoints.replace(merchantId, id, dto);
  }

  @Delete(':id')
  @HttpCode(204)
  async delete(@MerchantId() merchantId: string, @Param('id') id: string): Promise<void> {
    await this.endpoints.delete(merchantId, id);
  }

  /**
   * A new signing secret, shown once; the old one keeps signing for a while beside it.
   * Each call adds a secret: a retry with the same Idempotency-Key replays the first.
   */
  @Post(':id/rotate-secret')
  @HttpCode(200)
  @Idempotent({ required: false, sealed: true })
  rotateSecret(
    @MerchantId() merchantId: string,
    @Param('id') id: string,
  ): Promise<WebhookEndpointView> {
    return this.endpoints.rotateSecret(merchantId, id);
  }

  /**
   * Sends again what the endpoint missed since `since` (its deliveries given up), as
   * after an outage: at most 7 days back, 1,000 per call. Safe to repeat.
   */
  @Post(':id/recover')
  @HttpCode(202)
  async recover(
    @MerchantId() merchantId: string,
    @Param('id') id: string,
    @Body() dto: RecoverWebhookEndpointDto,
  ) {
    const since = new Date(dto.since);
    const deliveries = await this.endpoints.recover(merchantId, id, since);
    return { object: 'recovery', endpointId: id, since: since.toISOString(), deliveries };
  }
}
