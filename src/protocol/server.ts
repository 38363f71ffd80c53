// Engine.IO 4 + Socket.IO 5 (default namespace) on uWebSockets.js: websocket and long-polling with
// upgrade, heartbeats, acks both ways, rooms on uWS native pub/sub, limits. Chat logic lives in the
// role's hooks (types.ts). shared/notes/socketio-on-uws.md lists the wire facts this follows.
//
// Memory: an idle websocket connection costs one Session object (a dozen fields) and one Map
// entry. No per-socket timers: one heartbeat clock pings every websocket through a single native
// publish and sweeps sessions that did not answer; polling state lives in a side object that a
// websocket session drops at upgrade.
import { decodePayload, decodePacket, type Packet as EioPacket } from 'engine.io-parser';
import { Decoder, Encoder, PacketType, type Packet as SioPacket } from 'socket.io-parser';
import type { Logger } from 'pino';
import { DISCONNECT, toChatdError } from '../errors.js';
import type { CorsPolicy } from '../http/router.js';
import { isClose, writeReply } from '../http/reply.js';
import { promClient, registry, socketConnections } from '../observability/metrics.js';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket } from '../uws.js';
import type { Accepted, AckFn, ConnectInfo, DisconnectReason, EventRate, ProtocolHooks, Socket, SocketDisconnect, TransportName } from './types.js';
import { randomId } from './random-id.js';

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
   * Takes over a polling request whose sid names another node (a plain L4 load balancer in front of
   * several ws nodes): returns true when it answered the request, false to handle it here. Called
   * before anything else touches `res`/`req`.
   */
  readonly forward?: (res: HttpResponse, req: HttpRequest) => boolean;
}

/** The subset of a token-bucket limiter the handshake limit needs (the in-process MemoryRateLimiter of store/memory). */
export interface SyncRateLimiter {
  takeSync(key: string, rate: number, burst: number): { allowed: boolean; retryAfterMs: number };
}

/** Engine.IO handshake errors (the JSON body of a 400, as the reference server sends them). */
const EIO_ERR = {
  transportUnknown: { code: 0, message: 'Transport unknown' },
  unknownSid: { code: 1, message: 'Session ID unknown' },
  badMethod: { code: 2, message: 'Bad handshake method' },
  badRequest: { code: 3, message: 'Bad request' },
  forbidden: { code: 4, message: 'Forbidden' },
  unsupported: { code: 5, message: 'Unsupported protocol version' },
  // chatd's own refusals of a handshake (transient: the client backs off and retries).
  rateLimited: { code: 3, message: 'Too many requests' },
  tooManyPending: { code: 3, message: 'Too many unauthenticated sessions from this address' },
  capacity: { code: 3, message: 'Server at capacity' },
  draining: { code: 3, message: 'Server is shutting down' },
} as const;

/** Where an HTTP answer goes: the request's Origin (CORS) and whether it asked to close the connection. */
interface ReplyTo {
  readonly origin: string | undefined;
  readonly close: boolean;
}

const handshakesRefused = new promClient.Counter({
  name: 'chatd_socketio_handshakes_refused_total',
  help: 'Engine.IO handshakes refused, by reason (rate: handshakePerIp; pending_ip: pendingPerIp; pending: maxPending; capacity: maxConnections).',
  labelNames: ['reason'] as const,
  registers: [registry],
});

const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']);
const PING_TOPIC = 'eio:ping';
const encoder = new Encoder();

// Session flags (one small integer instead of a handful of booleans).
const F_WS = 1; // the transport is a websocket (upgraded or direct)
const F_PROBE = 2; // `ws` is an upgrade probe; the transport is still polling
const F_AUTHING = 4; // CONNECT received, authenticate() pending
const F_CONNECTED = 8;
const F_CLOSED = 16;
const F_REFUSED = 32; // CONNECT_ERROR sent: the session waits for the client to close it
const F_POSTING = 64; // a polling POST is being read
const F_GRACE = 128; // refused: given one more connect period to read its CONNECT_ERROR

type Frame = string | Buffer;

/** uWS copies the upgrade's user data onto its websocket object: one reference to the session. */
interface WsData<C> {
  readonly s: Session<C>;
}

/** State only a long-polling session needs; dropped at upgrade. */
interface PollState {
  res: HttpResponse | null;
  resTo: ReplyTo;
  buf: Frame[];
  bytes: number;
  /** Rooms joined, to feed them while polling and subscribe the websocket at upgrade. */
  rooms: Set<string>;
  /** Set on a closed session with frames left: the next GET gets them plus a close packet. */
  closing: boolean;
}

const NO_REPLY_TO: ReplyTo = { origin: undefined, close: false };

interface Handshake {
  readonly headers: Record<string, string>;
  readonly origin: string | undefined;
  readonly ip: string;
  readonly close: boolean;
}

class Session<C> implements Socket<C> {
  ws: WebSocket<WsData<C>> | null = null;
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
  acks: Map<number, (err: Error | null, ...res: unknown[]) => void> | null = null;
  /** Kept only while a packet with binary attachments is being reassembled. */
  decoder: Decoder | null = null;
  drainWaiters: (() => void)[] | null = null;
  /** While CONNECT is not complete: the client IP it is counted under, and when it is closed. */
  pendingIp: string | null = null;
  deadline = 0;

  constructor(
    readonly id: string,
    readonly server: SocketServer<C>,
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
    if (RESERVED.has(event)) throw new Error(`"${event}" is a reserved event name`);
    if (this.flags & F_CLOSED) return;
    this.server.sendFrames(this, encodeSio({ type: PacketType.EVENT, nsp: '/', data: [event, ...args] }));
  }

  emitWithAck(event: string, args: readonly unknown[], cb: (err: Error | null, ...res: unknown[]) => void): void {
    if (RESERVED.has(event)) throw new Error(`"${event}" is a reserved event name`);
    if (this.flags & F_CLOSED) return cb(new Error('socket closed'));
    const id = this.nextAck++;
    (this.acks ??= new Map()).set(id, cb);
    this.server.sendFrames(this, encodeSio({ type: PacketType.EVENT, nsp: '/', id, data: [event, ...args] }));
  }

  join(topic: string): void {
    this.server.join(this, topic);
  }
  leave(topic: string): void {
    this.server.leave(this, topic);
  }

  bufferedAmount(): number {
    if (this.ws && this.flags & F_WS) return this.ws.getBufferedAmount();
    return this.poll?.bytes ?? 0;
  }

  whenWritable(): Promise<void> {
    if (this.flags & F_CLOSED || this.bufferedAmount() < this.server.sendBufferBytes / 2) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  close(why: SocketDisconnect = DISCONNECT.serverClose): void {
    if (this.flags & F_CLOSED) return;
    if (!why.reconnect) this.server.sendFrames(this, ['41']);
    this.server.closeSession(this, why);
  }

  disconnect(): void {
    this.close(DISCONNECT.serverDisconnect);
  }

  /** Wakes whoever waits for the send buffer to drain. */
  drained(): void {
    const waiters = this.drainWaiters;
    if (!waiters) return;
    if (!(this.flags & F_CLOSED) && this.bufferedAmount() >= this.server.sendBufferBytes / 2) return;
    this.drainWaiters = null;
    for (const w of waiters) w();
  }
}

function encodeSio(packet: SioPacket): Frame[] {
  const parts = encoder.encode(packet) as (string | Buffer | ArrayBuffer | Uint8Array)[];
  const frames: Frame[] = ['4' + (parts[0] as string)];
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    frames.push(Buffer.isBuffer(p) ? p : Buffer.from(p as ArrayBuffer));
  }
  return frames;
}

/** The Engine.IO + Socket.IO server. One per listener; a role mounts it on its app. */
export class SocketServer<C> {
  readonly sendBufferBytes: number;
  private readonly opts: SocketServerOptions<C>;
  private readonly log: Logger;
  private readonly sessions = new Map<string, Session<C>>();
  private readonly pollingSessions = new Set<Session<C>>();
  /** room → polling sessions in it (websockets are subscribed natively). */
  private readonly pollingRooms = new Map<string, Set<Session<C>>>();
  /** Room frames waiting for the deferred flush, in publish order. */
  private queue: { topic: string; frames: Frame[] }[] = [];
  private readonly dirty = new Set<Session<C>>();
  private flushScheduled = false;
  private round = 0;
  private readonly pingTimer: NodeJS.Timeout;
  private draining = false;
  private wsCount = 0;
  /** Sessions whose CONNECT was accepted (what maxConnections counts). */
  private connectedCount = 0;
  /** Sessions not through CONNECT yet, oldest first (their deadlines are in this order too). */
  private readonly pending = new Set<Session<C>>();
  private readonly pendingByIp = new Map<string, number>();
  private pendingTimer: NodeJS.Timeout | null = null;

  constructor(opts: SocketServerOptions<C>) {
    this.opts = opts;
    this.sendBufferBytes = opts.sendBufferBytes;
    this.log = opts.logger;
    this.mount();
    this.pingTimer = setInterval(() => this.heartbeat(), Math.max(1, opts.pingIntervalMs));
    this.pingTimer.unref();
  }

  /** Open sessions (authenticated or not). */
  get size(): number {
    return this.sessions.size;
  }

  /** Sessions that have not completed CONNECT. */
  get pendingSize(): number {
    return this.pending.size;
  }

  /** Every open socket (for presence heartbeats and admin listings). */
  sockets(): IterableIterator<Socket<C>> {
    return this.sessions.values();
  }

  /**
   * Emits an event to every socket in a room, on this node. The frame is encoded once and written
   * from a deferred flush (never inside a message handler, so uWS batches it). `offset`, when
   * given, is appended as the last argument (the client's recovery offset).
   */
  publish(topic: string, event: string, args: readonly unknown[], offset?: string): void {
    if (RESERVED.has(event)) throw new Error(`"${event}" is a reserved event name`);
    const data = offset === undefined ? [event, ...args] : [event, ...args, offset];
    this.queue.push({ topic, frames: encodeSio({ type: PacketType.EVENT, nsp: '/', data }) });
    this.scheduleFlush();
  }

  /** Sessions in a room on this node (websockets and polling). */
  roomSize(topic: string): number {
    return this.opts.app.numSubscribers(topic) + (this.pollingRooms.get(topic)?.size ?? 0);
  }

  /** Stops accepting and closes every transport (not a Socket.IO disconnect: clients fail over). */
  drain(): void {
    this.draining = true;
    for (const s of [...this.sessions.values()]) this.closeSession(s, DISCONNECT.draining);
  }

  close(): void {
    this.drain();
    clearInterval(this.pingTimer);
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    this.pendingTimer = null;
  }

  // ------------------------------------------------------------------ HTTP and websocket routes

  private mount(): void {
    const { app, path } = this.opts;
    const base = path.endsWith('/') ? path : `${path}/`;
    const self = this;
    for (const p of new Set([base, base.slice(0, -1)])) {
      app.ws<WsData<C>>(p, {
        maxPayloadLength: this.opts.maxPayload,
        maxBackpressure: this.opts.sendBufferBytes,
        closeOnBackpressureLimit: 1, // the default silently skips a slow subscriber: a lost message
        idleTimeout: 0,
        sendPingsAutomatically: false,
        upgrade: (res, req, context) => self.onUpgrade(res, req, context),
        open: (ws) => self.onWsOpen(ws),
        message: (ws, msg, isBinary) => self.onWsMessage(ws, msg, isBinary),
        drain: (ws) => ws.getUserData().s.drained(),
        close: (ws, code) => self.onWsClose(ws, code),
      });
      app.get(p, (res, req) => self.onPollingGet(res, req));
      app.post(p, (res, req) => self.onPollingPost(res, req));
      app.options(p, (res, req) => self.onPreflight(res, req));
      // Any other method on the Engine.IO path: 400, as the reference server answers (not the router's 404).
      app.any(p, (res, req) => {
        if (req.getHeader('upgrade')) {
          req.setYield(true);
          return;
        }
        self.httpError(res, 400, EIO_ERR.badMethod, self.replyTo(req));
      });
    }
  }

  private replyTo(req: HttpRequest): ReplyTo {
    return { origin: req.getHeader('origin') || undefined, close: isClose(req.getHeader('connection')) };
  }

  private readHandshake(res: HttpResponse, req: HttpRequest): Handshake {
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    return {
      headers,
      origin: headers.origin || undefined,
      ip: this.opts.clientIp(res, headers),
      close: isClose(headers.connection),
    };
  }

  private newSid(): string {
    return `${this.opts.nodeId}.${randomId(16)}`;
  }

  private openPacket(sid: string, upgrades: string[]): string {
    return (
      '0' +
      JSON.stringify({
        sid,
        upgrades,
        pingInterval: this.opts.pingIntervalMs,
        pingTimeout: this.opts.pingTimeoutMs,
        maxPayload: this.opts.maxPayload,
      })
    );
  }

  /**
   * Whether a new session from `hs.ip` may start; answers the refusal itself when not. The per-IP
   * limits come before the capacity checks (DESIGN.md "Handshake limits"): a flooding address gets
   * 429 and is never the reason another address gets 503.
   */
  private admit(res: HttpResponse, hs: Handshake): boolean {
    const to: ReplyTo = hs;
    if (this.draining) {
      this.httpError(res, 503, EIO_ERR.draining, to);
      return false;
    }
    const { rate, burst } = this.opts.handshakePerIp;
    const taken = this.opts.handshakeLimiter.takeSync(hs.ip, rate, burst);
    if (!taken.allowed) {
      handshakesRefused.inc({ reason: 'rate' });
      this.httpError(res, 429, EIO_ERR.rateLimited, to, Math.max(1, Math.ceil(taken.retryAfterMs / 1000)));
      return false;
    }
    if ((this.pendingByIp.get(hs.ip) ?? 0) >= this.opts.pendingPerIp) {
      handshakesRefused.inc({ reason: 'pending_ip' });
      this.httpError(res, 429, EIO_ERR.tooManyPending, to, 1);
      return false;
    }
    if (this.pending.size >= this.opts.maxPending) {
      handshakesRefused.inc({ reason: 'pending' });
      this.log.warn({ max: this.opts.maxPending }, 'connection refused: too many unauthenticated sessions');
      this.httpError(res, 503, EIO_ERR.capacity, to);
      return false;
    }
    if (this.connectedCount >= this.opts.maxConnections) {
      handshakesRefused.inc({ reason: 'capacity' });
      this.log.warn({ max: this.opts.maxConnections }, 'connection refused: node at capacity');
      this.httpError(res, 503, EIO_ERR.capacity, to);
      return false;
    }
    return true;
  }

  /** A new session: counted as pending (per IP and in total) until its CONNECT is accepted. */
  private addSession(hs: Handshake): Session<C> {
    const s = new Session<C>(this.newSid(), this, hs, this.round, this.opts.eventRate.burst);
    this.sessions.set(s.id, s);
    s.pendingIp = hs.ip;
    s.deadline = performance.now() + this.opts.connectTimeoutMs;
    this.pending.add(s);
    this.pendingByIp.set(hs.ip, (this.pendingByIp.get(hs.ip) ?? 0) + 1);
    this.schedulePendingSweep();
    return s;
  }

  private unpend(s: Session<C>): void {
    const ip = s.pendingIp;
    if (ip === null) return;
    s.pendingIp = null;
    this.pending.delete(s);
    const n = (this.pendingByIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.pendingByIp.delete(ip);
    else this.pendingByIp.set(ip, n);
  }

  /** Moves a pending session's deadline to a full connectTimeoutMs from now (the set stays in deadline order). */
  private extendDeadline(s: Session<C>): void {
    if (s.pendingIp === null) return;
    this.pending.delete(s);
    s.deadline = performance.now() + this.opts.connectTimeoutMs;
    this.pending.add(s);
    this.schedulePendingSweep();
  }

  /** One timer for every pending session: it fires at the oldest deadline. */
  private schedulePendingSweep(): void {
    if (this.pendingTimer) return;
    const first = this.pending.values().next();
    if (first.done) return;
    const delay = Math.max(0, first.value.deadline - performance.now());
    this.pendingTimer = setTimeout(() => {
      this.pendingTimer = null;
      this.sweepPending();
    }, Math.ceil(delay));
    this.pendingTimer.unref();
  }

  /**
   * Closes the sessions past their connect deadline. One still authenticating (its CONNECT was sent,
   * the role is deciding) or just refused (CONNECT_ERROR on its way) gets one more period.
   */
  private sweepPending(): void {
    const now = performance.now();
    for (const s of this.pending) {
      if (s.deadline > now) break;
      if (!(s.flags & F_CLOSED) && (s.flags & F_AUTHING || (s.flags & F_REFUSED && !(s.flags & F_GRACE)))) {
        if (s.flags & F_REFUSED) s.flags |= F_GRACE;
        this.extendDeadline(s);
        continue;
      }
      this.log.debug({ sid: redact(s.id) }, 'no CONNECT within connectTimeoutMs: closing the session');
      this.closeSession(s, DISCONNECT.transportClose);
    }
    this.schedulePendingSweep();
  }

  private onUpgrade(res: HttpResponse, req: HttpRequest, context: unknown): void {
    const eio = req.getQuery('EIO');
    const transport = req.getQuery('transport');
    const sid = req.getQuery('sid');
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const hs = this.readHandshake(res, req);
    if (eio !== '4') return this.httpError(res, 400, EIO_ERR.unsupported, hs);
    if (transport !== 'websocket') return this.httpError(res, 400, EIO_ERR.transportUnknown, hs);
    let session: Session<C>;
    if (sid) {
      const s = this.sessions.get(sid);
      if (!s || s.flags & (F_WS | F_PROBE | F_CLOSED) || !s.poll) return this.httpError(res, 400, EIO_ERR.unknownSid, hs);
      s.flags |= F_PROBE;
      session = s;
    } else {
      if (!this.admit(res, hs)) return;
      session = this.addSession(hs);
      session.flags |= F_WS;
    }
    res.upgrade<WsData<C>>({ s: session }, key, protocol, extensions, context as never);
  }

  private onWsOpen(ws: WebSocket<WsData<C>>): void {
    const s = ws.getUserData().s;
    if (s.flags & F_CLOSED) {
      ws.end(DISCONNECT.transportClose.code); // the session ended between upgrade and open
      return;
    }
    s.ws = ws;
    if (s.flags & F_PROBE) return; // an upgrade probe: the client sends `2probe` next
    this.wsCount++;
    socketConnections.inc({ transport: 'websocket' });
    ws.subscribe(PING_TOPIC);
    ws.send(this.openPacket(s.id, []));
  }

  private onWsMessage(ws: WebSocket<WsData<C>>, msg: ArrayBuffer, isBinary: boolean): void {
    const s = ws.getUserData().s;
    if (s.flags & F_CLOSED || s.ws !== ws) return;
    if (isBinary) {
      this.onMessageData(s, Buffer.from(new Uint8Array(msg)));
      return;
    }
    const text = Buffer.from(msg).toString('utf8');
    if (s.flags & F_PROBE) {
      if (text === '2probe') {
        ws.send('3probe');
        // Complete the pending poll now so the client's pause() does not wait for a ping.
        this.answerPoll(s, true);
        return;
      }
      if (text === '5') return this.completeUpgrade(s, ws);
      if (text === '3') {
        s.pong = this.round;
        return;
      }
      this.closeSession(s, DISCONNECT.parseError);
      return;
    }
    this.onEnginePacket(s, decodePacket(text, 'nodebuffer'));
  }

  /** `5` on the probe: from here the websocket is the transport. Same tick: flush, then subscribe. */
  private completeUpgrade(s: Session<C>, ws: WebSocket<WsData<C>>): void {
    const poll = s.poll!;
    s.flags = (s.flags & ~F_PROBE) | F_WS;
    if (poll.res) this.respondPoll(s, poll, ['6']);
    ws.cork(() => {
      for (const f of poll.buf) ws.send(f, typeof f !== 'string');
      for (const topic of poll.rooms) {
        ws.subscribe(topic);
        this.pollingRooms.get(topic)?.delete(s);
      }
      ws.subscribe(PING_TOPIC);
    });
    for (const topic of poll.rooms) if (this.pollingRooms.get(topic)?.size === 0) this.pollingRooms.delete(topic);
    s.poll = null;
    this.pollingSessions.delete(s);
    this.dirty.delete(s);
    socketConnections.dec({ transport: 'polling' });
    socketConnections.inc({ transport: 'websocket' });
    this.wsCount++;
    s.drained();
  }

  private onWsClose(ws: WebSocket<WsData<C>>, code: number): void {
    const s = ws.getUserData().s;
    if (s.ws !== ws) return;
    s.ws = null;
    if (s.flags & F_PROBE) {
      // A failed upgrade: the session keeps polling.
      s.flags &= ~F_PROBE;
      return;
    }
    if (s.flags & F_CLOSED) return;
    // 1006: the connection dropped, or uWS cut it off (backpressure over the limit, oversize frame).
    this.finish(s, code === 1006 || code === 1009 ? 'transport error' : 'transport close');
  }

  private onPreflight(res: HttpResponse, req: HttpRequest): void {
    if (this.opts.forward?.(res, req)) return;
    const origin = req.getHeader('origin') || undefined;
    const close = isClose(req.getHeader('connection'));
    const headers = this.cors(origin);
    if (origin && this.opts.cors?.allowOrigin(origin)) {
      headers['Access-Control-Allow-Methods'] = 'GET, POST, OPTIONS';
      headers['Access-Control-Allow-Headers'] = 'Authorization, Content-Type';
      headers['Access-Control-Max-Age'] = String(this.opts.cors.maxAgeSeconds);
    }
    writeReply(res, { status: 204, headers, close });
  }

  private onPollingGet(res: HttpResponse, req: HttpRequest): void {
    // Websocket upgrades are never forwarded (the guard below yields them to the ws route).
    if (!req.getHeader('upgrade') && this.opts.forward?.(res, req)) return;
    if (req.getHeader('upgrade')) {
      // A websocket upgrade that reached the GET route (uWS tries the ws route first).
      req.setYield(true);
      return;
    }
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
      const s = sid ? this.sessions.get(sid) : undefined;
      if (s?.poll?.res === res) s.poll.res = null;
    });
    const eio = req.getQuery('EIO');
    const transport = req.getQuery('transport');
    const sid = req.getQuery('sid');
    const to = this.replyTo(req);
    if (eio !== '4') return this.httpError(res, 400, EIO_ERR.unsupported, to);
    if (transport !== 'polling') return this.httpError(res, 400, EIO_ERR.transportUnknown, to);
    if (!sid) {
      const hs = this.readHandshake(res, req);
      if (!this.admit(res, hs)) return;
      const s = this.addSession(hs);
      s.poll = { res: null, resTo: NO_REPLY_TO, buf: [], bytes: 0, rooms: new Set(), closing: false };
      this.pollingSessions.add(s);
      socketConnections.inc({ transport: 'polling' });
      this.writePoll(res, to, this.openPacket(s.id, ['websocket']));
      return;
    }
    const s = this.sessions.get(sid);
    const poll = s?.poll;
    if (!s || !poll || aborted) return this.httpError(res, 400, EIO_ERR.unknownSid, to);
    if (poll.res) {
      // Two GETs at once: the reference server answers 400 and closes the session.
      this.httpError(res, 400, EIO_ERR.badRequest, to);
      this.closeSession(s, DISCONNECT.transportError);
      return;
    }
    poll.res = res;
    poll.resTo = to;
    if (poll.closing) {
      this.respondPoll(s, poll, [...poll.buf, '1']);
      this.forget(s);
      return;
    }
    if (poll.buf.length > 0) this.respondPoll(s, poll, poll.buf);
    else if (s.flags & F_PROBE) this.respondPoll(s, poll, ['6']);
  }

  private onPollingPost(res: HttpResponse, req: HttpRequest): void {
    if (this.opts.forward?.(res, req)) return;
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
      if (s) s.flags &= ~F_POSTING;
    });
    const sid = req.getQuery('sid');
    const to = this.replyTo(req);
    const declared = Number(req.getHeader('content-length'));
    const s = sid ? this.sessions.get(sid) : undefined;
    if (req.getQuery('EIO') !== '4') return this.httpError(res, 400, EIO_ERR.unsupported, to);
    if (!sid) return this.httpError(res, 400, EIO_ERR.badMethod, to);
    if (!s || !s.poll || s.flags & F_CLOSED) return this.httpError(res, 400, EIO_ERR.unknownSid, to);
    if (s.flags & F_POSTING) {
      this.httpError(res, 400, EIO_ERR.badRequest, to);
      this.closeSession(s, DISCONNECT.transportError);
      return;
    }
    const limit = this.opts.maxPayload;
    const tooLarge = () => {
      this.httpText(res, 413, 'Payload Too Large', to);
      this.closeSession(s, DISCONNECT.payloadTooLarge);
    };
    if (Number.isFinite(declared) && declared > limit) return tooLarge();
    s.flags |= F_POSTING;
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    res.onData((ab, isLast) => {
      if (over || aborted) return;
      size += ab.byteLength;
      if (size > limit) {
        over = true;
        s.flags &= ~F_POSTING;
        tooLarge();
        return;
      }
      chunks.push(Buffer.from(new Uint8Array(ab)));
      if (!isLast) return;
      s.flags &= ~F_POSTING;
      const body = Buffer.concat(chunks, size).toString('utf8');
      this.httpText(res, 200, 'ok', to);
      if (s.flags & F_CLOSED) return;
      const packets = decodePayload(body, 'nodebuffer');
      for (const p of packets) {
        if (s.flags & F_CLOSED) break;
        this.onEnginePacket(s, p);
      }
    });
  }

  // ------------------------------------------------------------------ Engine.IO and Socket.IO packets

  private onEnginePacket(s: Session<C>, p: EioPacket): void {
    switch (p.type) {
      case 'message':
        this.onMessageData(s, p.data as string | Buffer);
        return;
      case 'pong':
        s.pong = this.round;
        return;
      case 'close':
        this.closeSession(s, DISCONNECT.transportClose);
        return;
      case 'noop':
        return;
      default:
        // open/ping/upgrade from a client, or a parser error.
        this.log.debug({ sid: redact(s.id), type: p.type }, 'protocol error: unexpected engine packet');
        this.closeSession(s, DISCONNECT.parseError);
    }
  }

  private onMessageData(s: Session<C>, data: string | Buffer): void {
    let decoded: SioPacket | undefined;
    let decoder = s.decoder;
    try {
      if (typeof data !== 'string' && !decoder) throw new Error('binary data when not reconstructing a packet');
      if (!decoder) decoder = new Decoder();
      decoder.on('decoded', (p: SioPacket) => {
        decoded = p;
      });
      decoder.add(data);
    } catch (err) {
      this.log.debug({ sid: redact(s.id), err: (err as Error).message }, 'protocol error: malformed packet');
      s.decoder?.destroy();
      s.decoder = null;
      this.closeSession(s, DISCONNECT.parseError);
      return;
    }
    decoder.off('decoded');
    if (!decoded) {
      s.decoder = decoder; // waiting for binary attachments
      return;
    }
    s.decoder = null;
    this.onSioPacket(s, decoded);
  }

  private onSioPacket(s: Session<C>, p: SioPacket): void {
    if (p.nsp !== '/') {
      if (p.type === PacketType.CONNECT) {
        this.sendFrames(s, [`44${p.nsp},${JSON.stringify({ message: 'Invalid namespace' })}`]);
        return;
      }
      this.closeSession(s, DISCONNECT.parseError);
      return;
    }
    switch (p.type) {
      case PacketType.CONNECT:
        return this.onConnectPacket(s, p.data);
      case PacketType.EVENT:
      case PacketType.BINARY_EVENT:
        return this.onEventPacket(s, p);
      case PacketType.ACK:
      case PacketType.BINARY_ACK: {
        if (!(s.flags & F_CONNECTED)) return this.closeSession(s, DISCONNECT.parseError);
        const cb = p.id === undefined ? undefined : s.acks?.get(p.id);
        if (!cb) return;
        s.acks!.delete(p.id!);
        try {
          cb(null, ...((p.data as unknown[]) ?? []));
        } catch (err) {
          this.log.error({ err }, 'ack callback failed');
        }
        return;
      }
      case PacketType.DISCONNECT:
        return this.closeSession(s, DISCONNECT.clientDisconnect);
      default:
        return this.closeSession(s, DISCONNECT.parseError);
    }
  }

  private onConnectPacket(s: Session<C>, data: unknown): void {
    if (s.flags & (F_AUTHING | F_CONNECTED | F_REFUSED) || !s.hs) {
      return this.closeSession(s, DISCONNECT.parseError);
    }
    if (data !== undefined && (typeof data !== 'object' || data === null || Array.isArray(data))) {
      return this.closeSession(s, DISCONNECT.parseError);
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
      pending = this.opts.hooks.authenticate(info, s);
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
          this.callDisconnect(s, 'transport close');
          return;
        }
        if (this.connectedCount >= this.opts.maxConnections) {
          // Full since the handshake: a transient refusal (the client backs off and retries).
          handshakesRefused.inc({ reason: 'capacity' });
          this.log.warn({ max: this.opts.maxConnections }, 'connection refused: node at capacity');
          this.closeSession(s, DISCONNECT.capacity);
          this.callDisconnect(s, DISCONNECT.capacity.reason);
          return;
        }
        this.unpend(s);
        this.connectedCount++;
        s.hs = null;
        s.flags |= F_CONNECTED;
        const ack: Record<string, string> = { sid: randomId(12) };
        if (accepted.pid) ack.pid = accepted.pid;
        this.sendFrames(s, [`40${JSON.stringify(ack)}`]);
        try {
          this.opts.hooks.onConnect(s, info);
        } catch (err) {
          this.log.error({ err }, 'onConnect hook failed');
          this.closeSession(s, DISCONNECT.unavailable);
        }
      },
      (err: unknown) => {
        s.flags &= ~F_AUTHING;
        if (s.flags & F_CLOSED) return;
        const e = toChatdError(err);
        if (e.code === 'internal') this.log.error({ err }, 'authenticate failed unexpectedly');
        if (e.final) {
          s.flags |= F_REFUSED;
          s.hs = null;
          this.sendFrames(s, [`44${JSON.stringify({ message: e.message, data: { code: e.code } })}`]);
        } else {
          this.log.debug({ code: e.code }, 'connect refused (transient): closing the transport');
          this.closeSession(s, DISCONNECT.unavailable);
        }
      },
    );
  }

  private onEventPacket(s: Session<C>, p: SioPacket): void {
    if (!(s.flags & F_CONNECTED)) {
      // Nothing before auth: an event on an unauthenticated socket ends it.
      this.closeSession(s, DISCONNECT.parseError);
      return;
    }
    const data = p.data as unknown[];
    const event = data[0] as string;
    const args = data.slice(1);
    const id = p.id;
    const ack: AckFn | undefined =
      id === undefined
        ? undefined
        : (...res: unknown[]) => {
            if (s.flags & F_CLOSED) return;
            this.sendFrames(s, encodeSio({ type: PacketType.ACK, nsp: '/', id, data: res }));
          };
    // Token bucket: refill by elapsed time, one token per event.
    const { rate, burst } = s.eventRate ?? this.opts.eventRate;
    const now = performance.now();
    s.tokens = Math.min(burst, s.tokens + ((now - s.tokensAt) * rate) / 1000);
    s.tokensAt = now;
    if (s.tokens < 1) {
      s.tokens -= 1;
      if (s.tokens < -burst) {
        // Still flooding after a whole burst of refusals: cut it off (it may reconnect later).
        this.closeSession(s, DISCONNECT.rateLimited);
        return;
      }
      this.opts.hooks.onRateLimited?.(s, event, ack);
      return;
    }
    s.tokens -= 1;
    try {
      this.opts.hooks.onEvent(s, event, args, ack);
    } catch (err) {
      this.log.error({ err, event }, 'event handler failed');
    }
  }

  // ------------------------------------------------------------------ writing

  /** Writes frames to one socket now (websocket) or into its poll buffer (polling). */
  sendFrames(s: Session<C>, frames: Frame[]): void {
    if (s.flags & F_CLOSED) return;
    const ws = s.ws;
    if (ws && s.flags & F_WS) {
      ws.cork(() => {
        for (const f of frames) ws.send(f, typeof f !== 'string');
      });
      return;
    }
    const poll = s.poll;
    if (!poll) return;
    for (const f of frames) {
      poll.buf.push(f);
      poll.bytes += f.length;
    }
    if (poll.bytes > this.opts.sendBufferBytes) {
      this.closeSession(s, DISCONNECT.slowConsumer);
      return;
    }
    this.dirty.add(s);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /**
   * Runs the deferred flush now: every room frame queued so far goes out. A role calls it just
   * before it hands a socket its replay and subscribes it to the room, so that the socket gets a
   * queued frame neither twice (replay + room) nor never.
   */
  flushNow(): void {
    this.flush();
  }

  /** The deferred flush: room frames to uWS topics and polling buffers, then polling responses. */
  private flush(): void {
    this.flushScheduled = false;
    const queue = this.queue;
    this.queue = [];
    const app = this.opts.app;
    for (const { topic, frames } of queue) {
      for (const f of frames) app.publish(topic, f, typeof f !== 'string');
      const polling = this.pollingRooms.get(topic);
      if (polling) for (const s of polling) this.sendFrames(s, frames);
    }
    this.flushScheduled = false;
    for (const s of this.dirty) {
      const poll = s.poll;
      if (poll?.res && poll.buf.length > 0 && !(s.flags & F_CLOSED)) this.respondPoll(s, poll, poll.buf);
    }
    this.dirty.clear();
  }

  /** Answers the pending GET, if any: with the buffer, or a noop when `noopIfEmpty`. */
  private answerPoll(s: Session<C>, noopIfEmpty: boolean): void {
    const poll = s.poll;
    if (!poll?.res) return;
    if (poll.buf.length > 0) this.respondPoll(s, poll, poll.buf);
    else if (noopIfEmpty) this.respondPoll(s, poll, ['6']);
  }

  private respondPoll(s: Session<C>, poll: PollState, frames: Frame[]): void {
    const res = poll.res!;
    poll.res = null;
    const body = frames.map((f) => (typeof f === 'string' ? f : 'b' + f.toString('base64'))).join('\x1e');
    if (frames === poll.buf) {
      poll.buf = [];
      poll.bytes = 0;
    }
    this.writePoll(res, poll.resTo, body);
    s.drained();
  }

  private writePoll(res: HttpResponse, to: ReplyTo, body: string): void {
    this.httpText(res, 200, body, to);
  }

  private cors(origin: string | undefined): Record<string, string> {
    if (!origin || !this.opts.cors?.allowOrigin(origin)) return {};
    return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' };
  }

  private httpText(res: HttpResponse, status: number, body: string, to: ReplyTo): void {
    writeReply(res, { status, contentType: 'text/plain; charset=UTF-8', headers: this.cors(to.origin), close: to.close }, body);
  }

  /** An Engine.IO error: its JSON body, with Retry-After (seconds) on a transient refusal. */
  private httpError(res: HttpResponse, status: number, body: { code: number; message: string }, to: ReplyTo, retryAfter?: number): void {
    const headers = this.cors(to.origin);
    if (retryAfter !== undefined) headers['Retry-After'] = String(retryAfter);
    writeReply(res, { status, contentType: 'application/json', headers, close: to.close }, JSON.stringify(body));
  }

  // ------------------------------------------------------------------ rooms

  join(s: Session<C>, topic: string): void {
    if (s.flags & F_CLOSED) return;
    if (s.ws && s.flags & F_WS) {
      s.ws.subscribe(topic);
      return;
    }
    const poll = s.poll;
    if (!poll || poll.rooms.has(topic)) return;
    poll.rooms.add(topic);
    let set = this.pollingRooms.get(topic);
    if (!set) this.pollingRooms.set(topic, (set = new Set()));
    set.add(s);
  }

  leave(s: Session<C>, topic: string): void {
    if (s.flags & F_CLOSED) return;
    if (s.ws && s.flags & F_WS) {
      s.ws.unsubscribe(topic);
      return;
    }
    if (!s.poll?.rooms.delete(topic)) return;
    const set = this.pollingRooms.get(topic);
    set?.delete(s);
    if (set?.size === 0) this.pollingRooms.delete(topic);
  }

  // ------------------------------------------------------------------ heartbeats and closing

  /** One clock for every session: ping all (one native publish), then sweep the silent. */
  private heartbeat(): void {
    const round = ++this.round;
    this.opts.app.publish(PING_TOPIC, '2');
    for (const s of this.pollingSessions) this.sendFrames(s, ['2']);
    const check = setTimeout(() => this.sweep(round), this.opts.pingTimeoutMs);
    check.unref();
  }

  private sweep(round: number): void {
    for (const s of [...this.sessions.values()]) {
      if (s.flags & F_CLOSED) {
        // A polling session closed with frames left whose client never came back.
        if (round - s.born >= 2) this.forget(s);
        continue;
      }
      if (s.born >= round) continue; // born after that ping
      if (s.pong < round) {
        this.closeSession(s, DISCONNECT.pingTimeout);
        continue;
      }
      // Sessions that never completed CONNECT are closed by their connect deadline (sweepPending).
      if (s.flags & F_PROBE && s.ws && round - s.born >= 2 && s.poll) {
        // An upgrade that never completed: drop the probe, keep polling.
        s.ws.end(DISCONNECT.transportClose.code); // the probe, not the session: code only, as ever
      }
    }
  }

  /** Closes a session's transport and forgets it; the role hears onDisconnect once. */
  closeSession(s: Session<C>, why: SocketDisconnect): void {
    if (s.flags & F_CLOSED) return;
    const { code, reason } = why;
    const ws = s.ws;
    const poll = s.poll;
    if (ws && s.flags & F_WS) {
      s.ws = null;
      s.flags |= F_CLOSED;
      ws.end(code, reason);
    } else if (poll) {
      if (ws) {
        s.ws = null;
        ws.end(code); // a pending probe: code only
      }
      s.flags |= F_CLOSED;
      if (poll.res) {
        this.respondPoll(s, poll, [...poll.buf, '1']);
      } else if (poll.buf.length > 0 && s.flags & F_CONNECTED && code !== DISCONNECT.slowConsumer.code && reason !== DISCONNECT.pingTimeout.reason) {
        // Keep the frames for the next GET (e.g. a disconnect packet), then a close packet. Not after
        // a ping timeout (the client is gone as far as the protocol goes: its next GET gets 400, as
        // from the reference server) nor for a session that never connected (nothing it must read).
        poll.closing = true;
      }
    } else {
      s.flags |= F_CLOSED;
    }
    this.finish(s, reason);
  }

  /** Bookkeeping when a session ends, however it ended. */
  private finish(s: Session<C>, reason: DisconnectReason): void {
    const wasWs = (s.flags & F_WS) !== 0;
    s.flags |= F_CLOSED;
    this.unpend(s);
    if (s.flags & F_CONNECTED) this.connectedCount--;
    const poll = s.poll;
    if (poll) {
      for (const topic of poll.rooms) {
        const set = this.pollingRooms.get(topic);
        set?.delete(s);
        if (set?.size === 0) this.pollingRooms.delete(topic);
      }
      poll.rooms.clear();
      this.pollingSessions.delete(s);
      this.dirty.delete(s);
      socketConnections.dec({ transport: 'polling' });
      if (!poll.closing) this.forget(s);
    } else {
      this.forget(s);
      if (wasWs) {
        this.wsCount--;
        socketConnections.dec({ transport: 'websocket' });
      }
    }
    s.decoder?.destroy();
    s.decoder = null;
    const acks = s.acks;
    s.acks = null;
    if (acks) for (const cb of acks.values()) cb(new Error('socket closed'));
    s.drained();
    if (s.flags & F_CONNECTED) this.callDisconnect(s, reason);
  }

  private callDisconnect(s: Session<C>, reason: DisconnectReason): void {
    try {
      this.opts.hooks.onDisconnect(s, reason);
    } catch (err) {
      this.log.error({ err }, 'onDisconnect hook failed');
    }
  }

  private forget(s: Session<C>): void {
    this.sessions.delete(s.id);
    if (s.poll) s.poll.closing = false;
  }
}

/** Session ids are polling credentials: logs get the node part only. */
export function redact(sid: string): string {
  const dot = sid.indexOf('.');
  return dot < 0 ? '***' : `${sid.slice(0, dot)}.***`;
}
