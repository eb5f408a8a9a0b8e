/**
 * When to try again, and how long to wait first. Pure functions, so that the rules
 * a careful payments client follows can be read (and tested) in one place.
 */

export interface RetryPolicy {
  /** Attempts in all, the first one included. Default 5. */
  maxAttempts: number;
  /** The back-off's first ceiling, doubled at every retry. Default 250 ms. */
  baseDelayMs: number;
  /** The back-off's largest ceiling. Default 8 s. A longer Retry-After is still honoured. */
  maxDelayMs: number;
  /** Give up once this long has passed since the first attempt, whatever maxAttempts says. */
  deadlineMs?: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 5,
  baseDelayMs: 250,
  maxDelayMs: 8_000,
};

/**
 * Why an attempt is worth repeating with the same key:
 * - network: the connection failed or the response was cut short (the request may
 *   or may not have executed: exactly the case the key is for);
 * - timeout: no answer in time (the same, as far as the client can tell);
 * - in-use: 409 idempotency-key-in-use, the first attempt is still running;
 * - rate-limited: 429;
 * - server-error: a 5xx; the server rolled back, so the same key executes afresh
 *   (503 service-unavailable among them);
 * - pending: a 202 whose operation is still running elsewhere (a top-up at the
 *   card processor), asked again only when the caller chose `pending: 'retry'`.
 */
export type RetryReason =
  'network' | 'timeout' | 'in-use' | 'rate-limited' | 'server-error' | 'pending';

/**
 * The reason to retry a response, or null when the response is the answer. Every
 * other 4xx is final: the server looked at the request and said no, and the same
 * request will get the same no (a retry after a 402 cannot find the money).
 */
export function retryReason(
  status: number,
  code: string,
  { retryPending = false }: { retryPending?: boolean } = {},
): RetryReason | null {
  if (status === 409 && code === 'idempotency-key-in-use') return 'in-use';
  if (status === 429) return 'rate-limited';
  if (status >= 500) return 'server-error';
  if (status === 202 && retryPending) return 'pending';
  return null;
}

/**
 * Exponential back-off with full jitter: a random wait between 0 and
 * min(maxDelayMs, baseDelayMs × 2^retry). The randomness spreads clients that
 * failed together (an outage, a deploy) so that they do not come back together;
 * "full" jitter spreads them most for the least total wait (AWS Architecture Blog,
 * "Exponential Backoff And Jitter", 2015).
 */
export function backoffMs(
  retry: number,
  { baseDelayMs, maxDelayMs }: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** retry);
  return Math.floor(random() * ceiling);
}

/**
 * Retry-After (RFC 9110 §10.2.3) in milliseconds from now: delay-seconds or an
 * HTTP-date. Undefined when absent or unreadable.
 */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = /^[A-Za-z]{3}, /.test(trimmed) ? Date.parse(trimmed) : NaN; // "Sun, 06 Nov 1994 08:49:37 GMT"
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * How long to wait before the next attempt: the jittered back-off, but never less
 * than the server asked for in Retry-After (it knows when the key will be free).
 */
export function delayBeforeRetry(
  retry: number,
  policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>,
  retryAfter: number | undefined,
  random?: () => number,
): number {
  return Math.max(backoffMs(retry, policy, random), retryAfter ?? 0);
}
