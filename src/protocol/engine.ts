// Engine.IO 4 sessions: the session table, the handshake (open packet, per-IP and capacity limits,
// the connect deadline of sessions that have not sent CONNECT), the heartbeat, the Engine.IO packets
// common to both transports, writing frames to a session whichever its transport, and closing. The
// transports (polling.ts, websocket.ts), the Socket.IO layer (socketio.ts) and rooms (rooms.ts) are
// its parts; server.ts builds them and is the public face.
//
// No per-socket timers: one heartbeat clock pings every websocket through a single native publish
// and sweeps sessions that did not answer, and one timer closes sessions past their connect deadline.
// Edge-link clients (F_EDGE) are not pinged nor swept here: their gateway owns their heartbeat.
import type { Packet as EioPacket } from 'engine.io-parser';
import type { Logger } from 'pino';
import { DISCONNECT, toChatdError } from '../errors.js';
import { EIO_ERR } from './eio-errors.js';
import { isClose, writeReply } from '../http/reply.js';
import { promClient, registry, socketConnections } from '../observability/metrics.js';
import type { HttpRequest, HttpResponse } from '../uws.js';
import type { HandshakeRefusal } from './link.js';
import type { PollingTransport } from './polling.js';
import { randomId } from './random-id.js';
import type { Rooms } from './rooms.js';
import type { SocketServerOptions } from './server.js';
import {
  F_AUTHING,
  F_CLOSED,
  F_CONNECTED,
  F_EDGE,
  F_GRACE,
  F_PROBE,
  F_REFUSED,
  F_WS,
  redact,
  Session,
  type AckCallback,
  type Frame,
  type Handshake,
  type ReplyTo,
  type SessionHost,
} from './session.js';
import type { SocketIoProtocol } from './socketio.js';
import type { DisconnectReason, SocketDisconnect } from './types.js';
import type { WebsocketTransport } from './websocket.js';

/** The uWS topic every websocket session subscribes to: one publish pings them all. */
export const PING_TOPIC = 'eio:ping';

const handshakesRefused = new promClient.Counter({
  name: 'chatd_socketio_handshakes_refused_total',
  help: 'Engine.IO handshakes refused, by reason (rate: handshakePerIp; pending_ip: pendingPerIp; pending: maxPending; capacity: maxConnections).',
  labelNames: ['reason'] as const,
  registers: [registry],
});

/** The parts of an engine, built and handed over by server.ts (they hold the engine in turn). */
export interface EngineParts<C> {
  readonly rooms: Rooms<C>;
  readonly polling: PollingTransport<C>;
  readonly websocket: WebsocketTransport<C>;
  readonly sio: SocketIoProtocol<C>;
}

/** How often a capacity refusal is logged at most (per message). */
const REFUSAL_LOG_MS = 10_000;

export class Engine<C> implements SessionHost<C> {
  readonly sendBufferBytes: number;
  readonly log: Logger;
  readonly sessions = new Map<string, Session<C>>();
  rooms!: Rooms<C>;
  polling!: PollingTransport<C>;
  websocket!: WebsocketTransport<C>;
  sio!: SocketIoProtocol<C>;
  /** Heartbeat rounds so far; a session's `pong` is the round it last answered. */
  round = 0;
  draining = false;
  wsCount = 0;
  /** Sessions whose CONNECT was accepted (what maxConnections counts). */
  connectedCount = 0;
  /** Sessions not through CONNECT yet, oldest first (their deadlines are in this order too). */
  readonly pending = new Set<Session<C>>();
  private readonly pendingByIp = new Map<string, number>();
  private pendingTimer: NodeJS.Timeout | null = null;
  /** Capacity refusals per log message since it was last written (a flood must not flood the log). */
  private readonly refusalsUnlogged = new Map<string, { count: number; loggedAt: number }>();
  private readonly pingTimer: NodeJS.Timeout;
  private flushScheduled = false;
  /** The deferred flush as one function made once (scheduling it allocates no closure). */
  private readonly flushLater = (): void => this.flush();

  constructor(readonly opts: SocketServerOptions<C>) {
    this.sendBufferBytes = opts.sendBufferBytes;
    this.log = opts.logger;
    this.pingTimer = setInterval(() => this.heartbeat(), Math.max(1, opts.pingIntervalMs));
    this.pingTimer.unref();
  }

  attach(parts: EngineParts<C>): void {
    this.rooms = parts.rooms;
    this.polling = parts.polling;
    this.websocket = parts.websocket;
    this.sio = parts.sio;
  }

  // ------------------------------------------------------------------ handshake and limits

  replyTo(req: HttpRequest): ReplyTo {
    return { origin: req.getHeader('origin') || undefined, close: isClose(req.getHeader('connection')) };
  }

  readHandshake(res: HttpResponse, req: HttpRequest): Handshake {
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

  openPacket(sid: string, upgrades: string[]): string {
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

  /** CORS headers for a polling answer (websockets are checked at CONNECT by the role). */
  cors(origin: string | undefined): Record<string, string> {
    if (!origin || !this.opts.cors?.allowOrigin(origin)) return {};
    return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' };
  }

  /**
   * Whether the request's query string passes the role's check (`checkQuery`); answers the
   * refusal itself when not.
   */
  queryAllowed(res: HttpResponse, req: HttpRequest, to: ReplyTo): boolean {
    const refusal = this.queryRefusal(req.getQuery() ?? '', to);
    if (refusal) this.writeRefusal(res, refusal, to);
    return !refusal;
  }

  /** The refusal of a query string by the role's check (`checkQuery`), if it refuses it. */
  queryRefusal(query: string, to: ReplyTo): HandshakeRefusal | undefined {
    if (!this.opts.checkQuery) return undefined;
    try {
      this.opts.checkQuery(query);
      return undefined;
    } catch (err) {
      const refusal = toChatdError(err);
      return { status: refusal.status, headers: this.cors(to.origin), body: JSON.stringify(refusal.toJSON()) };
    }
  }

  /** An Engine.IO error: its JSON body, with Retry-After (seconds) on a transient refusal. */
  eioRefusal(status: number, body: { code: number; message: string }, to: ReplyTo, retryAfter?: number): HandshakeRefusal {
    const headers = this.cors(to.origin);
    if (retryAfter !== undefined) headers['Retry-After'] = String(retryAfter);
    return { status, headers, body: JSON.stringify(body) };
  }

  eioError(res: HttpResponse, status: number, body: { code: number; message: string }, to: ReplyTo, retryAfter?: number): void {
    this.writeRefusal(res, this.eioRefusal(status, body, to, retryAfter), to);
  }

  writeRefusal(res: HttpResponse, r: HandshakeRefusal, to: ReplyTo): void {
    writeReply(res, { status: r.status, contentType: 'application/json', headers: r.headers, close: to.close }, r.body);
  }

  /** Whether a new session from `hs.ip` may start; answers the refusal itself when not (see admission). */
  admit(res: HttpResponse, hs: Handshake): boolean {
    const refusal = this.admission(hs);
    if (refusal) this.writeRefusal(res, refusal, hs);
    return !refusal;
  }

  /**
   * Why a new session from `hs.ip` may not start, if it may not. The per-IP limits come before the
   * capacity checks (DESIGN.md "Handshake limits"): a flooding address gets 429 and is never the
   * reason another address gets 503.
   */
  admission(hs: Handshake): HandshakeRefusal | undefined {
    const to: ReplyTo = hs;
    if (this.draining) return this.eioRefusal(503, EIO_ERR.draining, to);
    const { rate, burst } = this.opts.handshakePerIp;
    const taken = this.opts.handshakeLimiter.takeSync(hs.ip, rate, burst);
    if (!taken.allowed) {
      handshakesRefused.inc({ reason: 'rate' });
      return this.eioRefusal(429, EIO_ERR.rateLimited, to, Math.max(1, Math.ceil(taken.retryAfterMs / 1000)));
    }
    if ((this.pendingByIp.get(hs.ip) ?? 0) >= this.opts.pendingPerIp) {
      handshakesRefused.inc({ reason: 'pending_ip' });
      return this.eioRefusal(429, EIO_ERR.tooManyPending, to, 1);
    }
    if (this.pending.size >= this.opts.maxPending) {
      handshakesRefused.inc({ reason: 'pending' });
      this.warnRefusal('connection refused: too many unauthenticated sessions', this.opts.maxPending);
      return this.eioRefusal(503, EIO_ERR.capacity, to);
    }
    if (this.connectedCount >= this.opts.maxConnections) {
      handshakesRefused.inc({ reason: 'capacity' });
      this.warnRefusal('connection refused: node at capacity', this.opts.maxConnections);
      return this.eioRefusal(503, EIO_ERR.capacity, to);
    }
    return undefined;
  }

  /**
   * Logs a capacity refusal at most once per REFUSAL_LOG_MS per message, with how many happened
   * since (`chatd_socketio_handshakes_refused_total` counts every one).
   */
  private warnRefusal(msg: string, max: number): void {
    const now = Date.now();
    const seen = this.refusalsUnlogged.get(msg) ?? { count: 0, loggedAt: 0 };
    seen.count++;
    this.refusalsUnlogged.set(msg, seen);
    if (now - seen.loggedAt < REFUSAL_LOG_MS) return;
    this.log.warn({ max, refused: seen.count }, msg);
    seen.count = 0;
    seen.loggedAt = now;
  }

  /** A CONNECT accepted by the role while the node filled up since the handshake: a transient refusal. */
  refuseAtCapacity(s: Session<C>): void {
    handshakesRefused.inc({ reason: 'capacity' });
    this.warnRefusal('connection refused: node at capacity', this.opts.maxConnections);
    this.closeSession(s, DISCONNECT.capacity);
    this.callDisconnect(s, DISCONNECT.capacity.reason);
  }

  /** A new session: counted as pending (per IP and in total) until its CONNECT is accepted. */
  addSession(hs: Handshake): Session<C> {
    const s = new Session<C>(`${this.opts.nodeId}.${randomId(16)}`, this, hs, this.round, this.opts.eventRate.burst);
    this.sessions.set(s.id, s);
    s.pendingIp = hs.ip;
    s.deadline = performance.now() + this.opts.connectTimeoutMs;
    this.pending.add(s);
    this.pendingByIp.set(hs.ip, (this.pendingByIp.get(hs.ip) ?? 0) + 1);
    this.schedulePendingSweep();
    return s;
  }

  unpend(s: Session<C>): void {
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

  // ------------------------------------------------------------------ packets and frames

  /** An Engine.IO packet from either transport (the websocket's probe packets are handled there). */
  onEnginePacket(s: Session<C>, p: EioPacket): void {
    switch (p.type) {
      case 'message':
        this.sio.onMessageData(s, p.data as string | Buffer);
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
    if (poll) this.polling.enqueue(s, poll, frames);
  }

  emitEvent(s: Session<C>, event: string, args: readonly unknown[], cb?: AckCallback): void {
    this.sio.emit(s, event, args, cb);
  }

  join(s: Session<C>, topic: string): void {
    this.rooms.join(s, topic);
  }

  leave(s: Session<C>, topic: string): void {
    this.rooms.leave(s, topic);
  }

  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushLater);
  }

  /** The deferred flush: room frames to uWS topics and polling buffers, then polling responses. */
  flush(): void {
    this.flushScheduled = false;
    this.rooms.flushQueue();
    this.flushScheduled = false;
    this.polling.answerDirty();
  }

  // ------------------------------------------------------------------ heartbeats and closing

  /**
   * One frame to a topic's websockets: natively to this node's, and once per edge link whose
   * gateway has subscribers (SocketServerOptions.fanout).
   */
  publishFrame(topic: string, frame: Frame): void {
    const binary = typeof frame !== 'string';
    this.opts.app.publish(topic, frame, binary);
    this.opts.fanout?.publish(topic, frame, binary);
  }

  /**
   * One clock for this node's own sessions: ping all (one native publish; polling ones in their
   * buffers), then sweep the silent. Nothing goes to edge links: gateways ping their clients.
   */
  private heartbeat(): void {
    const round = ++this.round;
    this.opts.app.publish(PING_TOPIC, '2', false);
    for (const s of this.polling.sessions) this.sendFrames(s, ['2']);
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
      if (s.flags & F_EDGE) continue; // its gateway pings it and closes it when silent
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
        this.polling.respond(s, poll, [...poll.buf, '1']);
      } else if (
        poll.buf.length > 0 &&
        s.flags & F_CONNECTED &&
        code !== DISCONNECT.slowConsumer.code &&
        reason !== DISCONNECT.pingTimeout.reason
      ) {
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
  finish(s: Session<C>, reason: DisconnectReason): void {
    const wasWs = (s.flags & F_WS) !== 0;
    s.flags |= F_CLOSED;
    this.unpend(s);
    if (s.flags & F_CONNECTED) this.connectedCount--;
    const poll = s.poll;
    if (poll) {
      this.rooms.dropPolling(s, poll);
      this.polling.release(s);
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

  callDisconnect(s: Session<C>, reason: DisconnectReason): void {
    try {
      this.opts.hooks.onDisconnect(s, reason);
    } catch (err) {
      this.log.error({ err }, 'onDisconnect hook failed');
    }
  }

  /** Drops a session from the table (a closing polling session stays until its last GET). */
  forget(s: Session<C>): void {
    this.sessions.delete(s.id);
    if (s.poll) s.poll.closing = false;
  }
}
