import { Controller, Get, Header, NotFoundException } from '@nestjs/common';
import { Public } from '../merchants/public.decorator.js';
import { MetricsService } from './metrics.service.js';

@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  /** Prometheus text format. No API key (scrapers); METRICS_ENABLED=false answers 404. */
  @Get()
  @Public()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  async scrape(): Promise<string> {
    if (!this.metrics.enabled) throw new NotFoundException();
    return this.metrics.registry.metrics();
  }
}
