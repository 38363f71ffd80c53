// The allocation-free encode/decode of socketio.ts against socket.io-parser itself: the same frames
// out, the same packets in, the same refusals.
import { Decoder, Encoder, PacketType, type Packet } from 'socket.io-parser';
import { describe, expect, it } from 'vitest';
import { decodeText, encodeEvent } from './socketio.js';

const parserDecode = (str: string): Packet | Error => {
  const d = new Decoder();
  let out: Packet | undefined;
  d.on('decoded', (p: Packet) => (out = p));
  try {
    d.add(str);
  } catch (err) {
    return err as Error;
  }
  return out!;
};

describe('decodeText', () => {
  it.each([
    '0',
    '0{"token":"t","pid":"p","offset":"3"}',
    '1',
    '2["typing",{"isTyping":true}]',
    '21["message",{"text":"hi"}]',
    '2123["message",{"text":"hi"},"x",1]',
    '2[7,"numeric event name"]',
    '3[]',
    '31[{"success":true}]',
    '345["a","b"]',
    '4{"message":"no"}',
    '4"text"',
  ])('decodes %s as socket.io-parser does', (str) => {
    expect(decodeText(str)).toEqual(parserDecode(str));
  });

  it.each([
    '2["connect"]',
    '2["disconnect",1]',
    '2{"not":"an array"}',
    '2[1',
    '2[]',
    '3{}',
    '1{}',
    '0[]',
    '0"string"',
    '7[]',
    'x',
    '2 garbage',
  ])('refuses %s, as socket.io-parser does', (str) => {
    expect(parserDecode(str)).toBeInstanceOf(Error);
    expect(() => decodeText(str)).toThrow();
  });

  it('leaves binary packets and other namespaces to the Decoder', () => {
    expect(decodeText('51-["up",{"_placeholder":true,"num":0}]')).toBeUndefined();
    expect(decodeText('61-[{"_placeholder":true,"num":0}]')).toBeUndefined();
    expect(decodeText('0/admin,{}')).toBeUndefined();
    expect(decodeText('2/admin,["x"]')).toBeUndefined();
  });
});

describe('encodeEvent', () => {
  const encoder = new Encoder();
  const reference = (data: unknown[]) =>
    (encoder.encode({ type: PacketType.EVENT, nsp: '/', data }) as unknown[]).map((p, i) => (i === 0 ? `4${p as string}` : p));

  it.each<[string, unknown[], string | undefined]>([
    ['typing', [{ sessionId: 's1', sender: { type: 'visitor', id: 's1' }, isTyping: true }], undefined],
    ['meta_message_created', [{ message: { id: 'm', text: 'ünïcode "quoted" \n', seq: 3 } }], '3'],
    ['x', [], undefined],
    ['x', [1, 'two', null, [3], { d: new Date(0) }], 'off~set'],
    ['x', [undefined, () => 1], undefined],
    ['quote"d', [true], undefined],
  ])('encodes %s as one text frame, the same as socket.io-parser', (event, args, offset) => {
    const frames = encodeEvent(event, args, offset);
    expect(typeof frames).toBe('string');
    expect([frames]).toEqual(reference(offset === undefined ? [event, ...args] : [event, ...args, offset]));
  });

  it('sends binary arguments as attachments', () => {
    const buf = Buffer.from([1, 2, 3]);
    const frames = encodeEvent('file', [{ name: 'a', data: buf }], '7');
    expect(frames).toEqual(reference(['file', { name: 'a', data: buf }, '7']));
    expect(Array.isArray(frames) && frames.length).toBe(2);
  });

  it('refuses a reserved event name', () => {
    expect(() => encodeEvent('connect', [])).toThrow(/reserved/);
    expect(() => encodeEvent('disconnect', [{}])).toThrow(/reserved/);
  });
});
