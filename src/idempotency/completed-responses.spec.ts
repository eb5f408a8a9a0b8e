import { describe, expect, it } from '@jest/globals';
import {
  type CompletedRequest,
  CompletedResponses,
  EXPIRY_MARGIN_MS,
} from './completed-responses.js';

function completed(body: string): CompletedRequest {
  return {
    requestMethod: 'POST',
    requestPath: '/charges',
    fingerprint: 'f'.repeat(64),
    responseStatus: 201,
    responseContentType: 'application/json',
    responseBody: body,
    responseLocation: null,
  };
}

/** A clock the test moves by hand. */
function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('CompletedResponses', () => {
  it('recalls what it was told, per merchant', () => {
    const time = clock();
    const memory = new CompletedResponses(10, time.now);
    memory.remember('mch_a', 'k1', completed('a'), time.now() + 60_000);

    expect(memory.recall('mch_a', 'k1')?.responseBody).toBe('a');
    expect(memory.recall('mch_b', 'k1')).toBeUndefined();
    expect(memory.recall('mch_a', 'k2')).toBeUndefined();
    // No pair of (merchant, key) can pose as another.
    expect(memory.recall('mch_a k1', '')).toBeUndefined();
  });

  it('forgets an entry a margin before its key expires, never after', () => {
    const time = clock();
    const memory = new CompletedResponses(10, time.now);
    const expiresAt = time.now() + 10_000;
    memory.remember('mch_a', 'k', completed('a'), expiresAt);

    time.advance(10_000 - EXPIRY_MARGIN_MS - 1);
    expect(memory.recall('mch_a', 'k')).toBeDefined();
    time.advance(1);
    expect(memory.recall('mch_a', 'k')).toBeUndefined();
    expect(memory.size).toBe(0);
  });

  it('does not keep what expires within the margin', () => {
    const time = clock();
    const memory = new CompletedResponses(10, time.now);
    memory.remember('mch_a', 'k', completed('a'), time.now() + EXPIRY_MARGIN_MS);
    expect(memory.recall('mch_a', 'k')).toBeUndefined();
  });

  it('keeps at most its capacity, dropping the oldest first', () => {
    const time = clock();
    const memory = new CompletedResponses(2, time.now);
    const later = time.now() + 60_000;
    memory.remember('mch_a', 'k1', completed('1'), later);
    memory.remember('mch_a', 'k2', completed('2'), later);
    memory.remember('mch_a', 'k3', completed('3'), later);

    expect(memory.size).toBe(2);
    expect(memory.recall('mch_a', 'k1')).toBeUndefined();
    expect(memory.recall('mch_a', 'k2')?.responseBody).toBe('2');
    expect(memory.recall('mch_a', 'k3')?.responseBody).toBe('3');
  });

  it('keeps nothing with a capacity of 0', () => {
    const time = clock();
    const memory = new CompletedResponses(0, time.now);
    memory.remember('mch_a', 'k', completed('a'), time.now() + 60_000);
    expect(memory.recall('mch_a', 'k')).toBeUndefined();
    expect(memory.size).toBe(0);
  });
});
