import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { ApiRequest } from '../http/api-request.js';
import type { PhasedRequest } from './idempotency.service.js';

/**
 * In a handler of a route run in phases (@Idempotent({ phases: true })): the
 * request its Idempotency-Key names, set by IdempotencyInterceptor.
 */
export const Keyed = createParamDecorator(
  (_: unknown, context: ExecutionContext): PhasedRequest =>
    context.switchToHttp().getRequest<ApiRequest>().keyed as PhasedRequest,
);
