import { Controller, Get, Header, Inject, Logger, NotFoundException, Req } from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.js';
import type { ApiRequest } from '../http/api-request.js';
import { Public } from '../merchants/public.decorator.js';
import { ProblemError } from '../problems/problem.js';
import { MetricsService } from './metrics.service.js';

@Controller('metrics')
export class MetricsController {
  /** Served at all: METRICS_ENABLED, and in production only behind METRICS_TOKEN. */
  private readonly served: boolean;
  private readonly tokenRequired: boolean;

  constructor(
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.tokenRequired = config.METRICS_TOKEN !== undefined;
    const production = config.NODE_ENV === 'production';
    this.served = metrics.enabled && (this.tokenRequired || !production);
    if (metrics.enabled && !this.served) {
      new Logger('Metrics').warn({
        msg: 'no METRICS_TOKEN: /metrics is not served in production (it tells traffic per route and versions)',
      });
    }
  }

  /**
   * Prometheus text format, for a scraper: with METRICS_TOKEN set, only to
   * `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise); without it, to anyone
   * outside production, and to no one in production (404, as with METRICS_ENABLED=false).
   */
  @Get()
  @Public()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  async scrape(@Req() req: ApiRequest): Promise<string> {
    if (!this.served) throw new NotFoundException();
    // Authentication recognised the token (req.scraper), before anything else ran.
    if (this.tokenRequired && !req.scraper) {
      throw new ProblemError(
        'unauthorized',
        'Send the metrics token as "Authorization: Bearer <METRICS_TOKEN>".',
        {},
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
    return this.metrics.registry.metrics();
  }
}
