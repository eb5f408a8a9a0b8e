import { Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { EventsService } from '../events/events.service.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { WebhookDeliveries } from './webhook-deliveries.js';

/** Where an event went by webhook, and sending it again. */
@Controller('events')
export class WebhookDeliveriesController {
  constructor(
    private readonly events: EventsService,
    private readonly deliveries: WebhookDeliveries,
  ) {}

  /** Its delivery to each endpoint, and their tries. */
  @Get(':id/deliveries')
  async list(@MerchantId() merchantId: string, @Param('id') id: string) {
    await this.events.get(merchantId, id); // 404 for an unknown or foreign event
    return this.deliveries.of(merchantId, id);
  }

  /** Sends the event again to every enabled endpoint. Safe to repeat: it sets, it does not add. */
  @Post(':id/redeliver')
  @HttpCode(202)
  async redeliver(@MerchantId() merchantId: string, @Param('id') id: string) {
    await this.events.get(merchantId, id);
    const deliveries = await this.deliveries.redeliver(merchantId, id);
    return { object: 'redelivery', eventId: id, deliveries };
  }
}
