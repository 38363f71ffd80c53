// The gateway's Socket.IO door to the ws nodes. A request without a sid starts a session: it is
// limited per client IP (connectPerIp) and goes round robin to a healthy ws node. Every request
// that carries a sid — long-poll GET and POST, and the websocket upgrade — goes to the node the
// sid names (`<nodeId>.<random>`), found from the health probes, from handshakes routed here, or
// from the node registry (for sessions another gateway started). Websocket frames are piped
// without parsing (ws-pipe.ts).
import type { Logger } from 'pino';
import type WebSocket from 'ws';
import { ChatdError, DISCONNECT } from '../../errors.js';
import type { ClientIpResolver } from '../../http/client-ip.js';
import { httpRequests, promClient, registry } from '../../observability/metrics.js';
import { loadUws, type HttpRequest, type HttpResponse, type TemplatedApp, type WebSocket as UwsSocket } from '../../uws.js';
import type { us_socket_context_t } from 'uWebSockets.js';
import { checkQueryCredentials, redactQuery } from '../../auth/bearer.js';
import {
  forward,
  readIncoming,
  upstreamHeaders,
  type UpstreamFailure,
  writeAnswer,
  type IncomingRequest,
  type PeerTrust,
} from '../../cluster/http-proxy.js';
import type { GatewayLimits } from './rate-limits.js';
import { writeRefusal, writeUnknownSid, type CorsHeaders } from '../../cluster/respond.js';
import { refuse, watchRequest, withBody } from './proxied-request.js';
import { ownerOfSid, sidOfOpenPacket } from '../../cluster/sid.js';
import type { Upstream, UpstreamGroup } from '../../cluster/upstreams.js';
import type { NodeRegistry } from '../../store/ports.js';
import { createUpgradeCork, type UpgradeCork } from '../../cluster/upgrade-cork.js';
import { acceptClient, connectUpstream, pipeHandlers, UpstreamRefusal, type PipeSocketData } from '../../cluster/ws-pipe.js';

const pipedWebsockets = new promClient.Gauge({
  name: 'chatd_gateway_websockets',
  help: 'Client websockets the gateway pipes to ws nodes.',
  registers: [registry],
});

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
  readonly isDraining: () => boolean;
}

export interface SocketioRoutes {
  /** Open piped websockets. */
  readonly open: () => number;
  /** Closes every piped websocket with 1001 (going away): clients reconnect through another gateway. */
  closeAll(): void;
  /** Releases what the routes hold besides client sockets (the upgrade cork's loopback listener). */
  close(): void;
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
  const sockets = new Set<UwsSocket<PipeSocketData>>();
  const pattern = `${deps.path}*`;
  const cork = createUpgradeCork(loadUws(), deps.logger);
  const pipe = pipeHandlers({
    logger: deps.logger,
    highWaterBytes: Math.min(256 * 1024, deps.sendBufferBytes),
    maxClientBufferBytes: deps.sendBufferBytes,
    maxUpstreamBufferBytes: deps.sendBufferBytes,
  });

  deps.app.ws<PipeSocketData>(pattern, {
    maxPayloadLength: deps.maxPayloadBytes,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    maxBackpressure: pipe.maxBackpressure,
    closeOnBackpressureLimit: pipe.closeOnBackpressureLimit,
    upgrade: (res, req, context) => upgrade(deps, cork, res, req, context),
    open(ws) {
      sockets.add(ws);
      pipedWebsockets.inc();
      pipe.open(ws);
    },
    message: pipe.message,
    drain: pipe.drain,
    close(ws, code) {
      if (sockets.delete(ws)) pipedWebsockets.dec();
      pipe.close(ws, code);
    },
  });
  deps.app.any(pattern, (res, req) => polling(deps, res, readIncoming(res, req, deps.trusted)));

  return {
    open: () => sockets.size,
    closeAll() {
      for (const ws of [...sockets]) ws.end(DISCONNECT.gatewayDraining.code, DISCONNECT.gatewayDraining.reason);
    },
    close() {
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

function upgrade(deps: SocketioRouteDeps, cork: UpgradeCork, res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
  const inc = readIncoming(res, req, deps.trusted);
  const key = inc.headers['sec-websocket-key'] ?? '';
  const extensions = inc.headers['sec-websocket-extensions'] ?? '';
  const protocols = (inc.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  const { state, signal, ip, query, sid } = startRequest(deps, res, inc);

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
      const url = `${u.origin.replace(/^http/, 'ws')}${u.basePath}${inc.path}${inc.query ? `?${inc.query}` : ''}`;
      let upstream: WebSocket;
      try {
        upstream = await connectUpstream(url, upstreamHeaders(inc), protocols, { timeoutMs: deps.timeoutMs, signal });
      } catch (err) {
        if (err instanceof UpstreamRefusal) {
          writeRefusal(res, state, err, inc, deps.cors);
          return;
        }
        const f = err as UpstreamFailure;
        if (f.kind === 'aborted') return;
        deps.ws.markDown(u, f.message);
        if (!sid && f.kind === 'connect' && tried.size < 3) continue;
        throw new ChatdError('upstream_unavailable', undefined, { cause: f });
      }
      if (state.done) {
        upstream.terminate();
        return;
      }
      state.done = true;
      const learn = sid
        ? undefined
        : (text: string) => {
            const node = ownerOfSid(sidOfOpenPacket(text));
            if (node) deps.ws.learn(node, u);
          };
      acceptClient(res, { key, extensions, context }, upstream, cork.run, learn);
      return;
    }
  };
  run().catch((err: unknown) => {
    refuse(res, state, inc, deps.cors, err, (e) =>
      deps.logger.error({ err: e, query: redactQuery(inc.query) }, 'gateway websocket upgrade error'),
    );
  });
}
