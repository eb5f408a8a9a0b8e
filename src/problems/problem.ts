/**
 * The stable error codes of contract §5. A code is part of the API: clients branch
 * on it, so codes are never renamed. The HTTP status is decided here, at the edge.
 */
export const PROBLEMS = {
  'validation-failed': { status: 400, title: 'Validation failed' },
  'malformed-json': { status: 400, title: 'Malformed JSON' },
  'malformed-request': { status: 400, title: 'Malformed HTTP request' },
  'idempotency-key-missing': { status: 400, title: 'Idempotency-Key header missing' },
  'idempotency-key-invalid': { status: 400, title: 'Idempotency-Key header invalid' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  'insufficient-funds': { status: 402, title: 'Insufficient funds' },
  'card-declined': { status: 402, title: 'Card declined' },
  'top-up-failed': { status: 402, title: 'Top-up failed' },
  'not-found': { status: 404, title: 'Not found' },
  'idempotency-key-in-use': { status: 409, title: 'Idempotency-Key in use' },
  'account-closed': { status: 409, title: 'Account closed' },
  'account-not-empty': { status: 409, title: 'Account not empty' },
  'webhook-endpoint-limit': { status: 409, title: 'Webhook endpoint limit reached' },
  'request-timeout': { status: 408, title: 'Request timeout' },
  'precondition-failed': { status: 412, title: 'Precondition failed' },
  'payload-too-large': { status: 413, title: 'Payload too large' },
  'unsupported-media-type': { status: 415, title: 'Unsupported media type' },
  'idempotency-key-reused': { status: 422, title: 'Idempotency-Key reused' },
  'currency-mismatch': { status: 422, title: 'Currency mismatch' },
  'refund-exceeds-charge': { status: 422, title: 'Refund exceeds charge' },
  'balance-limit-exceeded': { status: 422, title: 'Balance limit exceeded' },
  'too-many-requests': { status: 429, title: 'Too many requests' },
  'request-headers-too-large': { status: 431, title: 'Request headers too large' },
  'internal-error': { status: 500, title: 'Internal error' },
  'service-unavailable': { status: 503, title: 'Service unavailable' },
} as const;

export type ProblemCode = keyof typeof PROBLEMS;
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * An error with a stable code that rejects the request: thrown before the handler
 * runs (authentication, key parsing, validation) or by it. Its transaction, if
 * any, rolls back; nothing is remembered, so a retry with the same key executes.
 */
export class ProblemError extends Error {
  constructor(
    readonly code: ProblemCode,
    readonly detail: string,
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = new.target.name;
  }

  get status(): number {
    return PROBLEMS[this.code].status;
  }
}

/**
 * A business outcome that a service decides inside the request's transaction
 * (402, 404, 422): the transaction is **committed**, not rolled back (a failed
 * charge is a record too), and on an idempotent route the response is stored
 * with the key and **replayed** on every retry, like a success.
 */
export class CommittedProblem extends ProblemError {}

export class NotFoundError extends CommittedProblem {
  constructor(what: string, id: string) {
    super('not-found', `No ${what} with id '${id}'.`);
  }
}

/** The RFC 9457 body of a problem, serialised once so a replay is byte-identical. */
export function problemBody(
  code: ProblemCode,
  detail: string,
  extensions: Record<string, unknown> = {},
): string {
  const { status, title } = PROBLEMS[code];
  return JSON.stringify({ type: `/problems/${code}`, title, status, detail, ...extensions });
}
