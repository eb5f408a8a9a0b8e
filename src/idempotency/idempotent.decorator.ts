import { SetMetadata } from '@nestjs/common';

export interface IdempotentOptions {
  /** true: a request without Idempotency-Key is refused with 400 (routes that move money). */
  required: boolean;
  /** The Location header of a successful response, derived from its body. */
  location?: (body: { id: string }) => string;
}

export const IDEMPOTENT = Symbol('idempotent');

/**
 * Marks a POST route as idempotent: its work runs in one transaction together with
 * the claim of the Idempotency-Key and the stored response (IdempotencyInterceptor).
 */
export const Idempotent = (options: IdempotentOptions) => SetMetadata(IDEMPOTENT, options);
