import { describe, expect, it } from '@jest/globals';
import { isId, newId } from './ids.js';

describe('newId', () => {
  it('makes ids of the documented shape, unique, in the order they were made', () => {
    const ids: string[] = [];
    // Same millisecond (incremented random part), then later ones (fresh random bytes):
    // more ids than the random pool holds, so it is refilled on the way.
    for (let i = 0; i < 1_000; i++)
      ids.push(newId('charge', 1_800_000_000_000 + Math.floor(i / 3)));

    expect(ids.every((id) => isId('charge', id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });

  it('spreads the random part over the whole alphabet', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      for (const c of newId('event', 1_900_000_000_000 + i).slice(14)) seen.add(c);
    }
    expect(seen.size).toBe(32);
  });

  it('encodes the time first, so ids of later milliseconds sort after', () => {
    expect(newId('account', 1_000).slice(5, 15)).toBe('00000000Z8'); // 1000 = 31 × 32 + 8;
    expect(newId('account', 2_000) > newId('account', 1_999)).toBe(true);
  });
});
