import { Global, Module } from '@nestjs/common';
import { EventSubscriber } from '../events/event-subscriber.js';
import { WebhookDeliveries } from './webhook-deliveries.js';
import { WebhookDeliveriesController } from './webhook-deliveries.controller.js';
import { WebhookDispatcher } from './webhook-dispatcher.js';
import { WebhookEndpointsController } from './webhook-endpoints.controller.js';
import { WebhookEndpointsService } from './webhook-endpoints.service.js';
import { WebhookTargets } from './webhook-targets.js';

/**
 * Webhooks: the merchants' endpoints, the deliveries of each event to them and
 * their tries, and the dispatcher that signs and sends. It subscribes to the
 * outbox (events/), which never imports it: it provides the EventSubscriber the
 * outbox runs with each event. Global, so that the outbox finds its subscriber.
 */
@Global()
@Module({
  controllers: [WebhookEndpointsController, WebhookDeliveriesController],
  providers: [
    WebhookEndpointsService,
    WebhookDeliveries,
    WebhookDispatcher,
    WebhookTargets,
    { provide: EventSubscriber, useExisting: WebhookDeliveries },
  ],
  exports: [EventSubscriber, WebhookDispatcher],
})
export class WebhooksModule {}
