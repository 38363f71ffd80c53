// The framing of the edge link between a gateway and a ws node (link-server.ts, link-client.ts).
// One websocket binary message carries one or more records, each
//
//   op u8 | flags u8 | client id u32 | payload length u32 | payload
//
// written in the order they were produced, so everything one side says about a client (its
// frames, its subscriptions, its close) and the room frames published around it arrive in that
// order — the same order a direct websocket would see.
//
// Ops and their payloads:
//   gateway → node  open     JSON LinkHandshake (a new client websocket: query, headers, client IP)
//                   upgrade  JSON LinkHandshake (the upgrade probe of a polling session, by sid)
//                   buffered delivered u32 | held u32: frame bytes of the client written to its
//                            socket so far (mod 2^32) and bytes its socket holds unsent, sent every
//                            64 KiB delivered and on drains (the node paces replays by them)
//   node → gateway  accept   (empty) the handshake was accepted: frames follow
//                   refuse   JSON HandshakeRefusal (the HTTP answer for the client)
//                   sub      topic (utf8): subscribe the client's socket
//                   unsub    topic
//                   pub      topic length u16 | topic | frame: one frame to the topic's subscribers
//                            at that gateway (client id 0)
//   both            frame    an Engine.IO frame; flags bit 0: binary
//                   close    code u16 | reason (utf8)
export const OP = {
  open: 1,
  upgrade: 2,
  accept: 3,
  refuse: 4,
  frame: 5,
  close: 6,
  sub: 7,
  unsub: 8,
  pub: 9,
  buffered: 10,
} as const;

export type Op = (typeof OP)[keyof typeof OP];

/** The link's path on a ws node's listener (trusted peers only). */
export const LINK_PATH = '/_chatd/link';

export const FLAG_BINARY = 1;

const HEADER = 10;

/** Accumulates records; `take()` hands them over as one message and starts again. */
export class LinkWriter {
  private buf = Buffer.allocUnsafe(16 * 1024);
  private pos = 0;

  get size(): number {
    return this.pos;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let len = this.buf.length * 2;
    while (len < this.pos + n) len *= 2;
    const next = Buffer.allocUnsafe(len);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A record whose payload is `data` (a string is written as utf8); returns the payload's length. */
  record(op: Op, flags: number, cid: number, data?: string | Buffer): number {
    const max = data === undefined ? 0 : typeof data === 'string' ? data.length * 3 : data.length;
    this.ensure(HEADER + max);
    const b = this.buf;
    const at = this.pos;
    b[at] = op;
    b[at + 1] = flags;
    b.writeUInt32BE(cid >>> 0, at + 2);
    let len = 0;
    if (data !== undefined) len = typeof data === 'string' ? b.write(data, at + HEADER, 'utf8') : data.copy(b, at + HEADER);
    b.writeUInt32BE(len, at + 6);
    this.pos = at + HEADER + len;
    return len;
  }

  /** A close record: code, then the reason. */
  close(cid: number, code: number, reason: string): void {
    this.ensure(HEADER + 2 + reason.length * 3);
    const b = this.buf;
    const at = this.pos;
    b[at] = OP.close;
    b[at + 1] = 0;
    b.writeUInt32BE(cid >>> 0, at + 2);
    b.writeUInt16BE(code & 0xffff, at + HEADER);
    const len = 2 + b.write(reason, at + HEADER + 2, 'utf8');
    b.writeUInt32BE(len, at + 6);
    this.pos = at + HEADER + len;
  }

  /** A pub record: the topic, then the frame. */
  pub(topic: string, frame: string | Buffer, binary: boolean): void {
    const max = 2 + topic.length * 3 + (typeof frame === 'string' ? frame.length * 3 : frame.length);
    this.ensure(HEADER + max);
    const b = this.buf;
    const at = this.pos;
    b[at] = OP.pub;
    b[at + 1] = binary ? FLAG_BINARY : 0;
    b.writeUInt32BE(0, at + 2);
    const tlen = b.write(topic, at + HEADER + 2, 'utf8');
    b.writeUInt16BE(tlen, at + HEADER);
    const start = at + HEADER + 2 + tlen;
    const flen = typeof frame === 'string' ? b.write(frame, start, 'utf8') : frame.copy(b, start);
    b.writeUInt32BE(2 + tlen + flen, at + 6);
    this.pos = start + flen;
  }

  /** A buffered record: bytes delivered so far (mod 2^32), bytes held. */
  buffered(cid: number, delivered: number, held: number): void {
    this.ensure(HEADER + 8);
    const b = this.buf;
    const at = this.pos;
    b[at] = OP.buffered;
    b[at + 1] = 0;
    b.writeUInt32BE(cid >>> 0, at + 2);
    b.writeUInt32BE(8, at + 6);
    b.writeUInt32BE(delivered >>> 0, at + HEADER);
    b.writeUInt32BE(Math.min(0xffffffff, Math.max(0, Math.floor(held))), at + HEADER + 4);
    this.pos = at + HEADER + 8;
  }

  /** The records so far, as a view valid until the next write (for a sender that copies, as uWS does). */
  view(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    this.pos = 0;
    return out;
  }

  /** The records so far, as a buffer of their own (for a sender that may keep it, as `ws` does). */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    return out;
  }
}

export type RecordHandler = (op: number, flags: number, cid: number, payload: Buffer) => void;

/** Calls `on` for each record of one link message; throws on a truncated record. */
export function readRecords(msg: Buffer, on: RecordHandler): void {
  let at = 0;
  while (at < msg.length) {
    if (msg.length - at < HEADER) throw new Error('truncated link record header');
    const op = msg[at]!;
    const flags = msg[at + 1]!;
    const cid = msg.readUInt32BE(at + 2);
    const len = msg.readUInt32BE(at + 6);
    const end = at + HEADER + len;
    if (end > msg.length) throw new Error('truncated link record');
    on(op, flags, cid, msg.subarray(at + HEADER, end));
    at = end;
  }
}

/** A close record's code and reason. */
export function readClose(payload: Buffer): { code: number; reason: string } {
  return { code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005, reason: payload.subarray(2).toString('utf8') };
}

/** A pub record's topic and frame. */
export function readPub(payload: Buffer): { topic: string; frame: Buffer } {
  const tlen = payload.readUInt16BE(0);
  return { topic: payload.toString('utf8', 2, 2 + tlen), frame: payload.subarray(2 + tlen) };
}
