import { describe, expect, it } from '@jest/globals';
import type { ProblemError } from '../problems/problem.js';
import { ifNoneMatchNames, parseEntityTags, versionsFrom } from './conditional.js';

describe('conditional requests', () => {
  it('reads *, one tag, weak tags and lists; absent is undefined', () => {
    expect(parseEntityTags(undefined, 'If-Match')).toBeUndefined();
    expect(parseEntityTags(' * ', 'If-Match')).toBe('*');
    expect(parseEntityTags('"3"', 'If-Match')).toEqual([{ tag: '"3"', weak: false }]);
    expect(parseEntityTags('W/"3", "4" ,"x"', 'If-None-Match')).toEqual([
      { tag: '"3"', weak: true },
      { tag: '"4"', weak: false },
      { tag: '"x"', weak: false },
    ]);
  });

  it('refuses what is not * or quoted tags with a 400 naming the header', () => {
    for (const value of ['3', '"3', '', '"3",', 'W/3', '*, "3"']) {
      let error: ProblemError | undefined;
      try {
        parseEntityTags(value, 'If-Match');
      } catch (e) {
        error = e as ProblemError;
      }
      expect({ value, code: error?.code, field: error?.extensions.errors }).toEqual({
        value,
        code: 'validation-failed',
        field: [{ field: 'If-Match', message: expect.any(String) }],
      });
    }
  });

  it('turns If-Match into the versions a conditional UPDATE accepts: strong "<n>" tags only', () => {
    expect(versionsFrom(undefined)).toBeNull();
    expect(versionsFrom('*')).toBeNull();
    expect(versionsFrom(parseEntityTags('"3", W/"4", "abc", "5"', 'If-Match'))).toEqual([3, 5]);
    expect(versionsFrom(parseEntityTags('W/"4"', 'If-Match'))).toEqual([]); // matches nothing
  });

  it('compares If-None-Match weakly: W/"3" names "3"', () => {
    const tags = parseEntityTags('W/"3"', 'If-None-Match')!;
    expect(ifNoneMatchNames(tags, '"3"')).toBe(true);
    expect(ifNoneMatchNames(tags, '"4"')).toBe(false);
    expect(ifNoneMatchNames('*', '"4"')).toBe(true);
  });
});
