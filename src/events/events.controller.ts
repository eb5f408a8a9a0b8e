import { Controller, Get, Param, Query } from '@nestjs/common';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { ListEventsQuery } from './dto/list-events.query.js';
import type { EventView } from './event.js';
import { EventsService } from './events.service.js';

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
}
