// One Engine.IO session as the role sees it (the Socket of types.ts), and the state each transport
// keeps on it. Kept small on purpose: an idle websocket connection costs this one object (a dozen
// fields) and one Map entry; what only long-polling needs lives in PollState, dropped at upgrade.
import type { Decoder } from 'socket.io-parser';
import { DISCONNECT } from '../errors.js';
import type { HttpResponse } from '../uws.js';
import type { EventRate, Socket, SocketDisconnect, TransportName } from './types.js';

// Session flags (one small integer instead of a handful of booleans).
/** The transport is a websocket (upgraded or direct). */
export const F_WS = 1;
/** `ws` is an upgrade probe; the transport is still polling. */
export const F_PROBE = 2;
/** CONNECT received, authenticate() pending. */
export const F_AUTHING = 4;
export const F_CONNECTED = 8;
export const F_CLOSED = 16;
/** CONNECT_ERROR sent: the session waits for the client to close it. */
export const F_REFUSED = 32;
/** A polling POST is being read. */
export const F_POSTING = 64;
/** Refused: given one more connect period to read its CONNECT_ERROR. */
export const F_GRACE = 128;
/**
 * The websocket is an edge-link client (cluster/link-server.ts): the gateway holding its socket owns
 * its heartbeat (pings it, reads its pongs, closes it on a ping timeout), so this node neither pings
 * nor sweeps it.
 */
export const F_EDGE = 256;

/** One Engine.IO packet as written: text, or a binary attachment. */
export type Frame = string | Buffer;

/**
 * What the engine uses of a websocket: a uWS WebSocket, or an edge link's client (cluster/link-server.ts),
 * whose frames and subscriptions travel over the link to the gateway that holds the client's socket.
 */
export interface TransportSocket<D> {
  send(data: Frame, isBinary?: boolean): unknown;
  cork(fn: () => void): unknown;
  end(code?: number, reason?: string): void;
  subscribe(topic: string): unknown;
  unsubscribe(topic: string): unknown;
  getBufferedAmount(): number;
  getUserData(): D;
  /** Set on an edge link's client: its heartbeat is the gateway's (F_EDGE). */
  readonly edge?: boolean;
}

/** uWS copies the upgrade's user data onto its websocket object: one reference to the session. */
export interface WsData<C> {
  readonly s: Session<C>;
}

/** Where an HTTP answer goes: the request's Origin (CORS) and whether it asked to close the connection. */
export interface ReplyTo {
  readonly origin: string | undefined;
  readonly close: boolean;
}

export const NO_REPLY_TO: ReplyTo = { origin: undefined, close: false };

/** State only a long-polling session needs; dropped at upgrade. */
export interface PollState {
  res: HttpResponse | null;
  resTo: ReplyTo;
  buf: Frame[];
  bytes: number;
  /** Rooms joined, to feed them while polling and subscribe the websocket at upgrade. */
  rooms: Set<string>;
  /** Set on a closed session with frames left: the next GET gets them plus a close packet. */
  closing: boolean;
}

/** What the handshake request carried, kept until CONNECT is decided (the role reads it then). */
export interface Handshake {
  readonly headers: Record<string, string>;
  readonly origin: string | undefined;
  readonly ip: string;
  readonly close: boolean;
}

/** The answer to a server event sent with an ack: `err` when the socket closed first. */
export type AckCallback = (err: Error | null, ...res: unknown[]) => void;

/** What a session asks of the engine that owns it (engine.ts). */
export interface SessionHost<C> {
  readonly sendBufferBytes: number;
  sendFrames(s: Session<C>, frames: Frame[]): void;
  closeSession(s: Session<C>, why: SocketDisconnect): void;
  join(s: Session<C>, topic: string): void;
  leave(s: Session<C>, topic: string): void;
  /** Encodes and sends an EVENT, asking for an ack when `cb` is given; throws on a reserved name. */
  emitEvent(s: Session<C>, event: string, args: readonly unknown[], cb?: AckCallback): void;
}

export class Session<C> implements Socket<C> {
  ws: TransportSocket<WsData<C>> | null = null;
  poll: PollState | null = null;
  hs: Handshake | null;
  context: C | undefined = undefined;
  flags = 0;
  /** Heartbeat round of the last pong; a session is born as if it had answered the current one. */
  pong: number;
  born: number;
  tokens: number;
  tokensAt = 0;
  /** This socket's own event rate once its CONNECT chose one (agents); else the server's. */
  eventRate: EventRate | undefined = undefined;
  nextAck = 0;
  acks: Map<number, AckCallback> | null = null;
  /** Kept only while a packet with binary attachments is being reassembled. */
  decoder: Decoder | null = null;
  drainWaiters: (() => void)[] | null = null;
  /** While CONNECT is not complete: the client IP it is counted under, and when it is closed. */
  pendingIp: string | null = null;
  deadline = 0;

  constructor(
    readonly id: string,
    readonly host: SessionHost<C>,
    hs: Handshake,
    round: number,
    burst: number,
  ) {
    this.hs = hs;
    this.pong = round;
    this.born = round;
    this.tokens = burst;
  }

  get transport(): TransportName {
    return this.flags & F_WS ? 'websocket' : 'polling';
  }
  get connected(): boolean {
    return (this.flags & (F_CONNECTED | F_CLOSED)) === F_CONNECTED;
  }
  get closed(): boolean {
    return (this.flags & F_CLOSED) !== 0;
  }

  emit(event: string, ...args: unknown[]): void {
    this.host.emitEvent(this, event, args);
  }

  emitWithAck(event: string, args: readonly unknown[], cb: AckCallback): void {
    this.host.emitEvent(this, event, args, cb);
  }

  join(topic: string): void {
    this.host.join(this, topic);
  }
  leave(topic: string): void {
    this.host.leave(this, topic);
  }

  bufferedAmount(): number {
    if (this.ws && this.flags & F_WS) return this.ws.getBufferedAmount();
    return this.poll?.bytes ?? 0;
  }

  whenWritable(): Promise<void> {
    if (this.flags & F_CLOSED || this.bufferedAmount() < this.host.sendBufferBytes / 2) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  close(why: SocketDisconnect = DISCONNECT.serverClose): void {
    if (this.flags & F_CLOSED) return;
    if (!why.reconnect) this.host.sendFrames(this, ['41']);
    this.host.closeSession(this, why);
  }

  disconnect(): void {
    this.close(DISCONNECT.serverDisconnect);
  }

  /** Wakes whoever waits for the send buffer to drain. */
  drained(): void {
    const waiters = this.drainWaiters;
    if (!waiters) return;
    if (!(this.flags & F_CLOSED) && this.bufferedAmount() >= this.host.sendBufferBytes / 2) return;
    this.drainWaiters = null;
    for (const w of waiters) w();
  }
}

/** Session ids are polling credentials: logs get the node part only. */
export function redact(sid: string): string {
  const dot = sid.indexOf('.');
  return dot < 0 ? '***' : `${sid.slice(0, dot)}.***`;
}
