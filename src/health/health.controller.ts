import { Controller, Get } from '@nestjs/common';
import { ProblemError } from '../problems/problem.js';
import { TransactionHost } from '../database/transaction-host.js';
import { Public } from '../merchants/public.decorator.js';

@Controller('health')
export class HealthController {
  constructor(private readonly tx: TransactionHost) {}

  /** 200 when the database answers, 503 problem+json when it does not. */
  @Get()
  @Public()
  async check(): Promise<{ status: 'ok'; database: 'up' }> {
    try {
      await this.tx.query('SELECT 1');
    } catch {
      throw new ProblemError(
        'service-unavailable',
        'The database does not answer.',
        {},
        { 'Retry-After': '1' },
      );
    }
    return { status: 'ok', database: 'up' };
  }
}
