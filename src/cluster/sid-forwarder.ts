// For ws nodes behind a plain L4 load balancer (no gateway, no stickiness): a long-polling request
// can land on a node that does not own its Engine.IO session. The sid names its owner
// (`<nodeId>.<random>`), so this node forwards the request there over HTTP and relays the answer;
// the client never notices. Node addresses come from the engine's node registry (Store.nodes), where
// each node using a forwarder advertises itself.
//
// Use (src/protocol or the ws role), at the top of the polling handler, before anything else
// touches `res`/`req`:
//
//   const forwarder = createSidForwarder({ config, nodeId, logger, roles, port: ctx.port });
//   forwarder.start();                     // advertise this node (call after the role is set up)
//   app.any(path, (res, req) => { if (forwarder.handle(res, req)) return; …own handling… });
//   await forwarder.close();               // on drain/close: withdraw and close connections
//
// A forwarded request carries `X-Chatd-Forwarded: <nodeId>` and is never forwarded twice. The
// owner resolves the client IP from X-Forwarded-For only if this node's address is in its
// `server.trustedProxies`. Websocket upgrades are not forwarded: an upgrade probe that reaches
// the wrong node fails and the client stays on polling (or sticky LB sessions avoid it).
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { Config, Role } from '../config/schema.js';
import { ChatdError, toChatdError } from '../errors.js';
import { readBody } from '../http/router.js';
import type { NodeRegistry } from '../store/ports.js';
import type { HttpRequest, HttpResponse } from '../uws.js';
import { forward, peerTrust, readIncoming, UpstreamFailure, writeAnswer, type IncomingRequest } from './http-proxy.js';
import { writeError, writeUnknownSid, type CorsHeaders } from './respond.js';
import { ownerOfSid } from './sid.js';
import { UpstreamGroup, type Upstream } from './upstreams.js';

export const FORWARDED_HEADER = 'x-chatd-forwarded';

export interface SidForwarderOptions {
  readonly config: Config;
  readonly nodeId: string;
  readonly logger: Logger;
  /** The roles of this process: with `all` the ws role is on the public listener. */
  readonly roles: readonly Role[];
  /** The port this node listens on (known after listen). */
  readonly port: () => number;
  /** The engine's node registry (Store.nodes), resolved on first use: the store opens lazily. */
  readonly registry: () => Promise<NodeRegistry>;
  /** CORS headers for the forwarder's own refusals (default: none). */
  readonly cors?: CorsHeaders;
}

export interface SidForwarder {
  /** The URL this node advertises (undefined until its port is known). */
  readonly url: () => string | undefined;
  /**
   * Takes over a polling request whose sid names another node: answers it (with the owner's
   * answer, or Engine.IO's "Session ID unknown" when the owner is unknown) and returns true.
   * Returns false — touching nothing — when the request is this node's to handle.
   */
  handle(res: HttpResponse, req: HttpRequest): boolean;
  /** Advertises this node now and every third of the advertisement's life. */
  start(): void;
  /** Withdraws this node and closes the connections to its peers. */
  close(): Promise<void>;
}

/** The address other nodes reach this one at: `roles.ws.advertiseUrl`, else derived from the listener. */
export function advertiseUrl(config: Config, roles: readonly Role[], port: number): string {
  if (config.roles.ws.advertiseUrl) return config.roles.ws.advertiseUrl.replace(/\/+$/, '');
  const all = roles.includes('gateway') && roles.includes('api') && roles.includes('ws');
  const host = all ? config.server.host : config.roles.ws.host;
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
  let warned = false;

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

  const relay = (res: HttpResponse, inc: IncomingRequest, owner: string) => {
    const state = { done: false };
    const abort = new AbortController();
    res.onAborted(() => {
      state.done = true;
      abort.abort();
    });
    const fail = (err: unknown) => {
      if (err instanceof UpstreamFailure && err.kind === 'aborted') return;
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
      const target = await opts
        .registry()
        .then((r) => r.lookup(owner))
        .catch((err: unknown) => {
          logger.warn({ err: (err as Error).message }, 'node registry lookup failed');
          return undefined;
        });
      if (!target || target === url()) {
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

  return {
    url,
    handle(res, req) {
      const query = req.getQuery() ?? '';
      if (!query.includes('sid=')) return false;
      const owner = ownerOfSid(new URLSearchParams(query).get('sid'));
      if (!owner || owner === nodeId) return false;
      relay(res, readIncoming(res, req, trusted), owner);
      return true;
    },
    start() {
      if (timer || closed) return;
      void advertise();
      // Often enough that a node is findable within moments of listening (start() may run before
      // the port is known) and long before its advertisement expires; one SET per tick.
      timer = setInterval(() => void advertise(), Math.min(2000, ttlMs / 3));
      timer.unref();
    },
    async close() {
      closed = true;
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
