import { describe, expect, it } from '@jest/globals';
import { ProblemError } from '../problems/problem.js';
import { parseIdempotencyKey } from './idempotency-key.js';

describe('parseIdempotencyKey', () => {
  it('returns undefined when the header is absent', () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
  });

  it.each([
    ['a bare value', 'abc-123', 'abc-123'],
    ['a UUID', '8e03978e-40d5-43e8-bc93-6894a57f9324', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
    ['an sf-string', '"abc-123"', 'abc-123'],
    ['an sf-string with an escaped quote', '"a\\"b"', 'a"b'],
    ['an sf-string with an escaped backslash', '"a\\\\b"', 'a\\b'],
    ['surrounding white space', '  abc  ', 'abc'],
    ['one character', 'x', 'x'],
    ['255 characters', 'k'.repeat(255), 'k'.repeat(255)],
    ['255 characters quoted', `"${'k'.repeat(255)}"`, 'k'.repeat(255)],
    [
      'every visible ASCII character',
      "!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~",
      "!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~",
    ],
    ['a bare value with a quote inside', 'ab"c', 'ab"c'],
  ])('accepts %s', (_, header, key) => {
    expect(parseIdempotencyKey(header)).toBe(key);
  });

  it('gives the same key for the bare and the quoted form', () => {
    expect(parseIdempotencyKey('order-42')).toBe(parseIdempotencyKey('"order-42"'));
  });

  it.each([
    ['an empty value', ''],
    ['only white space', '   '],
    ['an empty sf-string', '""'],
    ['256 characters', 'k'.repeat(256)],
    ['256 characters quoted', `"${'k'.repeat(256)}"`],
    ['a space inside a bare value', 'a b'],
    ['a space inside an sf-string', '"a b"'],
    ['a tab', 'a\tb'],
    ['a control character', 'a\u0001b'],
    ['DEL', 'a\u007fb'],
    ['a non-ASCII character', 'clé'],
    ['an unterminated sf-string', '"abc'],
    ['a lone quote', '"'],
    ['an invalid escape', '"a\\nb"'],
    ['a trailing backslash', '"abc\\"'],
    ['text after the closing quote', '"abc"def'],
    ['sf-string parameters', '"abc";p=1'],
    ['two comma-joined values', '"a", "b"'],
  ])('refuses %s with idempotency-key-invalid', (_, header) => {
    let error: unknown;
    try {
      parseIdempotencyKey(header);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ProblemError);
    expect((error as ProblemError).code).toBe('idempotency-key-invalid');
    expect((error as ProblemError).status).toBe(400);
  });

  it('refuses a header sent as several values', () => {
    expect(() => parseIdempotencyKey(['a', 'b'])).toThrow(ProblemError);
  });
});
