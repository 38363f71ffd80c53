// The gateway role: the edge. It refuses what it can see is wrong (a credential in a query string,
// a wrong API key, a key of another tenant), limits rates, and routes: HTTP round robin to the api
// nodes, Socket.IO to the ws node that owns the session. It never mints or verifies JWTs: the api
// and ws roles verify every credential themselves (DESIGN.md "Credentials").
//
// With `--role all` the same checks run in process, as router guards in front of the api routes,
// with no network hop; the per-IP connect limit is then the ws role's to apply (createGatewayLimits).
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
  const inProcess = ctx.roles.includes('api') && ctx.roles.includes('ws') && ctx.roles.includes('gateway');
  if (inProcess) {
    // The api role opens the services anyway: share its (reloadable) key set.
    for (const guard of gatewayGuards(async () => (await ctx.services()).auth.apiKeys, limits)) ctx.router.addGuard(guard);
    return { readiness: [], async drain() {}, async close() {} };
  }
  // A gateway-only process opens no database: its own key set, from the config it started with.
  return proxyGateway(ctx, createApiKeyRegistry(config), limits, logger);
};

function proxyGateway(ctx: RoleContext, keys: ApiKeyRegistry, limits: GatewayLimits, logger: Logger): RoleInstance {
  const { config } = ctx;
  const { upstreams } = config;
  if (upstreams.api.length === 0 && upstreams.ws.length === 0) {
    throw new Error(
      'the gateway role needs upstreams: set upstreams.api and upstreams.ws (or BACKEND_API_URL and BACKEND_WS_URL), or run --role all',
    );
  }
  for (const w of keys.warnings) logger.warn(w);
  const api = new UpstreamGroup({ name: 'api', urls: upstreams.api, healthCheckIntervalMs: upstreams.healthCheckIntervalMs, logger });
  const ws = new UpstreamGroup({ name: 'ws', urls: upstreams.ws, healthCheckIntervalMs: upstreams.healthCheckIntervalMs, logger });
  const clientIp = createClientIpResolver(config.server.trustedProxies);
  const trusted = peerTrust(config.server.trustedProxies);
  const cors = (origin: string | undefined) => ctx.router.corsHeaders(origin);
  let draining = false;
  const isDraining = () => draining;

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
  const sio = mountSocketioRoutes({
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
    isDraining,
  });
  api.start();
  ws.start();
  logger.info({ api: upstreams.api, ws: upstreams.ws }, 'gateway routing to upstreams');

  const healthyIn = (g: UpstreamGroup) => g.size === 0 || g.list().some((u) => u.inRotation && u.healthy);
  return {
    readiness: [
      {
        name: 'upstreams',
        async check() {
          const down = [api, ws].filter((g) => !healthyIn(g)).map((g) => g.name);
          if (down.length > 0) throw new Error(`no healthy ${down.join(' or ')} upstream`);
        },
      },
    ],
    async drain() {
      draining = true;
      api.stop();
      ws.stop();
      sio.closeAll();
    },
    async close() {
      draining = true;
      sio.closeAll();
      sio.close();
      await Promise.allSettled([api.close(), ws.close()]);
    },
  };
}
