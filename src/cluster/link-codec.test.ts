import { describe, expect, it } from 'vitest';
import { FLAG_BINARY, LinkWriter, OP, readClose, readPub, readRecords } from './link-codec.js';

const read = (msg: Buffer) => {
  const out: { op: number; flags: number; cid: number; payload: Buffer }[] = [];
  readRecords(msg, (op, flags, cid, payload) => out.push({ op, flags, cid, payload: Buffer.from(payload) }));
  return out;
};

describe('edge link records', () => {
  it('round-trip in order, utf8 and binary, through a growing buffer', () => {
    const w = new LinkWriter();
    const big = Buffer.alloc(40_000, 7);
    expect(w.record(OP.frame, 0, 1, '42["typing","héllo ✓"]')).toBe(Buffer.byteLength('42["typing","héllo ✓"]'));
    w.record(OP.frame, FLAG_BINARY, 0xffffffff, big);
    w.pub('t:acme:conv:s-1', '42["m",1,"7"]', false);
    w.close(2, 4008, 'slow consumer');
    w.buffered(3, 2 ** 32 + 5, 1234);
    w.record(OP.accept, 0, 4);
    const recs = read(w.take());
    expect(recs.map((r) => [r.op, r.flags, r.cid])).toEqual([
      [OP.frame, 0, 1],
      [OP.frame, FLAG_BINARY, 0xffffffff],
      [OP.pub, 0, 0],
      [OP.close, 0, 2],
      [OP.buffered, 0, 3],
      [OP.accept, 0, 4],
    ]);
    expect(recs[0]!.payload.toString('utf8')).toBe('42["typing","héllo ✓"]');
    expect(recs[1]!.payload.equals(big)).toBe(true);
    expect(readPub(recs[2]!.payload)).toEqual({ topic: 't:acme:conv:s-1', frame: Buffer.from('42["m",1,"7"]') });
    expect(readClose(recs[3]!.payload)).toEqual({ code: 4008, reason: 'slow consumer' });
    expect([recs[4]!.payload.readUInt32BE(0), recs[4]!.payload.readUInt32BE(4)]).toEqual([5, 1234]);
    expect(recs[5]!.payload.length).toBe(0);
    // The writer starts again empty.
    expect(w.size).toBe(0);
  });

  it('refuses a truncated message', () => {
    const w = new LinkWriter();
    w.record(OP.frame, 0, 1, 'hello');
    const msg = w.take();
    expect(() => read(msg.subarray(0, msg.length - 1))).toThrow(/truncated/);
    expect(() => read(msg.subarray(0, 5))).toThrow(/truncated/);
  });
});
