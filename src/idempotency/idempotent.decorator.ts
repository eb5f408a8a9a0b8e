import { SetMetadata } from '@nestjs/common';

export interface IdempotentOptions {
  /** true: a request without Idempotency-Key is refused with 400 (routes that move money). */
  required: boolean;
  /** The Location header of a successful response, derived from its body. */
  location?: (body: { id: string }) => string;
  /**
   * The work calls a system outside the database, so it cannot be one
   * transaction: the handler returns its Phases, without running any, and
   * AtomicPhases runs them under the key (decision 0012).
   */
  phases?: boolean;
  /**
   * The answer's `secret` is one (a webhook endpoint's signing secret): in the
   * copy stored under the key it is sealed with SECRETS_KEY, and opened to replay.
   */
  sealed?: boolean;
}

export const IDEMPOTENT = Symbol('idempotent');

/**
 * Marks a POST route as idempotent (IdempotencyInterceptor): its work runs in one
 * transaction together with the claim of the Idempotency-Key and the stored
 * response, or, with `phases`, in atomic phases under the key.
 */
export const Idempotent = (options: IdempotentOptions) => SetMetadata(IDEMPOTENT, options);
