import { Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { ListEventsQuery } from './dto/list-events.query.js';
import { EventsService, type EventView } from './events.service.js';

@Controller('events')
export class EventsController {
  constructor(private readonly events: EventsService) {}

  @Get()
  list(@MerchantId() merchantId: string, @Query() query: ListEventsQuery) {
    return this.events.list(merchantId, query);
  }

  @Get(':id')
  get(@MerchantId() merchantId: string, @Param('id') id: string): Promise<EventView> {
    return this.events.get(merchantId, id);
  }

  /** Where the event went: its delivery to each endpoint, and their tries. */
  @Get(':id/deliveries')
  deliveries(@MerchantId() merchantId: string, @Param('id') id: string) {
    return this.events.deliveries(merchantId, id);
  }

  /** Sends the event again to every enabled endpoint. Safe to repeat: it sets, it does not add. */
  @Post(':id/redeliver')
  @HttpCode(202)
  async redeliver(@MerchantId() merchantId: string, @Param('id') id: string) {
    const deliveries = await this.events.redeliver(merchantId, id);
    return { object: 'redelivery', eventId: id, deliveries };
  }
}
