// Engine.IO 4 + Socket.IO 5 (default namespace) on uWebSockets.js: websocket and long-polling with
// upgrade, heartbeats, acks both ways, rooms on uWS native pub/sub, limits. Chat logic lives in the
// role's hooks (types.ts). shared/notes/socketio-on-uws.md lists the wire facts this follows.
//
// SocketServer is the public face a role holds; the work is done by one part per job:
//   engine.ts     Engine.IO sessions: handshake and its limits, heartbeat, frames, closing
//   polling.ts    the long-polling transport (held GETs, POST bodies, buffers, preflight)
//   websocket.ts  the websocket transport (uWS handlers, upgrade from polling)
//   socketio.ts   Socket.IO packets: CONNECT, EVENT (event rate), ACK, DISCONNECT; encoding
//   rooms.ts      rooms: uWS topics, the polling sessions in each, the deferred publish queue
//   session.ts    one session (the role's Socket) and its transport state
import type { Logger } from 'pino';
import type { CorsPolicy } from '../http/router.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws.js';
import type { us_socket_context_t } from 'uWebSockets.js';
import type { ForwardedSockets } from '../cluster/sid-forwarder.js';
import { EIO_ERR } from './eio-errors.js';
import { Engine } from './engine.js';
import { PollingTransport } from './polling.js';
import { Rooms } from './rooms.js';
import type { Frame } from './session.js';
import { encodeEvent, SocketIoProtocol } from './socketio.js';
import type { EventRate, ProtocolHooks, Socket } from './types.js';
import type { Fanout, LinkEndpoint } from './link.js';
import type { WsData } from './session.js';
import { WebsocketTransport } from './websocket.js';

export { redact } from './session.js';

export interface SocketServerOptions<C> {
  readonly app: TemplatedApp;
  /** Mount path, with the trailing slash (`/socket.io/`). */
  readonly path: string;
  /** Names the node in every session id, so a gateway can route a polling request to its owner. */
  readonly nodeId: string;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  /** Engine.IO maxPayload: the largest websocket frame and polling POST body. */
  readonly maxPayload: number;
  /** Per-socket send buffer; a socket over it is cut off (it reconnects and recovers). */
  readonly sendBufferBytes: number;
  /**
   * Authenticated sockets this node holds at most; handshakes beyond are refused (503, the client
   * retries), and so is a CONNECT accepted while the node is full (the transport is closed).
   */
  readonly maxConnections: number;
  /**
   * New Engine.IO sessions (handshakes, polling and websocket) per client IP, checked before any
   * capacity check: over it the handshake gets 429, so one address cannot fill the node.
   */
  readonly handshakePerIp: { readonly rate: number; readonly burst: number };
  /** The buckets of handshakePerIp (in process; full buckets are forgotten). */
  readonly handshakeLimiter: SyncRateLimiter;
  /** Sessions that have not completed CONNECT, per client IP (429 beyond) and in total (503 beyond). */
  readonly pendingPerIp: number;
  readonly maxPending: number;
  /** A session that has not sent CONNECT this long after its handshake is closed. */
  readonly connectTimeoutMs: number;
  /** Per-socket event rate (token bucket). */
  readonly eventRate: EventRate;
  readonly clientIp: (res: HttpResponse, headers: Readonly<Record<string, string>>) => string;
  /** CORS for polling requests (websockets are checked at CONNECT by the role). */
  readonly cors?: CorsPolicy;
  readonly logger: Logger;
  readonly hooks: ProtocolHooks<C>;
  /**
   * Takes over requests whose sid names another node (a plain L4 load balancer in front of several
   * nodes): polling requests and websocket upgrades (cluster/sid-forwarder.ts).
   */
  readonly forward?: SessionForwarding;
  /**
   * Room frames to edge-link clients: once per link whose gateway has subscribers
   * (cluster/link-server.ts). Native publishes reach this node's own websockets. (The heartbeat
   * ping is not among them: a gateway pings its clients itself.)
   */
  readonly fanout?: Fanout;
  /**
   * Refuses a request by its query string before anything else (the role's rule that credentials
   * never travel in a URL, where proxies and logs keep them): throws a ChatdError, answered as
   * `{ error, code }` with its status.
   */
  readonly checkQuery?: (query: string) => void;
}

/** An event encoded once (SocketServer.encode): one text frame, or a text frame and its binary attachments. */
export type EncodedEvent = string | Frame[];

/** What the protocol layer asks of a forwarder (cluster/sid-forwarder.ts implements it). */
export interface SessionForwarding {
  /**
   * A polling request (or preflight): true when it answered it, false to handle it here. Called
   * before anything else touches `res`/`req`.
   */
  request(res: HttpResponse, req: HttpRequest): boolean;
  /**
   * A websocket upgrade that passed the query check: true when it took it over (piped to the
   * owner, or refused), false to handle it here.
   */
  upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): boolean;
  /** The uWS handlers of the websockets it piped (user data `{ pipe }` instead of `{ s }`). */
  readonly sockets: ForwardedSockets;
}

/** The subset of a token-bucket limiter the handshake limit needs (the in-process MemoryRateLimiter of store/memory). */
export interface SyncRateLimiter {
  takeSync(key: string, rate: number, burst: number): { allowed: boolean; retryAfterMs: number };
}

/** The Engine.IO + Socket.IO server. One per listener; a role mounts it on its app. */
export class SocketServer<C> {
  readonly sendBufferBytes: number;
  private readonly e: Engine<C>;

  constructor(opts: SocketServerOptions<C>) {
    this.sendBufferBytes = opts.sendBufferBytes;
    const e = (this.e = new Engine<C>(opts));
    const polling = new PollingTransport<C>(e);
    const websocket = new WebsocketTransport<C>(e);
    e.attach({ rooms: new Rooms<C>(opts.app, e), polling, websocket, sio: new SocketIoProtocol<C>(e) });
    const { app, path } = opts;
    const base = path.endsWith('/') ? path : `${path}/`;
    for (const p of new Set([base, base.slice(0, -1)])) {
      websocket.mount(app, p);
      polling.mount(app, p);
      // Any other method on the Engine.IO path: 400, as the reference server answers (not the router's 404).
      app.any(p, (res, req) => {
        if (req.getHeader('upgrade')) {
          req.setYield(true);
          return;
        }
        e.eioError(res, 400, EIO_ERR.badMethod, e.replyTo(req));
      });
    }
  }

  /** The websocket transport's handlers for edge-link clients (cluster/link-server.ts). */
  get link(): LinkEndpoint<WsData<C>> {
    return this.e.websocket.link;
  }

  /** Open sessions (authenticated or not). */
  get size(): number {
    return this.e.sessions.size;
  }

  /** Sessions that have not completed CONNECT. */
  get pendingSize(): number {
    return this.e.pending.size;
  }

  /** Every open socket (for presence heartbeats and admin listings). */
  sockets(): IterableIterator<Socket<C>> {
    return this.e.sessions.values();
  }

  /**
   * Emits an event to every socket in a room, on this node. The frame is encoded once and written
   * from a deferred flush (never inside a message handler, so uWS batches it). `offset`, when
   * given, is appended as the last argument (the client's recovery offset).
   */
  publish(topic: string, event: string, args: readonly unknown[], offset?: string): void {
    this.e.rooms.publish(topic, event, args, offset);
    this.e.scheduleFlush();
  }

  /**
   * An event encoded once, for `publishEncoded` to several rooms (e.g. a conversation's topic and
   * its agents' watch topic). Throws on a reserved event name.
   */
  encode(event: string, args: readonly unknown[], offset?: string): EncodedEvent {
    return encodeEvent(event, args, offset);
  }

  /** `publish` of an event already encoded by `encode`. */
  publishEncoded(topic: string, frames: EncodedEvent): void {
    this.e.rooms.publishEncoded(topic, frames);
    this.e.scheduleFlush();
  }

  /** Sessions in a room on this node (websockets and polling). */
  roomSize(topic: string): number {
    return this.e.rooms.size(topic);
  }

  /**
   * Runs the deferred flush now: every room frame queued so far goes out. A role calls it just
   * before it hands a socket its replay and subscribes it to the room, so that the socket gets a
   * queued frame neither twice (replay + room) nor never.
   */
  flushNow(): void {
    this.e.flush();
  }

  /** Stops accepting and closes every transport (not a Socket.IO disconnect: clients fail over). */
  drain(): void {
    this.e.drain();
  }

  close(): void {
    this.e.close();
  }
}
