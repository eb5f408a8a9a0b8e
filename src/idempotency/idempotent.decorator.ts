import { SetMetadata } from '@nestjs/common';

export interface IdempotentOptions {
  /** true: a request without Idempotency-Key is refused with 400 (routes that move money). */
  required: boolean;
  /** The Location header of a successful response, derived from its body. */
  location?: (body: { id: string }) => string;
  /**
   * The work calls a system outside the database, so it cannot be one transaction:
   * the handler runs it in phases, stores the response under the key itself in the
   * last one, and returns that RecordedResponse (decision 0012). The interceptor
   * only reads the key and replays a completed request.
   */
  phases?: boolean;
}

export const IDEMPOTENT = Symbol('idempotent');

/**
 * Marks a POST route as idempotent: its work runs in one transaction together with
 * the claim of the Idempotency-Key and the stored response (IdempotencyInterceptor).
 */
export const Idempotent = (options: IdempotentOptions) => SetMetadata(IDEMPOTENT, options);
