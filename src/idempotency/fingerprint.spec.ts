import { describe, expect, it } from '@jest/globals';
import { canonicalJson, requestFingerprint } from './fingerprint.js';

const body = { accountId: 'acct_1', amount: 100, currency: 'USD', metadata: { a: '1', b: '2' } };

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops white space', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { f: 1, e: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,{"e":2,"f":1}]},"b":1}',
    );
  });

  it('keeps array order, which carries meaning', () => {
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
  });
});

describe('requestFingerprint', () => {
  const base = requestFingerprint('POST', '/charges', body);

  it('is a SHA-256 hex digest', () => {
    expect(base).toMatch(/^[0-9a-f]{64}$/);
  });

  it('ignores key order and formatting', () => {
    const reordered = JSON.parse(
      '{ "metadata": { "b": "2", "a": "1" },\n  "currency": "USD", "amount": 100, "accountId": "acct_1" }',
    );
    expect(requestFingerprint('POST', '/charges', reordered)).toBe(base);
  });

  it('treats numbers by value (100 and 1e2 are the same JSON number)', () => {
    expect(
      requestFingerprint(
        'POST',
        '/charges',
        JSON.parse(JSON.stringify(body).replace('100', '1e2')),
      ),
    ).toBe(base);
  });

  it('treats a missing body as {}', () => {
    expect(requestFingerprint('POST', '/x', undefined)).toBe(requestFingerprint('POST', '/x', {}));
  });

  it.each([
    ['the amount', { ...body, amount: 101 }],
    ['the currency', { ...body, currency: 'EUR' }],
    ['a nested value', { ...body, metadata: { a: '1', b: '3' } }],
    ['a type (string vs number)', { ...body, amount: '100' }],
    ['an added field', { ...body, description: 'x' }],
    ['a removed field', { accountId: 'acct_1', amount: 100, currency: 'USD' }],
    ['null vs absent', { ...body, description: null }],
  ])('detects a change of %s', (_, changed) => {
    expect(requestFingerprint('POST', '/charges', changed)).not.toBe(base);
  });

  it('detects a change of path or method', () => {
    expect(requestFingerprint('POST', '/accounts/acct_1/deposits', body)).not.toBe(base);
    expect(requestFingerprint('PUT', '/charges', body)).not.toBe(base);
  });
});
