import { describe, expect, it } from 'vitest';
import { ChatdError } from '../errors.js';
import { decodeCursor, encodeCursor } from './cursor.js';

describe('history cursors', () => {
  it('round-trip and stay opaque', () => {
    for (const c of [
      { kind: 'seq', value: 1 },
      { kind: 'seq', value: 2_147_483_647 },
      { kind: 'pos', value: 9_007_199_254_740_991 },
    ] as const) {
      const raw = encodeCursor(c);
      expect(raw).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeCursor(raw)).toEqual(c);
    }
  });

  it('refuse anything chatd did not issue with a 400', () => {
    const forged = [
      '',
      'not a cursor',
      Buffer.from('v1:s:0').toString('base64url'),
      Buffer.from('v1:s:-1').toString('base64url'),
      Buffer.from('v1:s:2147483648').toString('base64url'),
      Buffer.from('v1:s:1; drop table messages').toString('base64url'),
      Buffer.from('v2:s:1').toString('base64url'),
      'x'.repeat(100),
    ];
    for (const raw of forged) {
      let err: unknown;
      try {
        decodeCursor(raw);
      } catch (e) {
        err = e;
      }
      expect(err, raw).toBeInstanceOf(ChatdError);
      expect((err as ChatdError).status).toBe(400);
    }
  });
});
