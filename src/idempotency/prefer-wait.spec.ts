import { describe, expect, it } from '@jest/globals';
import { preferredWaitSeconds } from './prefer-wait.js';

describe('preferredWaitSeconds', () => {
  it.each([
    [undefined, 0],
    ['', 0],
    ['wait=5', 5],
    ['WAIT = 3', 3],
    ['respond-async, wait=4', 4],
    ['wait=2; foo=bar, handling=lenient', 2],
    ['wait="7"', 7],
    ['wait=0', 0],
    ['wait=60', 10],
    ['wait=abc', 0],
    ['wait=-1', 0],
    ['handling=strict', 0],
    ['nowait=5', 0],
    [['return=minimal', 'wait=6'], 6],
  ])('reads %j as %d seconds', (header, seconds) => {
    expect(preferredWaitSeconds(header)).toBe(seconds);
  });
});
