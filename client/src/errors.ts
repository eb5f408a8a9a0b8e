import type { components } from './schema.js';
import type { RetryReason } from './retry.js';

type Schemas = components['schemas'];

/** A problem's stable code: the last segment of its `type`, as openapi.yaml lists them. */
export type ProblemCode = Schemas['Problem']['type'] extends `/problems/${infer Code}`
  ? Code
  : never;

/** The problem+json body that comes with a code (extensions included where the spec has them). */
export type ProblemFor<C extends ProblemCode> = C extends 'validation-failed'
  ? Schemas['ValidationProblem']
  : C extends 'insufficient-funds'
    ? Schemas['InsufficientFundsProblem']
    : Schemas['Problem'];

/**
 * The server's final answer was an error (RFC 9457 problem details). Not retried:
 * `code` says why, `problem` is the body. A business error can be a replay too
 * (`replayed`: a 402 stored with the key is answered again on a retry).
 */
export class PaymentsApiError<C extends ProblemCode = ProblemCode> extends Error {
  override readonly name = 'PaymentsApiError';

  constructor(
    readonly status: number,
    /** The problem's code, or 'unknown' when the body was not problem+json (a proxy's page). */
    readonly code: C | 'unknown',
    readonly problem: ProblemFor<C> | undefined,
    readonly replayed: boolean,
    /** The key the operation was sent with: a later retry must reuse it. */
    readonly idempotencyKey: string | undefined,
    readonly requestId: string | null,
  ) {
    super(`${status} ${code}${problem?.detail ? `: ${problem.detail}` : ''}`);
  }

  /** Narrows to one code, with its problem body: `if (error.is('insufficient-funds')) error.problem.chargeId`. */
  is<K extends ProblemCode>(code: K): this is PaymentsApiError<K> & { problem: ProblemFor<K> } {
    return (this.code as string) === code;
  }
}

/**
 * Every attempt failed in a way worth retrying, and the attempts (or the deadline)
 * ran out. The operation may or may not have executed: retry it later with the same
 * `idempotencyKey` (the server then replays or executes it, once), never a new one.
 */
export class RetriesExhaustedError extends Error {
  override readonly name = 'RetriesExhaustedError';

  constructor(
    readonly operation: string,
    readonly attempts: number,
    readonly lastReason: RetryReason,
    readonly idempotencyKey: string | undefined,
    /** The last failure: a PaymentsApiError (409, 429, 5xx) or the network error. */
    override readonly cause: unknown,
  ) {
    super(
      `${operation}: gave up after ${attempts} attempt${attempts === 1 ? '' : 's'} (last: ${describe(lastReason, cause)})` +
        (idempotencyKey
          ? `; retry later with Idempotency-Key ${idempotencyKey}, never a new key`
          : ''),
    );
  }
}

function describe(reason: RetryReason, cause: unknown): string {
  if (cause instanceof PaymentsApiError) return cause.message;
  if (reason === 'pending') return '202, still pending';
  return `${reason}${cause instanceof Error ? `: ${cause.message}` : ''}`;
}

/** Reads a problem+json body's code ('unknown' if it has none we know). */
export function problemCode(body: unknown): ProblemCode | 'unknown' {
  const type = (body as { type?: unknown } | null)?.type;
  return typeof type === 'string' && type.startsWith('/problems/')
    ? (type.slice('/problems/'.length) as ProblemCode)
    : 'unknown';
}
