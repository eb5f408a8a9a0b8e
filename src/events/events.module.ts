import { Global, Module } from '@nestjs/common';
import { EventsPurger } from './events-purger.js';
import { EventsController } from './events.controller.js';
import { EventsService } from './events.service.js';

/**
 * The outbox. Global: every module that changes something records its event
 * through EventsService. Its subscriber, the webhooks, is a module of its own
 * that imports this one.
 */
@Global()
@Module({
  controllers: [EventsController],
  providers: [EventsService, EventsPurger],
  exports: [EventsService, EventsPurger],
})
export class EventsModule {}
