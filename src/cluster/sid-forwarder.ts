// For ws nodes behind a plain L4 load balancer (no gateway, no stickiness): a long-polling request
// or a websocket upgrade can land on a node that does not own its Engine.IO session. The sid names
// its owner (`<nodeId>.<random>`), so this node forwards the request there — a polling request over
// HTTP with its answer relayed, an upgrade piped frame for frame as the gateway pipes it
// (ws-pipe.ts) — and the client never notices: no client stays on polling because its upgrade probe
// reached the wrong node. Node addresses come from the engine's node registry (Store.nodes), where
// each node using a forwarder advertises itself.
//
// Use (src/protocol through SocketServerOptions.forward), before anything else touches `res`/`req`:
//
//   const forwarder = createSidForwarder({ config, nodeId, logger, roles, port: ctx.port, registry });
//   forwarder.start();                     // advertise this node (call after the role is set up)
//   new SocketServer({ …, forward: forwarder });
//   forwarder.drain();                     // on SIGTERM: refuse new pipes, close the open ones
//   await forwarder.close();               // on close: withdraw and close connections
//
// A forwarded request carries `X-Chatd-Forwarded: <nodeId>` and is never forwarded twice. The
// owner resolves the client IP from X-Forwarded-For only if this node's address is in its
// `server.trustedProxies`. The query is checked for credentials before anything is forwarded
// (the protocol layer's checkQuery runs first); Origin goes to the owner with the other headers,
// which checks it as if the client had come directly.
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { Config, Role } from '../config/schema.js';
import { ChatdError, DISCONNECT, toChatdError } from '../errors.js';
import { readBody } from '../http/router.js';
import type { NodeRegistry } from '../store/ports.js';
import { promClient, registry as metricsRegistry } from '../observability/metrics.js';
import { EIO_ERR } from '../protocol/eio-errors.js';
import { loadUws, type HttpRequest, type HttpResponse, type WebSocket as UwsSocket } from '../uws.js';
import type { us_socket_context_t } from 'uWebSockets.js';
import { forward, peerTrust, readIncoming, UpstreamFailure, upstreamHeaders, writeAnswer, type IncomingRequest } from './http-proxy.js';
import { writeError, writeJson, writeRefusal, writeUnknownSid, type CorsHeaders } from './respond.js';
import { ownerOfSid } from './sid.js';
import { createUpgradeCork } from './upgrade-cork.js';
import { UpstreamGroup, type Upstream } from './upstreams.js';
import { acceptClient, connectUpstream, pipeHandlers, UpstreamRefusal, type PipeSocketData } from './ws-pipe.js';

const forwardedWebsockets = new promClient.Gauge({
  name: 'chatd_forwarded_websockets',
  help: 'Client websockets this node pipes to the node that owns their Engine.IO session.',
  registers: [metricsRegistry],
});

export const FORWARDED_HEADER = 'x-chatd-forwarded';

export interface SidForwarderOptions {
  readonly config: Config;
  readonly nodeId: string;
  readonly logger: Logger;
  /** The roles of this process: with the gateway the ws role is on the public listener. */
  readonly roles: readonly Role[];
  /** The port this node listens on (known after listen). */
  readonly port: () => number;
  /** The engine's node registry (Store.nodes), resolved on first use: the store opens lazily. */
  readonly registry: () => Promise<NodeRegistry>;
  /** CORS headers for the forwarder's own refusals (default: none). */
  readonly cors?: CorsHeaders;
}

/** The uWS handlers of the websockets a forwarder pipes (their user data is PipeSocketData). */
export interface ForwardedSockets {
  open(ws: UwsSocket<PipeSocketData>): void;
  message(ws: UwsSocket<PipeSocketData>, message: ArrayBuffer, isBinary: boolean): void;
  drain(ws: UwsSocket<PipeSocketData>): void;
  close(ws: UwsSocket<PipeSocketData>, code: number): void;
}

export interface SidForwarder {
  /** The URL this node advertises (undefined until its port is known). */
  readonly url: () => string | undefined;
  /**
   * Takes over a polling request whose sid names another node: answers it (with the owner's
   * answer, or Engine.IO's "Session ID unknown" when the owner is unknown) and returns true.
   * Returns false — touching nothing — when the request is this node's to handle.
   */
  request(res: HttpResponse, req: HttpRequest): boolean;
  /**
   * Takes over a websocket upgrade whose sid names another node: pipes it to the owner (or answers
   * the owner's refusal, or "Session ID unknown" when no live node owns it) and returns true.
   * Returns false — touching nothing — when the upgrade is this node's to handle.
   */
  upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): boolean;
  /** The handlers of the websockets `upgrade` accepted, for the route's `app.ws` behavior. */
  readonly sockets: ForwardedSockets;
  /** Websockets piped to their owner now. */
  readonly piped: () => number;
  /** Advertises this node now and every third of the advertisement's life. */
  start(): void;
  /** Refuses new pipes (503) and closes the open ones with 1001: their clients reconnect elsewhere. */
  drain(): void;
  /** Withdraws this node, closes its pipes and the connections to its peers. */
  close(): Promise<void>;
}

/** The address other nodes reach this one at: `roles.ws.advertiseUrl`, else derived from the listener. */
export function advertiseUrl(config: Config, roles: readonly Role[], port: number): string {
  if (config.roles.ws.advertiseUrl) return config.roles.ws.advertiseUrl.replace(/\/+$/, '');
  // With the gateway in process the ws role is on the gateway's public listener (config/listeners.ts).
  const shared = roles.includes('gateway') && roles.includes('ws');
  const host = shared ? config.server.host : config.roles.ws.host;
  return `http://${reachableHost(host)}:${port}`;
}

function reachableHost(host: string): string {
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return host.includes(':') ? `[${host}]` : host;
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export function createSidForwarder(opts: SidForwarderOptions): SidForwarder {
  const { config, nodeId, logger } = opts;
  const peers = new UpstreamGroup({ name: 'ws', urls: [], healthCheckIntervalMs: 0, logger });
  const cors: CorsHeaders = opts.cors ?? (() => ({}));
  const trusted = peerTrust(config.server.trustedProxies);
  const ttlMs = Math.max(3 * config.presence.heartbeatMs, 15_000);
  const pollTimeoutMs = config.socketio.pingIntervalMs + config.socketio.pingTimeoutMs + 5_000;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let draining = false;
  let warned = false;
  // Upgrades complete after an await: inside the cork of a held request (upgrade-cork.ts), taken
  // at start() so that it is in place before the first forwarded upgrade.
  let cork: ReturnType<typeof createUpgradeCork> | undefined;
  const open = new Set<UwsSocket<PipeSocketData>>();
  const pipe = pipeHandlers({
    logger,
    highWaterBytes: Math.min(256 * 1024, config.limits.sendBufferBytes),
    maxClientBufferBytes: config.limits.sendBufferBytes,
    maxUpstreamBufferBytes: config.limits.sendBufferBytes,
  });

  const url = () => (opts.port() > 0 ? advertiseUrl(config, opts.roles, opts.port()) : undefined);
  const advertise = async () => {
    const u = url();
    if (!u || closed) return;
    try {
      await (await opts.registry()).advertise(nodeId, u, ttlMs);
      warned = false;
    } catch (err) {
      if (!warned) logger.warn({ err: (err as Error).message }, 'cannot advertise this node in the node registry; retrying');
      warned = true;
    }
  };

  /** The owner's advertised URL, or undefined when no live node is known under that id (or it is this one). */
  const ownerUrl = async (owner: string): Promise<string | undefined> => {
    const target = await opts
      .registry()
      .then((r) => r.lookup(owner))
      .catch((err: unknown) => {
        logger.warn({ err: (err as Error).message }, 'node registry lookup failed');
        return undefined;
      });
    return target && target !== url() ? target : undefined;
  };

  const pipeUpgrade = (res: HttpResponse, inc: IncomingRequest, owner: string, context: us_socket_context_t) => {
    const state = { done: false };
    const abort = new AbortController();
    res.onAborted(() => {
      state.done = true;
      abort.abort();
    });
    const key = inc.headers['sec-websocket-key'] ?? '';
    const extensions = inc.headers['sec-websocket-extensions'] ?? '';
    const protocols = (inc.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    const run = async () => {
      if (draining) {
        writeJson(res, state, 503, EIO_ERR.draining, inc, cors);
        return;
      }
      // Forwarded once already and still not the owner: the session is gone.
      const target = inc.headers[FORWARDED_HEADER] ? undefined : await ownerUrl(owner);
      if (!target) {
        writeUnknownSid(res, state, inc, cors);
        return;
      }
      const u = peers.ensure(target);
      const to = `${u.origin.replace(/^http/, 'ws')}${u.basePath}${inc.path}${inc.query ? `?${inc.query}` : ''}`;
      let upstream;
      try {
        upstream = await connectUpstream(to, upstreamHeaders(inc, { [FORWARDED_HEADER]: nodeId }), protocols, {
          timeoutMs: config.upstreams.requestTimeoutMs,
          signal: abort.signal,
        });
      } catch (err) {
        if (err instanceof UpstreamRefusal) {
          // The owner's own answer (400 unknown sid, 403…), relayed as it was.
          writeRefusal(res, state, err, inc, cors);
          return;
        }
        const f = err as UpstreamFailure;
        if (f.kind === 'aborted') return;
        // Nothing listens where the owner was advertised: no live node owns the session.
        if (f.kind === 'connect') {
          writeUnknownSid(res, state, inc, cors);
          return;
        }
        throw new ChatdError('upstream_unavailable', undefined, { cause: f });
      }
      if (state.done || draining) {
        upstream.terminate();
        writeJson(res, state, 503, EIO_ERR.draining, inc, cors);
        return;
      }
      state.done = true;
      cork ??= createUpgradeCork(loadUws(), logger);
      acceptClient(res, { key, extensions, context }, upstream, cork.run);
    };
    run().catch((err: unknown) => {
      const e = toChatdError(err);
      if (e.code === 'internal') logger.error({ err }, 'forwarding a websocket upgrade failed');
      writeError(res, state, e, inc, cors);
    });
  };

  const relay = (res: HttpResponse, inc: IncomingRequest, owner: string) => {
    const state = { done: false };
    const abort = new AbortController();
    res.onAborted(() => {
      state.done = true;
      abort.abort();
    });
    const fail = (err: unknown) => {
      if (err instanceof UpstreamFailure && err.kind === 'aborted') return;
      // Nothing listens where the owner was advertised (it died before its entry expired): no live
      // node owns the session, and the client should start over rather than retry a dead node.
      if (err instanceof ChatdError && err.cause instanceof UpstreamFailure && err.cause.kind === 'connect') {
        writeUnknownSid(res, state, inc, cors);
        return;
      }
      const e = toChatdError(err);
      if (e.code === 'internal') logger.error({ err }, 'sid forwarding failed');
      writeError(res, state, e, inc, cors);
    };
    const run = async (body: Buffer | undefined) => {
      if (inc.headers[FORWARDED_HEADER]) {
        // Forwarded once already and still not the owner: the session is gone.
        writeUnknownSid(res, state, inc, cors);
        return;
      }
      const target = await ownerUrl(owner);
      if (!target) {
        writeUnknownSid(res, state, inc, cors);
        return;
      }
      const u: Upstream = peers.ensure(target);
      const { answer } = await forward(peers, (tried) => (tried.has(u) ? undefined : u), inc, body, {
        timeoutMs: inc.method === 'GET' ? pollTimeoutMs : config.upstreams.requestTimeoutMs,
        idempotent: false,
        maxAttempts: 1,
        signal: abort.signal,
        extraHeaders: { [FORWARDED_HEADER]: nodeId },
      });
      // A peer marked down is retried on the next request: its sessions live nowhere else.
      u.healthy = true;
      if (state.done) return;
      state.done = true;
      writeAnswer(res, answer, inc);
    };
    if (inc.method !== 'POST') {
      run(undefined).catch(fail);
      return;
    }
    const limit = config.limits.maxPayloadBytes;
    readBody(
      res,
      limit,
      (body) => void run(body).catch(fail),
      () => fail(new ChatdError('payload_too_large', `Request body exceeds ${limit} bytes`)),
    );
  };

  /** The node a request's sid names when it is another node than this one. */
  const otherOwner = (req: HttpRequest): string | undefined => {
    const query = req.getQuery() ?? '';
    if (!query.includes('sid=')) return undefined;
    const owner = ownerOfSid(new URLSearchParams(query).get('sid'));
    return owner && owner !== nodeId ? owner : undefined;
  };

  return {
    url,
    request(res, req) {
      const owner = otherOwner(req);
      if (!owner) return false;
      relay(res, readIncoming(res, req, trusted), owner);
      return true;
    },
    upgrade(res, req, context) {
      const owner = otherOwner(req);
      if (!owner) return false;
      pipeUpgrade(res, readIncoming(res, req, trusted), owner, context);
      return true;
    },
    sockets: {
      open(ws) {
        open.add(ws);
        forwardedWebsockets.inc();
        pipe.open(ws);
      },
      message: pipe.message,
      drain: pipe.drain,
      close(ws, code) {
        if (open.delete(ws)) forwardedWebsockets.dec();
        pipe.close(ws, code);
      },
    },
    piped: () => open.size,
    start() {
      if (timer || closed) return;
      cork ??= createUpgradeCork(loadUws(), logger);
      void advertise();
      // Often enough that a node is findable within moments of listening (start() may run before
      // the port is known) and long before its advertisement expires; one SET per tick.
      timer = setInterval(() => void advertise(), Math.min(2000, ttlMs / 3));
      timer.unref();
    },
    drain() {
      draining = true;
      for (const ws of [...open]) ws.end(DISCONNECT.draining.code, DISCONNECT.draining.reason);
    },
    async close() {
      closed = true;
      draining = true;
      for (const ws of [...open]) ws.end(DISCONNECT.draining.code, DISCONNECT.draining.reason);
      cork?.close();
      if (timer) clearInterval(timer);
      timer = undefined;
      await opts
        .registry()
        .then((r) => r.withdraw(nodeId))
        .catch(() => undefined);
      await peers.close();
    },
  };
}
