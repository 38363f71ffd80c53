// Socket.IO 5 on top of Engine.IO (default namespace only): the packets inside Engine.IO `message`
// packets — CONNECT (the role's authenticate, the ack with sid and pid), EVENT (the per-socket event
// rate, then the role's onEvent), ACK both ways, DISCONNECT — and their encoding. The wire facts it
// follows are in shared/notes/socketio-on-uws.md ("Connection state recovery", reserved names).
import { Decoder, Encoder, PacketType, type Packet as SioPacket } from 'socket.io-parser';
import { DISCONNECT, toChatdError } from '../errors.js';
import type { Engine } from './engine.js';
import { randomId } from './random-id.js';
import { F_AUTHING, F_CLOSED, F_CONNECTED, F_REFUSED, redact, type AckCallback, type Frame, type Session } from './session.js';
import type { Accepted, AckFn, ConnectInfo } from './types.js';

/** Event names socket.io-client reserves: emitting one makes the client drop the connection. */
const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);
const encoder = new Encoder();

/** Throws on a reserved event name (a programming error in the role, caught in its tests). */
export function assertEventName(event: string): void {
  if (RESERVED.has(event)) throw new Error(`"${event}" is a reserved event name`);
}

/** A Socket.IO packet as Engine.IO frames: `4` + the text part, then any binary attachments. */
export function encodeSio(packet: SioPacket): Frame[] {
  const parts = encoder.encode(packet) as (string | Buffer | ArrayBuffer | Uint8Array)[];
  const frames: Frame[] = ['4' + (parts[0] as string)];
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    frames.push(Buffer.isBuffer(p) ? p : Buffer.from(p as ArrayBuffer));
  }
  return frames;
}

/**
 * Whether a value holds binary data anywhere (socket.io-parser's `hasBinary`, without its
 * allocations): such an event needs the parser's attachments, the rest is one JSON text frame.
 */
function hasBinary(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (hasBinary(v[i])) return true;
    return false;
  }
  const toJSON = (v as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return hasBinary((toJSON as () => unknown).call(v));
  for (const k in v) if (Object.prototype.hasOwnProperty.call(v, k) && hasBinary((v as Record<string, unknown>)[k])) return true;
  return false;
}

/** `42["<event>",` per event name (a handful of names: encoded once). */
const eventPrefixes = new Map<string, string>();

/**
 * An EVENT (no ack id) as the frames to write: one text frame `42[event,...args,offset]` built
 * straight from JSON.stringify of each argument (what socket.io-parser writes, without its packet
 * object, argument array and debug calls), or the parser's frames when an argument holds binary.
 * Encoded once per publish, however many sockets get it. Throws on a reserved event name.
 */
export function encodeEvent(event: string, args: readonly unknown[], offset?: string): string | Frame[] {
  let prefix = eventPrefixes.get(event);
  if (prefix === undefined) {
    assertEventName(event);
    prefix = `42[${JSON.stringify(event)}`;
    if (eventPrefixes.size < 256) eventPrefixes.set(event, prefix);
  }
  let text = prefix;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (hasBinary(a)) {
      const data = offset === undefined ? [event, ...args] : [event, ...args, offset];
      return encodeSio({ type: PacketType.EVENT, nsp: '/', data });
    }
    // As in an array: a value JSON cannot write (undefined, a function) is null.
    text += ',' + (JSON.stringify(a) ?? 'null');
  }
  if (offset !== undefined) text += ',' + JSON.stringify(offset);
  return text + ']';
}

/**
 * A text Socket.IO packet of the default namespace, decoded as socket.io-parser's Decoder does
 * (type, optional ack id, JSON payload checked by type) without a Decoder per packet, its event
 * emitter and debug calls. Returns undefined for what it leaves to the Decoder: binary packets
 * and packets naming a namespace. Throws on a malformed packet.
 */
export function decodeText(str: string): SioPacket | undefined {
  const type = str.charCodeAt(0) - 48;
  if (type === PacketType.BINARY_EVENT || type === PacketType.BINARY_ACK || str.charCodeAt(1) === 47 /* / */) return undefined;
  if (!(type >= 0 && type <= 6)) throw new Error(`unknown packet type ${str.charAt(0)}`);
  let i = 1;
  let id: number | undefined;
  for (let c = str.charCodeAt(i); c >= 48 && c <= 57; c = str.charCodeAt(++i)) id = (id ?? 0) * 10 + (c - 48);
  let data: unknown;
  if (i < str.length) {
    try {
      data = JSON.parse(i === 1 ? str.slice(1) : str.slice(i));
    } catch {
      throw new Error('invalid payload');
    }
    if (!payloadValid(type, data)) throw new Error('invalid payload');
  }
  return id === undefined ? { type, nsp: '/', data } : { type, nsp: '/', id, data };
}

const isPlainObject = (v: unknown): boolean => Object.prototype.toString.call(v) === '[object Object]';

/** socket.io-parser's Decoder.isPayloadValid. */
function payloadValid(type: number, payload: unknown): boolean {
  switch (type) {
    case PacketType.CONNECT:
      return isPlainObject(payload);
    case PacketType.DISCONNECT:
      return payload === undefined;
    case PacketType.CONNECT_ERROR:
      return typeof payload === 'string' || isPlainObject(payload);
    case PacketType.EVENT:
      return Array.isArray(payload) && (typeof payload[0] === 'number' || (typeof payload[0] === 'string' && !RESERVED.has(payload[0])));
    case PacketType.ACK:
      return Array.isArray(payload);
    default:
      return false;
  }
}

/** The Socket.IO layer of one server; the engine hands it every Engine.IO `message`. */
export class SocketIoProtocol<C> {
  constructor(private readonly e: Engine<C>) {}

  /** An EVENT to one socket, with an ack id when `cb` is given (called with an error if it closes first). */
  emit(s: Session<C>, event: string, args: readonly unknown[], cb?: AckCallback): void {
    assertEventName(event);
    if (s.flags & F_CLOSED) {
      if (cb) cb(new Error('socket closed'));
      return;
    }
    if (!cb) {
      this.e.sendFrames(s, encodeSio({ type: PacketType.EVENT, nsp: '/', data: [event, ...args] }));
      return;
    }
    const id = s.nextAck++;
    (s.acks ??= new Map()).set(id, cb);
    this.e.sendFrames(s, encodeSio({ type: PacketType.EVENT, nsp: '/', id, data: [event, ...args] }));
  }

  /** The data of an Engine.IO `message`: a packet, or one binary attachment of the packet being reassembled. */
  onMessageData(s: Session<C>, data: string | Buffer): void {
    let decoded: SioPacket | undefined;
    let decoder = s.decoder;
    try {
      // The common case (a text packet, no binary packet being reassembled): no Decoder.
      if (typeof data === 'string' && !decoder) decoded = decodeText(data);
      if (!decoded) {
        if (typeof data !== 'string' && !decoder) throw new Error('binary data when not reconstructing a packet');
        if (!decoder) decoder = new Decoder();
        decoder.on('decoded', (p: SioPacket) => {
          decoded = p;
        });
        decoder.add(data);
        decoder.off('decoded');
      }
    } catch (err) {
      this.e.log.debug({ sid: redact(s.id), err: (err as Error).message }, 'protocol error: malformed packet');
      s.decoder?.destroy();
      s.decoder = null;
      this.e.closeSession(s, DISCONNECT.parseError);
      return;
    }
    if (!decoded) {
      s.decoder = decoder; // waiting for binary attachments
      return;
    }
    s.decoder = null;
    this.onPacket(s, decoded);
  }

  private onPacket(s: Session<C>, p: SioPacket): void {
    if (p.nsp !== '/') {
      if (p.type === PacketType.CONNECT) {
        this.e.sendFrames(s, [`44${p.nsp},${JSON.stringify({ message: 'Invalid namespace' })}`]);
        return;
      }
      this.e.closeSession(s, DISCONNECT.parseError);
      return;
    }
    switch (p.type) {
      case PacketType.CONNECT:
        return this.onConnect(s, p.data);
      case PacketType.EVENT:
      case PacketType.BINARY_EVENT:
        return this.onEvent(s, p);
      case PacketType.ACK:
      case PacketType.BINARY_ACK: {
        if (!(s.flags & F_CONNECTED)) return this.e.closeSession(s, DISCONNECT.parseError);
        const cb = p.id === undefined ? undefined : s.acks?.get(p.id);
        if (!cb) return;
        s.acks!.delete(p.id!);
        try {
          cb(null, ...((p.data as unknown[]) ?? []));
        } catch (err) {
          this.e.log.error({ err }, 'ack callback failed');
        }
        return;
      }
      case PacketType.DISCONNECT:
        return this.e.closeSession(s, DISCONNECT.clientDisconnect);
      default:
        return this.e.closeSession(s, DISCONNECT.parseError);
    }
  }

  private onConnect(s: Session<C>, data: unknown): void {
    const e = this.e;
    if (s.flags & (F_AUTHING | F_CONNECTED | F_REFUSED) || !s.hs) {
      return e.closeSession(s, DISCONNECT.parseError);
    }
    if (data !== undefined && (typeof data !== 'object' || data === null || Array.isArray(data))) {
      return e.closeSession(s, DISCONNECT.parseError);
    }
    const { pid, offset, ...auth } = (data ?? {}) as Record<string, unknown>;
    const hs = s.hs;
    const info: ConnectInfo = {
      auth,
      headers: hs.headers,
      origin: hs.origin,
      ip: hs.ip,
      transport: s.transport,
      recovery: typeof pid === 'string' && typeof offset === 'string' ? { pid, offset } : undefined,
    };
    s.flags |= F_AUTHING;
    let pending: Promise<Accepted<C>>;
    try {
      pending = e.opts.hooks.authenticate(info, s);
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (accepted) => {
        s.flags &= ~F_AUTHING;
        s.context = accepted.context;
        if (accepted.eventRate) {
          s.eventRate = accepted.eventRate;
          s.tokens = accepted.eventRate.burst;
        }
        if (s.flags & F_CLOSED) {
          // Gone while authenticating: let the role release what it took for this context.
          e.callDisconnect(s, 'transport close');
          return;
        }
        if (e.connectedCount >= e.opts.maxConnections) {
          e.refuseAtCapacity(s);
          return;
        }
        e.unpend(s);
        e.connectedCount++;
        s.hs = null;
        s.flags |= F_CONNECTED;
        const ack: Record<string, string> = { sid: randomId(12) };
        if (accepted.pid) ack.pid = accepted.pid;
        e.sendFrames(s, [`40${JSON.stringify(ack)}`]);
        try {
          e.opts.hooks.onConnect(s, info);
        } catch (err) {
          e.log.error({ err }, 'onConnect hook failed');
          e.closeSession(s, DISCONNECT.unavailable);
        }
      },
      (err: unknown) => {
        s.flags &= ~F_AUTHING;
        if (s.flags & F_CLOSED) return;
        const ce = toChatdError(err);
        if (ce.code === 'internal') e.log.error({ err }, 'authenticate failed unexpectedly');
        if (ce.final) {
          s.flags |= F_REFUSED;
          s.hs = null;
          e.sendFrames(s, [`44${JSON.stringify({ message: ce.message, data: { code: ce.code } })}`]);
        } else {
          e.log.debug({ code: ce.code }, 'connect refused (transient): closing the transport');
          e.closeSession(s, DISCONNECT.unavailable);
        }
      },
    );
  }

  private onEvent(s: Session<C>, p: SioPacket): void {
    if (!(s.flags & F_CONNECTED)) {
      // Nothing before auth: an event on an unauthenticated socket ends it.
      this.e.closeSession(s, DISCONNECT.parseError);
      return;
    }
    // The decoded array is this call's own: the event name comes off its front, the rest are the args.
    const args = p.data as unknown[];
    const event = args.shift() as string;
    const id = p.id;
    const ack: AckFn | undefined =
      id === undefined
        ? undefined
        : (...res: unknown[]) => {
            if (s.flags & F_CLOSED) return;
            this.e.sendFrames(s, encodeSio({ type: PacketType.ACK, nsp: '/', id, data: res }));
          };
    // Token bucket: refill by elapsed time, one token per event.
    const { rate, burst } = s.eventRate ?? this.e.opts.eventRate;
    const now = performance.now();
    s.tokens = Math.min(burst, s.tokens + ((now - s.tokensAt) * rate) / 1000);
    s.tokensAt = now;
    if (s.tokens < 1) {
      s.tokens -= 1;
      if (s.tokens < -burst) {
        // Still flooding after a whole burst of refusals: cut it off (it may reconnect later).
        this.e.closeSession(s, DISCONNECT.rateLimited);
        return;
      }
      this.e.opts.hooks.onRateLimited?.(s, event, ack);
      return;
    }
    s.tokens -= 1;
    try {
      this.e.opts.hooks.onEvent(s, event, args, ack);
    } catch (err) {
      this.e.log.error({ err, event }, 'event handler failed');
    }
  }
}
