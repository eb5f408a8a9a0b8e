import { describe, expect, it } from '@jest/globals';
import { backoffMs, delayBeforeRetry, retryAfterMs, retryReason } from './retry.js';

const policy = { baseDelayMs: 100, maxDelayMs: 1_000 };

describe('retryReason: what is worth asking again with the same key', () => {
  it.each([
    [409, 'idempotency-key-in-use', 'in-use'],
    [429, 'unknown', 'rate-limited'],
    [500, 'internal-error', 'server-error'],
    [502, 'unknown', 'server-error'],
    [503, 'service-unavailable', 'server-error'],
    [504, 'unknown', 'server-error'],
  ])('%i %s → %s', (status, code, reason) => {
    expect(retryReason(status, code)).toBe(reason);
  });

  it.each([
    [400, 'validation-failed'],
    [401, 'unauthorized'],
    [402, 'insufficient-funds'],
    [404, 'not-found'],
    [409, 'account-closed'],
    [412, 'precondition-failed'],
    [422, 'idempotency-key-reused'],
    [200, 'unknown'],
    [201, 'unknown'],
  ])('%i %s is the answer, never retried', (status, code) => {
    expect(retryReason(status, code)).toBeNull();
  });

  it('retries a 202 only when the caller asked to wait for the final answer', () => {
    expect(retryReason(202, 'unknown')).toBeNull();
    expect(retryReason(202, 'unknown', { retryPending: true })).toBe('pending');
  });
});

describe('backoffMs: exponential, full jitter, capped', () => {
  it('is random(0, min(cap, base × 2^retry))', () => {
    expect([0, 1, 2, 3, 4, 10].map((r) => backoffMs(r, policy, () => 0.999999))).toEqual([
      99, 199, 399, 799, 999, 999,
    ]);
    expect(backoffMs(3, policy, () => 0)).toBe(0);
    expect(backoffMs(2, policy, () => 0.5)).toBe(200);
  });

  it('spreads clients that failed together across the whole window', () => {
    const waits = Array.from({ length: 2_000 }, () => backoffMs(3, policy));
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...waits)).toBeLessThan(800);
    // Full jitter: a quarter of the waits land in each quarter of the window, roughly.
    const quarters = [0, 1, 2, 3].map((q) => waits.filter((w) => Math.floor(w / 200) === q).length);
    for (const n of quarters) expect(n).toBeGreaterThan(350);
  });
});

describe('retryAfterMs (RFC 9110 §10.2.3)', () => {
  it('reads delay-seconds and HTTP-dates', () => {
    expect(retryAfterMs('1')).toBe(1_000);
    expect(retryAfterMs(' 30 ')).toBe(30_000);
    const now = Date.parse('Fri, 04 Dec 2026 03:00:00 GMT');
    expect(retryAfterMs('Fri, 04 Dec 2026 03:00:05 GMT', now)).toBe(5_000);
    expect(retryAfterMs('Fri, 04 Dec 2026 02:59:00 GMT', now)).toBe(0);
  });

  it('ignores what it cannot read', () => {
    expect(retryAfterMs(null)).toBeUndefined();
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs('-1')).toBeUndefined();
  });

  it('wins over a shorter back-off, never shortens a longer one', () => {
    expect(delayBeforeRetry(0, policy, 1_000, () => 0.5)).toBe(1_000);
    expect(delayBeforeRetry(9, { baseDelayMs: 100, maxDelayMs: 8_000 }, 1_000, () => 0.5)).toBe(
      4_000,
    );
    expect(delayBeforeRetry(0, policy, undefined, () => 0.5)).toBe(50);
  });
});
