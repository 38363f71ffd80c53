import { describe, expect, it } from 'vitest';
import { randomId } from './random-id.js';

describe('randomId', () => {
  it('hands out distinct base64url ids of the asked size across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const id = randomId(i % 2 ? 12 : 16);
      expect(id).toMatch(i % 2 ? /^[A-Za-z0-9_-]{16}$/ : /^[A-Za-z0-9_-]{22}$/);
      seen.add(id);
    }
    // 5000 × ~14 bytes crosses the 4 KB pool many times; a reused slice would repeat an id.
    expect(seen.size).toBe(5000);
    expect(() => randomId(257)).toThrow(RangeError);
  });
});
