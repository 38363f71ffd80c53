// The protocol layer's contract with a role: Engine.IO 4 / Socket.IO 5 sessions on uWebSockets.js,
// with the chat logic left to hooks. The layer knows transports, framing, heartbeats, rooms and
// limits; the role decides who may connect (authenticate), what events mean (onEvent) and what a
// socket follows (join, replay).
import type { ChatdError, Disconnect } from '../errors.js';

export type TransportName = 'polling' | 'websocket';

/** What the role sees of a CONNECT: the client's `auth` plus what the handshake carried. */
export interface ConnectInfo {
  /** The CONNECT packet's payload without `pid`/`offset` (a plain object; `{}` when absent). */
  readonly auth: Readonly<Record<string, unknown>>;
  /** Handshake request headers (lower-case names): `authorization` for non-browser clients. */
  readonly headers: Readonly<Record<string, string>>;
  /** The handshake's Origin header; undefined for non-browser clients. */
  readonly origin: string | undefined;
  readonly ip: string;
  /** The transport the CONNECT arrived on. */
  readonly transport: TransportName;
  /** Set when the client asks for connection-state recovery (`pid` + `offset` in the CONNECT). */
  readonly recovery: { readonly pid: string; readonly offset: string } | undefined;
}

/** The role's answer to a CONNECT it accepts. */
export interface Accepted<C> {
  /** Per-socket state the role keeps (keep it small: it lives as long as the connection). */
  readonly context: C;
  /**
   * The recovery id to put in the CONNECT ack. The client sets `recovered = true` when it equals
   * the pid it sent, so answer its own pid only when the missed events will be replayed.
   */
  readonly pid?: string;
  /** This socket's event rate instead of the server's (agents answer queues of visitors in bursts). */
  readonly eventRate?: EventRate;
}

/** A token bucket: tokens added per second, and its size (the largest burst). */
export interface EventRate {
  readonly rate: number;
  readonly burst: number;
}

/** Acknowledges a client event: the arguments become the ACK packet's payload. */
export type AckFn = (...args: unknown[]) => void;

export interface ProtocolHooks<C> {
  /**
   * Decides a CONNECT. Throw a ChatdError to refuse: a `final` code becomes CONNECT_ERROR
   * (`{ message, data: { code } }`, the client does not retry), any other error closes the
   * transport (the client backs off and reconnects).
   */
  authenticate(info: ConnectInfo, socket: Socket<C>): Promise<Accepted<C>>;
  /** After the CONNECT ack went out: join rooms, start a replay. */
  onConnect(socket: Socket<C>, info: ConnectInfo): void;
  /** A client event after CONNECT; `ack` is set when the client asked for an acknowledgement. */
  onEvent(socket: Socket<C>, event: string, args: unknown[], ack: AckFn | undefined): void;
  /**
   * Called once per socket whose CONNECT was accepted, when it is gone (for any reason) — also when
   * it closed while `authenticate` was still running (then without a prior onConnect).
   */
  onDisconnect(socket: Socket<C>, reason: DisconnectReason): void;
  /** An event refused by the per-socket rate limit (before the socket is cut off for flooding). */
  onRateLimited?(socket: Socket<C>, event: string, ack: AckFn | undefined): void;
}

export type DisconnectReason =
  | 'transport close'
  | 'transport error'
  | 'ping timeout'
  | 'client namespace disconnect'
  | 'server namespace disconnect'
  | 'server shutting down'
  | 'slow consumer'
  | 'parse error'
  | 'rate limited'
  | 'server close';

/**
 * A DISCONNECT value the protocol layer may end a session with: its reason is one the role's
 * onDisconnect knows (the gateway's own values do not fit, by type).
 */
export type SocketDisconnect = Disconnect & { readonly reason: DisconnectReason };

/** One connected client as the role drives it. */
export interface Socket<C> {
  /** The Engine.IO session id: `<nodeId>.<22 base64url chars>` (128 random bits). */
  readonly id: string;
  /** The role's context; undefined until `authenticate` resolved. */
  readonly context: C | undefined;
  readonly transport: TransportName;
  readonly connected: boolean;
  readonly closed: boolean;
  /** Emits an event to this socket only. Reserved names (`connect`, `disconnect`, …) throw. */
  emit(event: string, ...args: unknown[]): void;
  /** Emits with an acknowledgement; `cb(err)` if the socket closes before the client answers. */
  emitWithAck(event: string, args: readonly unknown[], cb: (err: Error | null, ...res: unknown[]) => void): void;
  /** Follows a room (a uWS topic; polling sessions are fed the same frames). */
  join(topic: string): void;
  leave(topic: string): void;
  /** Bytes queued for this socket and not yet written. */
  bufferedAmount(): number;
  /** Resolves when the send buffer drained below half its limit, or the socket closed. */
  whenWritable(): Promise<void>;
  /**
   * Ends the connection as `why` says (default DISCONNECT.serverClose). A value that reconnects
   * closes the transport (the client comes back and recovers); one that does not is a Socket.IO
   * DISCONNECT first, so socket.io-client stays away.
   */
  close(why?: SocketDisconnect): void;
  /** close(DISCONNECT.serverDisconnect): the client does not reconnect (revoked credentials). */
  disconnect(): void;
}

/** Refusal thrown by `authenticate`; re-exported for the role's convenience. */
export type Refusal = ChatdError;
