// The gateway's end of the edge link (link-codec.ts has the framing): one websocket per ws node,
// carrying every client websocket the gateway holds for that node. The gateway keeps one socket
// per client — its own uWS socket — and no upstream socket: a client's frames go into the link
// with its id, and what the node sends for it comes back the same way. Room frames come once per
// link (`pub`) and are published natively to the clients the node subscribed (`sub`), under a
// topic prefix of the link's own, so two nodes' rooms of the same name never mix at the gateway.
// The gateway owns its clients' Engine.IO heartbeat (roles/gateway/heartbeat.ts): no ping comes
// over the link and no pong goes to the node; a client it closes for silence is closed on the node
// with the close record's reason (`ping timeout`).
import WebSocket from 'ws';
import type { Logger } from 'pino';
import { CLOSE_CODES, DISCONNECT } from '../errors.js';
import type { HandshakeRefusal, LinkHandshake } from '../protocol/link.js';
import type { TemplatedApp, WebSocket as UwsSocket } from '../uws.js';
import { UpstreamFailure } from './http-proxy.js';
import { FLAG_BINARY, LINK_PATH, LinkWriter, OP, readClose, readPub, readRecords } from './link-codec.js';
import { linkClients, linkConnections, pubFrames } from './link-metrics.js';
import type { Upstream } from './upstreams.js';
import { sendableCode } from './ws-pipe.js';

/** uWS copies the upgrade's user data object: the client's state lives one level down. */
export interface EdgeSocketData {
  readonly c: EdgeClient;
}

/** What the node sent for a client before its socket opened, replayed in order at open. */
type Early = { f: Buffer; b: boolean } | { sub: string } | { unsub: string } | { close: number; reason: string };

export interface EdgeClient {
  readonly cid: number;
  readonly link: EdgeLink;
  ws: UwsSocket<EdgeSocketData> | undefined;
  early: Early[] | null;
  /** Set once the client is gone for the node (either side closed it). */
  closed: boolean;
  /** Frame bytes of the node's written to the client's socket (mod 2^32), and those not reported yet. */
  delivered: number;
  unreported: number;
  /** Bytes held by the client's socket at the last report. */
  held: number;
  /** The upgrade probe of a polling session: the node's heartbeat until the client's `5`. */
  probe: boolean;
  /** The gateway pings this client (a websocket session, or an upgrade completed). */
  beat: boolean;
  /** Heartbeat round of the last pong, and the round it started in (as a node's Session). */
  pong: number;
  born: number;
  /** Why the gateway itself closed the client (`ping timeout`), for the node; empty otherwise. */
  cut: string;
}

/** A batch for the node is sent at the end of the tick, or at once past this size. */
const FLUSH_BYTES = 256 * 1024;

/** The node hears what a client read every this many bytes delivered, and on drains. */
const REPORT_BYTES = 64 * 1024;

/**
 * The gateway pings each link this often (websocket pings, answered by uWS); a link that answered
 * nothing since the previous ping is cut as lost (a node that hangs or a network that drops
 * silently): its clients reconnect to another node.
 */
const LINK_PING_MS = 15_000;

export interface EdgeLinkOptions {
  readonly upstream: Upstream;
  readonly app: TemplatedApp;
  readonly logger: Logger;
  /** The link's topic prefix at the gateway (unique per link of this process). */
  readonly tag: string;
  readonly connectTimeoutMs: number;
  /** Past this much unsent towards the node (it stopped reading), the link is cut. */
  readonly maxBufferedBytes: number;
  /** How often the link is pinged (LINK_PING_MS unless a test says otherwise). */
  readonly pingMs?: number;
  /** Called once when the link closed (it is never reused). */
  readonly onClose: (link: EdgeLink) => void;
}

export type HandshakeAnswer = { accepted: true } | { refusal: HandshakeRefusal };

export class EdgeLink {
  readonly upstream: Upstream;
  readonly clients = new Map<number, EdgeClient>();
  private readonly ws: WebSocket;
  private readonly writer = new LinkWriter();
  private readonly pending = new Map<number, (a: HandshakeAnswer | Error) => void>();
  private nextCid = 1;
  private scheduled = false;
  private closed = false;
  private wasOpen = false;
  /** Whether the node said anything since the last link ping. */
  private heard = true;
  private pinger: NodeJS.Timeout | undefined;
  readonly opened: Promise<void>;

  constructor(private readonly opts: EdgeLinkOptions) {
    this.upstream = opts.upstream;
    const u = opts.upstream;
    const url = `${u.origin.replace(/^http/, 'ws')}${u.basePath}${LINK_PATH}`;
    const ws = (this.ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: opts.connectTimeoutMs,
      followRedirects: false,
      maxPayload: 256 << 20,
    }));
    ws.binaryType = 'nodebuffer';
    this.opened = new Promise<void>((resolve, reject) => {
      ws.once('open', () => {
        this.wasOpen = true;
        this.pinger = setInterval(() => this.pingLink(), opts.pingMs ?? LINK_PING_MS);
        this.pinger.unref();
        linkConnections.inc({ side: 'gateway' });
        opts.logger.info({ upstream: u.url }, 'edge link open');
        resolve();
      });
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        reject(
          new UpstreamFailure(
            'connect',
            `the ws node refused the edge link with ${res.statusCode} (is this gateway in its server.trustedProxies?)`,
          ),
        );
        ws.terminate();
      });
      ws.once('error', (err: Error & { code?: string }) => {
        const connect =
          err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENOTFOUND' || /timed out/i.test(err.message);
        reject(new UpstreamFailure(connect ? 'connect' : 'broken', err.message, { cause: err }));
      });
    });
    this.opened.catch(() => undefined);
    ws.on('error', (err) => opts.logger.debug({ err: err.message, upstream: u.url }, 'edge link error'));
    ws.on('pong', () => (this.heard = true));
    ws.on('ping', () => (this.heard = true));
    ws.on('message', (data: Buffer) => {
      this.heard = true;
      try {
        readRecords(data, this.onRecord);
      } catch (err) {
        opts.logger.warn({ err: (err as Error).message, upstream: u.url }, 'edge link: malformed message; closing the link');
        ws.terminate();
      }
    });
    ws.on('close', (code) => this.onClosed(code));
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === WebSocket.OPEN;
  }

  /** A new client of this link (not yet known to the node). */
  add(): EdgeClient {
    let cid = this.nextCid;
    while (this.clients.has(cid) || cid === 0) cid = (cid + 1) >>> 0;
    this.nextCid = (cid + 1) >>> 0;
    const c: EdgeClient = {
      cid,
      link: this,
      ws: undefined,
      early: [],
      closed: false,
      delivered: 0,
      unreported: 0,
      held: 0,
      probe: false,
      beat: false,
      pong: 0,
      born: 0,
      cut: '',
    };
    this.clients.set(cid, c);
    return c;
  }

  /** Sends the client's handshake (a new websocket, or the upgrade probe of a sid) and waits for the node's answer. */
  handshake(c: EdgeClient, kind: 'open' | 'upgrade', req: LinkHandshake): Promise<HandshakeAnswer> {
    if (!this.isOpen) return Promise.reject(new UpstreamFailure('broken', 'edge link closed'));
    return new Promise<HandshakeAnswer>((resolve, reject) => {
      // A node that does not answer in time: the client is forgotten here and closed there if it
      // was accepted after all (an accept for an unknown client is answered with a close).
      const timer = setTimeout(() => {
        this.forget(c);
        reject(new UpstreamFailure('timeout', 'the ws node did not answer the handshake in time'));
      }, this.opts.connectTimeoutMs);
      this.pending.set(c.cid, (a) => {
        clearTimeout(timer);
        if (a instanceof Error) reject(a);
        else resolve(a);
      });
      this.writer.record(kind === 'open' ? OP.open : OP.upgrade, 0, c.cid, JSON.stringify(req));
      this.schedule();
    });
  }

  /** The client's socket opened at the gateway: replays what came before. */
  attachSocket(c: EdgeClient, ws: UwsSocket<EdgeSocketData>): void {
    c.ws = ws;
    linkClients.inc({ side: 'gateway' });
    const early = c.early;
    c.early = null;
    if (!early || early.length === 0) return;
    ws.cork(() => {
      for (const e of early) {
        if ('f' in e) {
          ws.send(e.f, e.b);
          this.delivered(c, e.f.length);
        } else if ('sub' in e) ws.subscribe(this.opts.tag + e.sub);
        else if ('unsub' in e) ws.unsubscribe(this.opts.tag + e.unsub);
      }
    });
    const end = early.find((e): e is { close: number; reason: string } => 'close' in e);
    if (end) ws.end(sendableCode(end.close, CLOSE_CODES.normal), end.reason);
  }

  /** A frame from the client. */
  frame(c: EdgeClient, data: Buffer, binary: boolean): void {
    if (c.closed || this.closed) return;
    this.writer.record(OP.frame, binary ? FLAG_BINARY : 0, c.cid, data);
    // Many clients writing in one tick: send what is there before the batch grows past the node's frame limit.
    if (this.writer.size >= FLUSH_BYTES) this.flush();
    else this.schedule();
  }

  /**
   * The client's socket closed at the gateway (or never opened): the node ends its session, for the
   * reason the gateway closed it (`c.cut`, e.g. `ping timeout`) or as a client/network close.
   */
  clientClosed(c: EdgeClient, code: number): void {
    if (c.ws) linkClients.dec({ side: 'gateway' });
    c.ws = undefined;
    this.forget(c);
    if (c.closed) return;
    c.closed = true;
    if (this.closed) return;
    this.writer.close(c.cid, code, c.cut);
    this.schedule();
  }

  /** A link ping; the link is cut when the node answered nothing since the last one. */
  private pingLink(): void {
    if (!this.isOpen) return;
    if (!this.heard) {
      this.opts.logger.warn({ upstream: this.upstream.url }, 'edge link: the ws node answers no pings; cutting the link');
      this.ws.terminate();
      return;
    }
    this.heard = false;
    this.ws.ping();
  }

  /** Forgets a client the node never accepted. */
  forget(c: EdgeClient): void {
    if (this.clients.get(c.cid) === c) this.clients.delete(c.cid);
    this.pending.delete(c.cid);
  }

  /** After the client's socket drained: tells the node, when it was told of a fuller buffer. */
  drained(c: EdgeClient): void {
    if (c.held === 0 || c.closed || !c.ws) return;
    const now = c.ws.getBufferedAmount();
    if (now > c.held / 2) return;
    this.report(c, now);
  }

  /** Counts bytes written to the client's socket; every REPORT_BYTES the node hears of it. */
  private delivered(c: EdgeClient, bytes: number): void {
    c.delivered = (c.delivered + bytes) >>> 0;
    c.unreported += bytes;
    if (c.unreported >= REPORT_BYTES && c.ws) this.report(c, c.ws.getBufferedAmount());
  }

  private report(c: EdgeClient, held: number): void {
    c.held = held;
    c.unreported = 0;
    this.writer.buffered(c.cid, c.delivered, held);
    this.schedule();
  }

  close(code: number = DISCONNECT.gatewayDraining.code, reason: string = DISCONNECT.gatewayDraining.reason): void {
    this.flush();
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    else this.ws.terminate();
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    if (this.writer.size === 0) return;
    if (!this.isOpen) {
      this.writer.view();
      return;
    }
    this.ws.send(this.writer.take(), { binary: true });
    if (this.ws.bufferedAmount > this.opts.maxBufferedBytes) {
      this.opts.logger.warn(
        { upstream: this.upstream.url, buffered: this.ws.bufferedAmount },
        'edge link: the ws node does not read; cutting the link',
      );
      this.ws.terminate();
    }
  };

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Once per event-loop turn, not per microtask checkpoint: the frames of every client that wrote
    // in this turn (uWS calls back once per message) go to the node in one write.
    setImmediate(this.flush);
  }

  private readonly onRecord = (op: number, flags: number, cid: number, payload: Buffer): void => {
    if (op === OP.pub) {
      const { topic, frame } = readPub(payload);
      pubFrames.received++;
      this.opts.app.publish(this.opts.tag + topic, frame, (flags & FLAG_BINARY) !== 0);
      return;
    }
    const c = this.clients.get(cid);
    switch (op) {
      case OP.frame: {
        if (!c || c.closed) return;
        const binary = (flags & FLAG_BINARY) !== 0;
        const ws = c.ws;
        if (!ws) {
          c.early?.push({ f: payload, b: binary });
          return;
        }
        ws.send(payload, binary);
        this.delivered(c, payload.length);
        return;
      }
      case OP.sub:
      case OP.unsub: {
        if (!c || c.closed) return;
        const topic = payload.toString('utf8');
        if (!c.ws) c.early?.push(op === OP.sub ? { sub: topic } : { unsub: topic });
        else if (op === OP.sub) c.ws.subscribe(this.opts.tag + topic);
        else c.ws.unsubscribe(this.opts.tag + topic);
        return;
      }
      case OP.close: {
        if (!c || c.closed) return;
        c.closed = true;
        this.forget(c);
        const { code, reason } = readClose(payload);
        if (c.ws) c.ws.end(sendableCode(code, CLOSE_CODES.normal), reason);
        else c.early?.push({ close: code, reason });
        return;
      }
      case OP.accept:
      case OP.refuse: {
        const answer = this.pending.get(cid);
        if (!answer) {
          // Accepted after the gateway gave up on it: the node ends the session.
          if (op === OP.accept && !c) {
            this.writer.close(cid, 1006, '');
            this.schedule();
          }
          return;
        }
        this.pending.delete(cid);
        if (op === OP.accept) answer({ accepted: true });
        else {
          this.forget(c ?? ({ cid } as EdgeClient));
          answer({ refusal: JSON.parse(payload.toString('utf8')) as HandshakeRefusal });
        }
        return;
      }
      default:
        this.opts.logger.warn({ op, upstream: this.upstream.url }, 'edge link: unknown record');
    }
  };

  private onClosed(code: number): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    if (this.wasOpen) linkConnections.dec({ side: 'gateway' });
    const failure = new UpstreamFailure('broken', `edge link closed (${code})`);
    for (const answer of this.pending.values()) answer(failure);
    this.pending.clear();
    const clients = [...this.clients.values()];
    this.clients.clear();
    if (clients.length > 0)
      this.opts.logger.warn({ upstream: this.upstream.url, code, clients: clients.length }, 'edge link lost: closing its clients');
    const gone = DISCONNECT.upstreamGone;
    for (const c of clients) {
      if (c.closed) continue;
      c.closed = true;
      if (c.ws) c.ws.end(gone.code, gone.reason);
      else c.early?.push({ close: gone.code, reason: gone.reason });
    }
    this.opts.onClose(this);
  }
}
