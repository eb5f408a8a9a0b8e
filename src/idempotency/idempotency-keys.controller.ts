import { Controller, Get, Param } from '@nestjs/common';
import { NotFoundError, ProblemError } from '../problems/problem.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { parseIdempotencyKey } from './idempotency-key.js';
import { type IdempotencyKeyView, toIdempotencyKeyView } from './idempotency-key.view.js';
import { IdempotencyService } from './idempotency.service.js';

/** "Did my retry go through?": what a merchant's own key remembers (contract §3). */
@Controller('idempotency-keys')
export class IdempotencyKeysController {
  constructor(private readonly keys: IdempotencyService) {}

  /** The key as sent in the header, percent-encoded in the path; either form (bare or quoted) works. */
  @Get(':key')
  async get(
    @MerchantId() merchantId: string,
    @Param('key') raw: string,
  ): Promise<IdempotencyKeyView> {
    const key = parseIdempotencyKey(raw);
    if (key === undefined) throw new ProblemError('idempotency-key-invalid', 'The key is empty.');
    const record = await this.keys.describe(merchantId, key);
    if (!record) throw new NotFoundError('idempotency key', key);
    return toIdempotencyKeyView(key, record);
  }
}
