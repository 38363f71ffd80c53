// The ws node's end of the edge link (link-codec.ts has the framing). A gateway of the separate tier
// opens one link websocket to each ws node, at LINK_PATH on the node's listener, and only from a
// trusted peer (`server.trustedProxies`, the list the node already trusts for X-Forwarded-For): the
// link carries client IPs and handshakes the node believes as given.
//
// Each client the gateway opens over the link is a LinkSocket: the subset of a uWS WebSocket the
// protocol layer uses (TransportSocket), so the client is an Engine.IO session like any other
// (protocol/link.ts). Its frames, subscriptions and close become records on the link; room frames
// go once per link whose gateway has subscribers (the Fanout this returns: refcounts topic → link),
// and the gateway publishes them natively to its local sockets. The heartbeat of link clients is
// the gateway's (it pings them, reads their pongs and closes the silent ones, then tells the node
// with a close record whose reason is `ping timeout`): no pings go over a link, no pongs come back.
import type { Logger } from 'pino';
import { peerAddress } from '../http/client-ip.js';
import { writeJsonReply } from '../http/reply.js';
import type { Fanout, LinkEndpoint, LinkHandshake } from '../protocol/link.js';
import type { Frame, TransportSocket } from '../protocol/session.js';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket as UwsSocket } from '../uws.js';
import type { us_socket_context_t } from 'uWebSockets.js';
import { CLOSE_CODES, DISCONNECT } from '../errors.js';
import type { PeerTrust } from './http-proxy.js';
import { FLAG_BINARY, LINK_PATH, LinkWriter, OP, readClose, readRecords } from './link-codec.js';
import { linkClients, linkConnections, pubFrames } from './link-metrics.js';

/** A link's batch is sent at the end of the tick, or at once past this size. */
const FLUSH_BYTES = 256 * 1024;
/** Past this much unsent on a link (a gateway that stopped reading), the link is cut: its clients reconnect. */
const LINK_MAX_BACKPRESSURE = 64 << 20;
/**
 * A link silent this long (seconds, uWS's idle timeout with its automatic pings; gateways also ping
 * every LINK_PING_MS of link-client.ts) is cut: the sessions of a gateway that vanished end.
 */
const LINK_IDLE_SECONDS = 60;

interface LinkData {
  readonly link: Link<unknown>;
}

class Link<D> {
  ws: UwsSocket<LinkData> | undefined = undefined;
  readonly clients = new Map<number, LinkSocket<D>>();
  /** Clients subscribed per topic. */
  readonly topics = new Map<string, number>();
  /** Clients whose replay may wait for a drain (they read getBufferedAmount above 0). */
  readonly waiting = new Set<LinkSocket<D>>();
  readonly writer = new LinkWriter();
  closed = false;
  private scheduled = false;

  constructor(
    readonly endpoint: () => LinkEndpoint<D>,
    readonly peer: string,
  ) {}

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.writer.size === 0) return;
    const ws = this.ws;
    if (!ws || this.closed) {
      this.writer.view();
      return;
    }
    ws.send(this.writer.view(), true);
  };

  schedule(): void {
    if (this.writer.size >= FLUSH_BYTES) {
      this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(this.flush);
  }

  sub(s: LinkSocket<D>, topic: string): void {
    this.topics.set(topic, (this.topics.get(topic) ?? 0) + 1);
    this.writer.record(OP.sub, 0, s.cid, topic);
    this.schedule();
  }

  unsub(s: LinkSocket<D>, topic: string, tell: boolean): void {
    const n = (this.topics.get(topic) ?? 1) - 1;
    if (n > 0) this.topics.set(topic, n);
    else this.topics.delete(topic);
    if (!tell) return;
    this.writer.record(OP.unsub, 0, s.cid, topic);
    this.schedule();
  }

  /** The client is gone (either side): out of the link's tables. */
  release(s: LinkSocket<D>): void {
    s.closed = true;
    if (this.clients.get(s.cid) === s) {
      this.clients.delete(s.cid);
      linkClients.dec({ side: 'ws' });
    }
    this.waiting.delete(s);
    if (s.topics) for (const t of s.topics) this.unsub(s, t, false);
    s.topics = null;
  }

  /** Bytes uWS holds for the link (a slow gateway). */
  buffered(): number {
    return this.ws && !this.closed ? this.ws.getBufferedAmount() : 0;
  }
}

/** One client of a link, as the engine's websocket (TransportSocket). */
class LinkSocket<D> implements TransportSocket<D> {
  topics: Set<string> | null = null;
  closed = false;
  /** Frame bytes sent to the gateway for this client (mod 2^32). */
  sent = 0;
  /** What the gateway last reported: bytes written to the client's socket (mod 2^32), and held there. */
  delivered = 0;
  held = 0;
  /** The gateway owns this client's heartbeat (the engine marks its session F_EDGE). */
  readonly edge = true;

  constructor(
    readonly link: Link<D>,
    readonly cid: number,
    private readonly data: D,
  ) {}

  send(data: Frame, isBinary?: boolean): number {
    if (this.closed) return 0;
    this.sent = (this.sent + this.link.writer.record(OP.frame, isBinary ? FLAG_BINARY : 0, this.cid, data)) >>> 0;
    this.link.schedule();
    return 1;
  }

  cork(fn: () => void): this {
    fn();
    return this;
  }

  /** Closes the client at the gateway; the engine hears its close at once, as uWS's `end` does. */
  end(code: number = CLOSE_CODES.normal, reason = ''): void {
    if (this.closed) return;
    const link = this.link;
    link.release(this);
    link.writer.close(this.cid, code, reason);
    link.schedule();
    link.endpoint().close(this, code);
  }

  subscribe(topic: string): boolean {
    if (this.closed) return false;
    const topics = (this.topics ??= new Set());
    if (topics.has(topic)) return true;
    topics.add(topic);
    this.link.sub(this, topic);
    return true;
  }

  unsubscribe(topic: string): boolean {
    if (this.closed || !this.topics?.delete(topic)) return false;
    this.link.unsub(this, topic, true);
    return true;
  }

  /**
   * What the client has not read yet, as far as the node can tell: bytes on their way to the
   * gateway (sent, not yet reported delivered), what its socket there holds, and the link's own
   * backlog. Replays pace themselves on it (Socket.whenWritable), as on a direct websocket.
   */
  getBufferedAmount(): number {
    const n = ((this.sent - this.delivered) >>> 0) + this.held + this.link.buffered();
    if (n > 0) this.link.waiting.add(this);
    return n;
  }

  getUserData(): D {
    return this.data;
  }
}

export interface LinkServerOptions {
  readonly app: TemplatedApp;
  /** Peers allowed to open a link (server.trustedProxies). */
  readonly trusted: PeerTrust;
  readonly logger: Logger;
}

export interface LinkServer<D> {
  /** For SocketServerOptions.fanout: room frames once per link with subscribers. */
  readonly fanout: Fanout;
  /** Hands the link its sessions' transport (SocketServer.link), once the server exists. */
  attach(endpoint: LinkEndpoint<D>): void;
  /** Open links. */
  readonly links: () => number;
  /** Clients over all links. */
  readonly clients: () => number;
  /** Closes every link with 1001 (after the engine closed their sessions: their close records go first). */
  drain(): void;
}

/** Mounts LINK_PATH on `app` (call before the routes that catch everything). */
export function mountLinkServer<D>(opts: LinkServerOptions): LinkServer<D> {
  const links = new Set<Link<D>>();
  let endpoint: LinkEndpoint<D> | undefined;
  const ep = () => {
    if (!endpoint) throw new Error('link server used before attach()');
    return endpoint;
  };
  const log = opts.logger;

  const onRecord = (link: Link<D>, op: number, flags: number, cid: number, payload: Buffer) => {
    switch (op) {
      case OP.open:
      case OP.upgrade: {
        if (link.clients.has(cid)) {
          link.writer.record(OP.refuse, 0, cid, JSON.stringify({ status: 400, headers: {}, body: '{"code":3,"message":"Bad request"}' }));
          break;
        }
        let req: LinkHandshake;
        try {
          req = JSON.parse(payload.toString('utf8')) as LinkHandshake;
        } catch {
          link.writer.record(OP.refuse, 0, cid, JSON.stringify({ status: 400, headers: {}, body: '{"code":3,"message":"Bad request"}' }));
          break;
        }
        const started = ep().handshake({ query: String(req.query ?? ''), headers: req.headers ?? {}, ip: String(req.ip ?? '') });
        if ('refusal' in started) {
          link.writer.record(OP.refuse, 0, cid, JSON.stringify(started.refusal));
          break;
        }
        const s = new LinkSocket<D>(link, cid, started.data);
        link.clients.set(cid, s);
        linkClients.inc({ side: 'ws' });
        link.writer.record(OP.accept, 0, cid);
        ep().open(s);
        break;
      }
      case OP.frame: {
        const s = link.clients.get(cid);
        if (s) ep().message(s, payload, (flags & FLAG_BINARY) !== 0);
        return;
      }
      case OP.close: {
        const s = link.clients.get(cid);
        if (!s) return;
        link.release(s);
        const { code, reason } = readClose(payload);
        ep().close(s, code, reason);
        return;
      }
      case OP.buffered: {
        const s = link.clients.get(cid);
        if (!s || payload.length < 8) return;
        s.delivered = payload.readUInt32BE(0);
        s.held = payload.readUInt32BE(4);
        ep().drain(s);
        return;
      }
      default:
        log.warn({ op, peer: link.peer }, 'edge link: unknown record');
        return;
    }
    link.schedule();
  };

  opts.app.ws<LinkData>(LINK_PATH, {
    maxPayloadLength: 64 << 20,
    maxBackpressure: LINK_MAX_BACKPRESSURE,
    closeOnBackpressureLimit: 1,
    // Engine.IO heartbeats do not travel over the link (the gateway pings its clients): a gateway
    // that vanished without closing is found by the link's own websocket pings.
    idleTimeout: LINK_IDLE_SECONDS,
    sendPingsAutomatically: true,
    upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      const peer = peerAddress(res);
      if (!opts.trusted(peer)) {
        log.warn({ peer }, 'edge link refused: the peer is not in server.trustedProxies');
        writeJsonReply(
          res,
          { status: 403, close: true },
          { error: 'Edge links are accepted from trusted proxies only', code: 'forbidden' },
        );
        return;
      }
      const link = new Link<D>(ep, peer);
      res.upgrade<LinkData>(
        { link: link as Link<unknown> },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open(ws) {
      const link = ws.getUserData().link as Link<D>;
      link.ws = ws;
      links.add(link);
      linkConnections.inc({ side: 'ws' });
      log.info({ peer: link.peer }, 'edge link open');
    },
    message(ws, msg) {
      const link = ws.getUserData().link as Link<D>;
      try {
        // A view: valid during this call (every record is read or copied before it returns).
        readRecords(Buffer.from(msg), (op, flags, cid, payload) => onRecord(link, op, flags, cid, payload));
      } catch (err) {
        log.warn({ err: (err as Error).message, peer: link.peer }, 'edge link: malformed message; closing the link');
        ws.end(CLOSE_CODES.protocolError, 'malformed link message');
      }
    },
    drain(ws) {
      const link = ws.getUserData().link as Link<D>;
      if (link.waiting.size === 0) return;
      const waiting = [...link.waiting];
      link.waiting.clear();
      for (const s of waiting) if (!s.closed) ep().drain(s);
    },
    close(ws, code) {
      const link = ws.getUserData().link as Link<D>;
      link.closed = true;
      link.ws = undefined;
      if (links.delete(link)) linkConnections.dec({ side: 'ws' });
      const clients = [...link.clients.values()];
      log.info({ peer: link.peer, code, clients: clients.length }, 'edge link closed: ending its sessions');
      for (const s of clients) {
        link.release(s);
        // As a dropped connection: the sessions end with "transport error".
        ep().close(s, 1006);
      }
    },
  });

  return {
    fanout: {
      publish(topic, frame, isBinary) {
        for (const link of links) {
          if (!link.topics.has(topic)) continue;
          link.writer.pub(topic, frame, isBinary);
          pubFrames.sent++;
          link.schedule();
        }
      },
      subscribers(topic) {
        let n = 0;
        for (const link of links) n += link.topics.get(topic) ?? 0;
        return n;
      },
    },
    attach(e) {
      endpoint = e;
    },
    links: () => links.size,
    clients: () => {
      let n = 0;
      for (const link of links) n += link.clients.size;
      return n;
    },
    drain() {
      for (const link of [...links]) {
        link.flush();
        link.ws?.end(DISCONNECT.draining.code, DISCONNECT.draining.reason);
      }
    },
  };
}
