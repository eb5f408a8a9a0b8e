import { Global, Module } from '@nestjs/common';
import { WebhookDispatcher } from '../webhooks/webhook-dispatcher.js';
import { WebhookEndpointsController } from '../webhooks/webhook-endpoints.controller.js';
import { WebhookEndpointsService } from '../webhooks/webhook-endpoints.service.js';
import { EventsPurger } from './events-purger.js';
import { EventsController } from './events.controller.js';
import { EventsService } from './events.service.js';

/**
 * Events and their delivery by webhook. Global: every module that changes
 * something records its event through EventsService.
 */
@Global()
@Module({
  controllers: [EventsController, WebhookEndpointsController],
  providers: [EventsService, EventsPurger, WebhookEndpointsService, WebhookDispatcher],
  exports: [EventsService, WebhookDispatcher, EventsPurger],
})
export class EventsModule {}
