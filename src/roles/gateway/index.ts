// The gateway role: the edge. It refuses what it can see is wrong (a credential in a query string,
// a wrong API key, a key of another tenant), limits rates, and routes: HTTP round robin to the api
// nodes, Socket.IO to the ws node that owns the session. It never mints or verifies JWTs: the api
// and ws roles verify every credential themselves (DESIGN.md "Credentials").
//
// Co-located (one public listener, config/listeners.ts) the checks run in process:
//   all          router guards in front of the api routes; Socket.IO is the ws role's
//   gateway,api  the same guards; Socket.IO proxied to upstreams.ws (socketio-routes.ts)
//   gateway,ws   Socket.IO is the ws role's (it forwards what another node owns, by sid); the HTTP
//                API proxied to upstreams.api through the gateway's checks (api-routes.ts)
// Wherever the ws role is in process, the per-IP connect limit is its to apply (createGatewayLimits).
import type { Logger } from 'pino';
import { createApiKeyRegistry, type ApiKeyRegistry } from '../../auth/api-keys.js';
import { createClientIpResolver } from '../../http/client-ip.js';
import type { Guard, Req } from '../../http/router.js';
import type { RoleContext, RoleFactory, RoleInstance } from '../role-context.js';
import { mountApiRoutes } from './api-routes.js';
import { peerTrust } from '../../cluster/http-proxy.js';
import { checkQueryCredentials } from '../../auth/bearer.js';
import { namedTenant, precheck, PROTECTED_PREFIXES } from './credentials.js';
import { createGatewayLimits, type GatewayLimits } from './rate-limits.js';
import { mountSocketioRoutes } from './socketio-routes.js';
import { UpstreamGroup } from '../../cluster/upstreams.js';
import { coLocationProblem } from '../../config/listeners.js';

export { createGatewayLimits } from './rate-limits.js';

/**
 * The in-process form of the gateway's HTTP checks (`--role all`): a router guard. `keys` is read
 * per request, so it follows the process's reloadable key set (Services.auth).
 */
export function gatewayGuards(keys: () => Promise<Pick<ApiKeyRegistry, 'lookup'>>, limits: GatewayLimits): Guard[] {
  const check = async (req: Req) => {
    // Every request counts against its IP, refused ones too (a flood of bad requests is a flood).
    await limits.httpIp(req.ip);
    checkQueryCredentials(req.query);
    const { key } = precheck(
      { method: req.method, path: req.path, authorization: req.headers.authorization, tenantId: namedTenant(req.body, req.query) },
      await keys(),
    );
    if (key) await limits.httpKey(key.keyId);
  };
  return PROTECTED_PREFIXES.map((prefix) => ({ prefix, check }));
}

export const createGatewayRole: RoleFactory = async (ctx) => {
  const { config, logger } = ctx;
  // The engine's limiter (Redis: shared by every gateway; memory: in this process), opened without
  // the database.
  const limits = createGatewayLimits(config.limits, async () => (await ctx.store()).rateLimiter, logger);
  const withApi = ctx.roles.includes('api');
  const withWs = ctx.roles.includes('ws');
  const problem = coLocationProblem(config, ctx.roles);
  if (problem) throw new Error(problem);
  if (withApi) {
    // The api role opens the services anyway: share its (reloadable) key set.
    for (const guard of gatewayGuards(async () => (await ctx.services()).auth.apiKeys, limits)) ctx.router.addGuard(guard);
    if (withWs) return { readiness: [], async drain() {}, async close() {} };
    return proxyGateway(ctx, createApiKeyRegistry(config), limits, logger, { api: false, socketio: true });
  }
  // No api role here, so no services for the key set: its own, from the config it started with.
  return proxyGateway(ctx, createApiKeyRegistry(config), limits, logger, { api: true, socketio: !withWs });
};

/** What the gateway proxies: the HTTP API to upstreams.api, Socket.IO to upstreams.ws. */
interface Proxied {
  readonly api: boolean;
  readonly socketio: boolean;
}

function proxyGateway(ctx: RoleContext, keys: ApiKeyRegistry, limits: GatewayLimits, logger: Logger, proxied: Proxied): RoleInstance {
  const { config } = ctx;
  const { upstreams } = config;
  if (proxied.api && proxied.socketio && upstreams.api.length === 0 && upstreams.ws.length === 0) {
    throw new Error(
      'the gateway role needs upstreams: set upstreams.api and upstreams.ws (or BACKEND_API_URL and BACKEND_WS_URL), or run --role all',
    );
  }
  if (proxied.api) for (const w of keys.warnings) logger.warn(w);
  const groups: UpstreamGroup[] = [];
  const clientIp = createClientIpResolver(config.server.trustedProxies);
  const trusted = peerTrust(config.server.trustedProxies);
  const cors = (origin: string | undefined) => ctx.router.corsHeaders(origin);
  let draining = false;
  const isDraining = () => draining;

  if (proxied.api) {
    const api = new UpstreamGroup({ name: 'api', urls: upstreams.api, healthCheckIntervalMs: upstreams.healthCheckIntervalMs, logger });
    groups.push(api);
    mountApiRoutes({
      app: ctx.app,
      api,
      keys,
      limits,
      clientIp,
      trusted,
      cors,
      logger,
      bodyLimitBytes: config.server.bodyLimitBytes,
      timeoutMs: upstreams.requestTimeoutMs,
      isDraining,
    });
  }
  let sio: ReturnType<typeof mountSocketioRoutes> | undefined;
  if (proxied.socketio) {
    const ws = new UpstreamGroup({ name: 'ws', urls: upstreams.ws, healthCheckIntervalMs: upstreams.healthCheckIntervalMs, logger });
    groups.push(ws);
    sio = mountSocketioRoutes({
      app: ctx.app,
      ws,
      registry: async () => (await ctx.store()).nodes,
      limits,
      clientIp,
      trusted,
      cors,
      logger,
      path: config.socketio.path,
      maxPayloadBytes: config.limits.maxPayloadBytes,
      sendBufferBytes: config.limits.sendBufferBytes,
      timeoutMs: upstreams.requestTimeoutMs,
      // A long-poll GET is held up to pingInterval; answer well after the ws node would.
      pollTimeoutMs: config.socketio.pingIntervalMs + config.socketio.pingTimeoutMs + 5_000,
      // The gateway pings the websockets it holds with the values the ws nodes advertise (the same config).
      pingIntervalMs: config.socketio.pingIntervalMs,
      pingTimeoutMs: config.socketio.pingTimeoutMs,
      isDraining,
    });
  }
  for (const g of groups) g.start();
  logger.info(
    { ...(proxied.api ? { api: upstreams.api } : {}), ...(proxied.socketio ? { ws: upstreams.ws } : {}) },
    'gateway routing to upstreams',
  );

  const healthyIn = (g: UpstreamGroup) => g.size === 0 || g.list().some((u) => u.inRotation && u.healthy);
  return {
    readiness: [
      {
        name: 'upstreams',
        async check() {
          const down = groups.filter((g) => !healthyIn(g)).map((g) => g.name);
          if (down.length > 0) throw new Error(`no healthy ${down.join(' or ')} upstream`);
        },
      },
    ],
    async drain() {
      draining = true;
      for (const g of groups) g.stop();
      sio?.closeAll();
    },
    async close() {
      draining = true;
      sio?.closeAll();
      sio?.close();
      await Promise.allSettled(groups.map((g) => g.close()));
    },
  };
}
