import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { ApiRequest } from '../http/api-request.js';

/** The id of the authenticated merchant: every query a handler makes is scoped by it. */
export const MerchantId = createParamDecorator(
  (_: unknown, context: ExecutionContext): string =>
    context.switchToHttp().getRequest<ApiRequest>().merchant.id,
);
