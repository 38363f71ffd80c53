// The gateway's Socket.IO door to the ws nodes. A request without a sid starts a session: it is
// limited per client IP (connectPerIp) and goes round robin to a healthy ws node. Every request
// that carries a sid — long-poll GET and POST, and the websocket upgrade — goes to the node the
// sid names (`<nodeId>.<random>`), found from the health probes, from handshakes routed here, or
// from the node registry (for sessions another gateway started). Polling requests are forwarded
// over HTTP; websockets go over the edge link to their node (cluster/link-client.ts): the gateway
// holds one socket per client and its heartbeat (heartbeat.ts), the node runs its Engine.IO and
// Socket.IO session, and room frames arrive once per link and are published natively to the
// clients here.
import type { Logger } from 'pino';
import { ChatdError, DISCONNECT } from '../../errors.js';
import type { ClientIpResolver } from '../../http/client-ip.js';
import { httpRequests, promClient, registry } from '../../observability/metrics.js';
import { loadUws, type HttpRequest, type HttpResponse, type TemplatedApp, type WebSocket as UwsSocket } from '../../uws.js';
import type { us_socket_context_t } from 'uWebSockets.js';
import { checkQueryCredentials, redactQuery } from '../../auth/bearer.js';
import {
  forward,
  readIncoming,
  type UpstreamFailure,
  writeAnswer,
  type IncomingRequest,
  type PeerTrust,
} from '../../cluster/http-proxy.js';
import type { GatewayLimits } from './rate-limits.js';
import { writeJson, writeUnknownSid, type CorsHeaders } from '../../cluster/respond.js';
import { refuse, watchRequest, withBody } from './proxied-request.js';
import { ownerOfSid, sidOfOpenPacket } from '../../cluster/sid.js';
import type { Upstream, UpstreamGroup } from '../../cluster/upstreams.js';
import type { NodeRegistry } from '../../store/ports.js';
import { createUpgradeCork, type UpgradeCork } from '../../cluster/upgrade-cork.js';
import { EdgeLink, type EdgeClient, type EdgeSocketData } from '../../cluster/link-client.js';
import type { HandshakeRefusal } from '../../protocol/link.js';
import { GatewayHeartbeat } from './heartbeat.js';

const clientWebsockets = new promClient.Gauge({
  name: 'chatd_gateway_websockets',
  help: 'Client websockets the gateway holds for ws nodes (carried over edge links).',
  registers: [registry],
});

/** The client headers a ws node reads from a handshake (CONNECT's origin check, a Bearer key, logs). */
const LINK_HEADERS = ['origin', 'authorization', 'user-agent', 'referer'] as const;

export interface SocketioRouteDeps {
  readonly app: TemplatedApp;
  readonly ws: UpstreamGroup;
  /** The engine's node registry, resolved on first use. */
  readonly registry: () => Promise<NodeRegistry>;
  readonly limits: GatewayLimits;
  readonly clientIp: ClientIpResolver;
  readonly trusted: PeerTrust;
  readonly cors: CorsHeaders;
  readonly logger: Logger;
  /** The Socket.IO path, with its trailing slash (config.socketio.path). */
  readonly path: string;
  readonly maxPayloadBytes: number;
  readonly sendBufferBytes: number;
  /** Timeout of a request that is not a held long-poll GET. */
  readonly timeoutMs: number;
  /** Timeout of a long-poll GET (held up to pingInterval by the ws node). */
  readonly pollTimeoutMs: number;
  /** config.socketio's heartbeat, as the ws nodes advertise it: the gateway pings its link clients. */
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly isDraining: () => boolean;
}

export interface SocketioRoutes {
  /** Open client websockets. */
  readonly open: () => number;
  /** Closes every client websocket with 1001 (going away): clients reconnect through another gateway. */
  closeAll(): void;
  /** Releases what the routes hold besides client sockets (edge links, the upgrade cork's loopback listener). */
  close(): void;
}

/** The gateway's edge links, one per ws node, opened on first use and replaced when lost. */
class EdgeLinks {
  private readonly links = new Map<Upstream, EdgeLink>();
  private tags = 0;
  private closed = false;

  constructor(private readonly deps: SocketioRouteDeps) {}

  /** The open link to `u` (connecting it first when there is none). */
  async to(u: Upstream): Promise<EdgeLink> {
    let link = this.links.get(u);
    if (!link) {
      if (this.closed) throw new ChatdError('draining');
      link = new EdgeLink({
        upstream: u,
        app: this.deps.app,
        logger: this.deps.logger,
        tag: `${(this.tags++).toString(36)}|`,
        connectTimeoutMs: this.deps.timeoutMs,
        maxBufferedBytes: 64 << 20,
        onClose: (l) => {
          if (this.links.get(u) !== l) return;
          this.links.delete(u);
          // Until a probe says otherwise: new clients go to the other nodes.
          if (!this.closed) this.deps.ws.markDown(u, 'edge link lost');
        },
      });
      this.links.set(u, link);
    }
    await link.opened;
    return link;
  }

  close(): void {
    this.closed = true;
    for (const link of [...this.links.values()]) link.close();
    this.links.clear();
  }
}

/** Resolves the upstream owning a sid's node, or undefined when no one knows the node. */
async function ownerUpstream(deps: SocketioRouteDeps, sid: string): Promise<Upstream | undefined> {
  const node = ownerOfSid(sid);
  if (!node) return undefined;
  const known = deps.ws.forNode(node);
  if (known) return known;
  const url = await deps
    .registry()
    .then((r) => r.lookup(node))
    .catch((err: unknown) => {
      deps.logger.warn({ err: (err as Error).message }, 'node registry lookup failed');
      return undefined;
    });
  if (!url) return undefined;
  const u = deps.ws.ensure(url);
  deps.ws.learn(node, u);
  return u;
}

export function mountSocketioRoutes(deps: SocketioRouteDeps): SocketioRoutes {
  const sockets = new Set<UwsSocket<EdgeSocketData>>();
  const pattern = `${deps.path}*`;
  const cork = createUpgradeCork(loadUws(), deps.logger);
  const links = new EdgeLinks(deps);
  const heartbeat = new GatewayHeartbeat({
    app: deps.app,
    sockets,
    pingIntervalMs: deps.pingIntervalMs,
    pingTimeoutMs: deps.pingTimeoutMs,
  });

  deps.app.ws<EdgeSocketData>(pattern, {
    maxPayloadLength: deps.maxPayloadBytes,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    // The slow-consumer cut is here now, as on a ws node: past the send buffer uWS closes the
    // client (the default would silently skip it on publish), and its node ends the session.
    maxBackpressure: deps.sendBufferBytes,
    closeOnBackpressureLimit: 1,
    upgrade: (res, req, context) => upgrade(deps, links, cork, res, req, context),
    open(ws) {
      sockets.add(ws);
      clientWebsockets.inc();
      const c = ws.getUserData().c;
      c.link.attachSocket(c, ws);
      // A new websocket session is pinged from its open, an upgrade probe from its `5`.
      if (!c.probe && !c.closed) heartbeat.start(c, ws, false);
    },
    message(ws, message, isBinary) {
      const c = ws.getUserData().c;
      if (!isBinary && message.byteLength === 1) {
        const type = new Uint8Array(message)[0];
        // A pong to the gateway's ping: the heartbeat is the gateway's, the node never sees it.
        if (type === 0x33 /* 3 */ && c.beat) return heartbeat.pong(c);
        if (type === 0x35 /* 5 */ && c.probe && !c.beat) {
          // The upgrade completes (the node hears the `5` first): from now on the gateway pings it.
          c.link.frame(c, Buffer.from(message), false);
          if (!c.closed) heartbeat.start(c, ws, true);
          return;
        }
      }
      // A view of uWS's buffer: the link copies it into its batch at once.
      c.link.frame(c, Buffer.from(message), isBinary);
    },
    drain(ws) {
      const c = ws.getUserData().c;
      c.link.drained(c);
    },
    close(ws, code) {
      if (sockets.delete(ws)) clientWebsockets.dec();
      const c = ws.getUserData().c;
      c.link.clientClosed(c, code);
    },
  });
  deps.app.any(pattern, (res, req) => polling(deps, res, readIncoming(res, req, deps.trusted)));

  return {
    open: () => sockets.size,
    closeAll() {
      for (const ws of [...sockets]) ws.end(DISCONNECT.gatewayDraining.code, DISCONNECT.gatewayDraining.reason);
    },
    close() {
      heartbeat.close();
      links.close();
      cork.close();
    },
  };
}

/** What polling and upgrade read first: the client-gone watch, the client IP, the query and its sid. */
function startRequest(deps: SocketioRouteDeps, res: HttpResponse, inc: IncomingRequest) {
  const { state, signal } = watchRequest(res);
  const ip = deps.clientIp(res, inc.headers);
  const query = new URLSearchParams(inc.query);
  return { state, signal, ip, query, sid: query.get('sid') };
}

function polling(deps: SocketioRouteDeps, res: HttpResponse, inc: IncomingRequest): void {
  const { state, signal, ip, query, sid } = startRequest(deps, res, inc);
  const fail = (err: unknown) => {
    const status = refuse(res, state, inc, deps.cors, err, (e) =>
      deps.logger.error({ err: e, path: inc.path, query: redactQuery(inc.query) }, 'gateway error'),
    );
    if (status !== undefined) httpRequests.inc({ role: 'gateway', route: 'socket.io', status: String(status) });
  };

  const run = async (body: Buffer | undefined) => {
    if (deps.isDraining()) throw new ChatdError('draining');
    if (inc.method !== 'OPTIONS') checkQueryCredentials(query, { allowSid: true });
    let pick: (tried: ReadonlySet<Upstream>) => Upstream | undefined;
    if (sid) {
      const owner = await ownerUpstream(deps, sid);
      if (!owner) {
        writeUnknownSid(res, state, inc, deps.cors);
        return;
      }
      // The session lives on that node only: no other node can answer for it.
      pick = (tried) => (tried.has(owner) ? undefined : owner);
    } else {
      if (inc.method !== 'OPTIONS') await deps.limits.connect(ip);
      pick = (tried) => deps.ws.pick(tried);
    }
    const held = Boolean(sid) && inc.method === 'GET';
    const { answer, upstream } = await forward(deps.ws, pick, inc, body, {
      timeoutMs: held ? deps.pollTimeoutMs : deps.timeoutMs,
      // A handshake that failed to connect is safe to send elsewhere; nothing else is retried.
      idempotent: false,
      maxAttempts: sid ? 1 : 3,
      signal,
    });
    if (!sid && answer.status === 200) {
      const text = answer.body.subarray(0, 512).toString('utf8').split('\x1e')[0]!;
      const node = ownerOfSid(sidOfOpenPacket(text));
      if (node) deps.ws.learn(node, upstream);
    }
    if (state.done) return;
    state.done = true;
    writeAnswer(res, answer, inc);
    httpRequests.inc({ role: 'gateway', route: 'socket.io', status: String(answer.status) });
  };

  withBody(res, inc, inc.method === 'POST', deps.maxPayloadBytes, run, fail);
}

function upgrade(
  deps: SocketioRouteDeps,
  links: EdgeLinks,
  cork: UpgradeCork,
  res: HttpResponse,
  req: HttpRequest,
  context: us_socket_context_t,
): void {
  const inc = readIncoming(res, req, deps.trusted);
  const key = inc.headers['sec-websocket-key'] ?? '';
  const extensions = inc.headers['sec-websocket-extensions'] ?? '';
  const protocol = inc.headers['sec-websocket-protocol'] ?? '';
  const { state, ip, query, sid } = startRequest(deps, res, inc);
  const headers: Record<string, string> = {};
  for (const h of LINK_HEADERS) if (inc.headers[h]) headers[h] = inc.headers[h];

  const run = async () => {
    if (deps.isDraining()) throw new ChatdError('draining');
    checkQueryCredentials(query, { allowSid: true });
    let candidates: (tried: ReadonlySet<Upstream>) => Upstream | undefined;
    if (sid) {
      // The session lives on its owner only.
      const owner = await ownerUpstream(deps, sid);
      candidates = (tried) => (owner && !tried.has(owner) ? owner : undefined);
    } else {
      await deps.limits.connect(ip);
      candidates = (tried) => deps.ws.pick(tried);
    }
    const tried = new Set<Upstream>();
    for (;;) {
      const u = candidates(tried);
      if (!u) {
        if (sid && tried.size === 0) {
          writeUnknownSid(res, state, inc, deps.cors);
          return;
        }
        throw new ChatdError('upstream_unavailable');
      }
      tried.add(u);
      if (state.done) return;
      let client: EdgeClient | undefined;
      let answer;
      try {
        const link = await links.to(u);
        if (state.done) return;
        client = link.add();
        client.probe = Boolean(sid);
        answer = await link.handshake(client, sid ? 'upgrade' : 'open', { query: inc.query, headers, ip });
      } catch (err) {
        if (client) client.link.forget(client);
        const f = err as UpstreamFailure;
        if (f.kind === 'aborted') return;
        deps.ws.markDown(u, f.message);
        if (!sid && tried.size < 3) continue;
        // A sid whose node is unreachable: the session is gone; the client starts over.
        if (sid) {
          writeUnknownSid(res, state, inc, deps.cors);
          return;
        }
        throw new ChatdError('upstream_unavailable', undefined, { cause: f });
      }
      if ('refusal' in answer) {
        // A draining node refuses new sessions: another node may take it.
        if (!sid && answer.refusal.status === 503 && tried.size < 3) continue;
        writeHandshakeRefusal(res, state, answer.refusal, inc, deps.cors);
        return;
      }
      if (state.done) {
        // The client left while the node accepted it: the node ends the session.
        client.link.clientClosed(client, 1006);
        return;
      }
      state.done = true;
      if (!sid) learnNode(deps, u, client);
      const c = client;
      cork.run(res, () => {
        res.upgrade<EdgeSocketData>({ c }, key, protocol, extensions, context);
      });
      return;
    }
  };
  run().catch((err: unknown) => {
    refuse(res, state, inc, deps.cors, err, (e) =>
      deps.logger.error({ err: e, query: redactQuery(inc.query) }, 'gateway websocket upgrade error'),
    );
  });
}

/** Upstreams whose advertised heartbeat was compared with the gateway's. */
const beatChecked = new WeakSet<Upstream>();

/**
 * Learns the node from the open packet the node sent first (its sid names the node); the first time
 * per node, warns when the heartbeat it advertises is not the one the gateway runs (its clients
 * would time out, or be cut, on the wrong clock).
 */
function learnNode(deps: SocketioRouteDeps, u: Upstream, c: EdgeClient): void {
  const first = c.early?.[0];
  if (!first || !('f' in first) || first.b) return;
  const text = first.f.toString('utf8');
  const node = ownerOfSid(sidOfOpenPacket(text));
  if (node) deps.ws.learn(node, u);
  if (beatChecked.has(u)) return;
  beatChecked.add(u);
  try {
    const open = JSON.parse(text.slice(1)) as { pingInterval?: unknown; pingTimeout?: unknown };
    if (open.pingInterval !== deps.pingIntervalMs || open.pingTimeout !== deps.pingTimeoutMs)
      deps.logger.warn(
        {
          upstream: u.url,
          node: { pingIntervalMs: open.pingInterval, pingTimeoutMs: open.pingTimeout },
          gateway: { pingIntervalMs: deps.pingIntervalMs, pingTimeoutMs: deps.pingTimeoutMs },
        },
        'the ws node advertises another heartbeat than the gateway runs for its clients: set the same socketio.pingIntervalMs and pingTimeoutMs on both',
      );
  } catch {
    // Not an open packet: nothing to compare.
  }
}

/** The node's refusal of a handshake, as it would have answered a direct client (status, JSON, Retry-After). */
function writeHandshakeRefusal(
  res: HttpResponse,
  state: { done: boolean },
  r: HandshakeRefusal,
  inc: IncomingRequest,
  cors: CorsHeaders,
): void {
  let body: unknown;
  try {
    body = JSON.parse(r.body || 'null');
  } catch {
    body = r.body;
  }
  const retryAfter = r.headers['Retry-After'] ?? r.headers['retry-after'];
  writeJson(res, state, r.status, body, inc, cors, retryAfter ? { 'Retry-After': retryAfter } : undefined);
}
