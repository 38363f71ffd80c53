// `chatd serve`: one uWebSockets.js listener per role (one public listener for `--role all`), an
// admin listener on loopback, health and readiness everywhere, graceful shutdown.
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import net from 'node:net';
import type { Logger } from 'pino';
import type { Config, Role } from '../config/schema.js';
import { ChatdError } from '../errors.js';
import { HttpRouter, type CorsPolicy, type Handler, type Method, type RouteOptions } from '../http/router.js';
import { createClientIpResolver } from '../http/client-ip.js';
import { listenerConflict, planListeners } from '../config/listeners.js';
import { registry, dependencyUp } from '../observability/metrics.js';
import { loadUws, type TemplatedApp, type us_listen_socket } from '../uws.js';
import { createServices, type ServiceFactories, type Services } from './services.js';
import type { ReadinessCheck, RoleFactory, RoleInstance } from '../roles/role-context.js';
import type { Store } from '../store/ports.js';

export interface ServeOptions {
  readonly config: Config;
  readonly roles: readonly Role[];
  readonly logger: Logger;
  readonly roleFactories: Readonly<Record<Role, RoleFactory>>;
  readonly serviceFactories: ServiceFactories;
  /** Origins allowed for CORS preflights (the union of configured origins; any when no tenants). */
  readonly cors?: CorsPolicy;
  /** Admin endpoints contributed by other modules (presence ls, webhooks tail, config reload, …). */
  readonly adminEndpoints?: readonly ((admin: AdminRoutes, ctx: AdminContext) => void)[];
  /** Extra routes on public listeners (e.g. the demo pages), given each listener's plan. */
  readonly listenerMounts?: readonly ListenerMount[];
}

/**
 * Adds routes to a public listener before it is finalized; may return a callback that runs once the
 * listener is bound (with its base URL), e.g. to log where a page is.
 */
export type ListenerMount = (
  listener: { readonly name: string; readonly roles: readonly Role[] },
  router: HttpRouter,
  ctx: { readonly config: Config; readonly logger: Logger; services(): Promise<Services> },
) => ((baseUrl: string) => void) | void;

export interface AdminRoutes {
  /** Registers an admin endpoint; every call must carry the admin token. */
  route(method: Method, path: string, handler: Handler, opts?: RouteOptions): void;
}

export interface RunningServer {
  readonly nodeId: string;
  /** Port of each listener by name: `public` (all), `gateway`, `api`, `ws`, `admin`. */
  readonly ports: Readonly<Record<string, number>>;
  readonly admin: AdminRoutes | undefined;
  stop(): Promise<void>;
}

export class ListenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

export { planListeners } from '../config/listeners.js';

export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const { config, logger } = opts;
  const uws = loadUws();
  const nodeId = config.nodeId ?? randomBytes(4).toString('hex');
  const log = logger.child({ node: nodeId });
  const clientIp = createClientIpResolver(config.server.trustedProxies);

  let draining = false;
  let servicesPromise: Promise<Services> | undefined;
  let storePromise: Promise<Store> | undefined;
  const store = () => {
    storePromise ??= opts.serviceFactories.createStore(config, log, nodeId);
    return storePromise;
  };
  const services = () => {
    servicesPromise ??= createServices(config, log, nodeId, opts.serviceFactories, store).catch((err: unknown) => {
      // Not memoised for ever: a database unreachable at start must not need a restart. Callers
      // within the next second share this failure; the next one after that tries again.
      setTimeout(() => (servicesPromise = undefined), 1000).unref();
      throw err;
    });
    return servicesPromise;
  };

  const listenSockets: us_listen_socket[] = [];
  const instances: RoleInstance[] = [];
  const ports: Record<string, number> = {};
  const apps: TemplatedApp[] = [];

  const closeAll = async () => {
    for (const s of listenSockets.splice(0)) uws.us_listen_socket_close(s);
    await Promise.allSettled(instances.map((i) => i.close()));
    if (servicesPromise) await (await servicesPromise.catch(() => undefined))?.close();
    else if (storePromise) await (await storePromise.catch(() => undefined))?.close();
    for (const app of apps) (app as { close?: () => void }).close?.();
  };

  try {
    // Two listeners of this process on one address and port: refuse before binding either.
    const conflict = listenerConflict(config, opts.roles);
    if (conflict) throw new ListenError(conflict);
    if (opts.serviceFactories.checkDatabase && opts.roles.some((r) => r === 'api' || r === 'ws')) {
      await opts.serviceFactories.checkDatabase(config, log);
    }
    for (const plan of planListeners(config, opts.roles)) {
      const app = uws.App();
      apps.push(app);
      const router = new HttpRouter(app, {
        role: plan.name,
        logger: log.child({ listener: plan.name }),
        bodyLimit: config.server.bodyLimitBytes,
        clientIp,
        ...(opts.cors ? { cors: opts.cors } : {}),
      });
      let port = 0;
      const mine: RoleInstance[] = [];
      for (const role of plan.roles) {
        const instance = await opts.roleFactories[role]({
          config,
          logger: log.child({ role }),
          nodeId,
          roles: opts.roles,
          app,
          router,
          services,
          store,
          port: () => port,
        });
        mine.push(instance);
        instances.push(instance);
      }
      mountHealth(
        router,
        () => draining,
        mine.flatMap((i) => i.readiness),
        servicesPromise ? services : undefined,
        nodeId,
      );
      const onListening = (opts.listenerMounts ?? []).flatMap((mount) => mount(plan, router, { config, logger: log, services }) ?? []);
      router.finalize();
      const { socket, port: bound } = await listen(uws, app, plan.host, plan.port, plan.name);
      port = bound;
      listenSockets.push(socket);
      ports[plan.name] = bound;
      const url = `http://${displayHost(plan.host)}:${bound}`;
      log.info({ listener: plan.name, roles: plan.roles, url }, `listening (${plan.roles.join(', ')})`);
      for (const cb of onListening) cb(url);
    }

    let admin: AdminRoutes | undefined;
    if (config.admin.enabled) {
      const app = uws.App();
      apps.push(app);
      const router = new HttpRouter(app, { role: 'admin', logger: log.child({ listener: 'admin' }), bodyLimit: 1 << 20, clientIp });
      router.get('/metrics', async () => ({ raw: await registry.metrics(), contentType: registry.contentType }));
      mountHealth(
        router,
        () => draining,
        instances.flatMap((i) => i.readiness),
        servicesPromise ? services : undefined,
        nodeId,
      );
      admin = adminRoutes(router, config.admin.token);
      const startedAt = new Date().toISOString();
      admin.route('GET', '/admin/status', () => ({
        body: { nodeId, roles: opts.roles, startedAt, pid: process.pid, draining, ports, version: process.version },
      }));
      for (const register of opts.adminEndpoints ?? []) register(admin, { config, services, nodeId });
      router.finalize();
      const { socket, port } = await listen(uws, app, config.admin.host, config.admin.port, 'admin');
      listenSockets.push(socket);
      ports.admin = port;
      log.info(
        { listener: 'admin', url: `http://${displayHost(config.admin.host)}:${port}` },
        'admin listening (metrics, health, admin endpoints)',
      );
    }

    let stopping: Promise<void> | undefined;
    return {
      nodeId,
      ports,
      admin,
      stop() {
        stopping ??= (async () => {
          draining = true;
          log.info({ timeoutMs: config.server.shutdownTimeoutMs }, 'shutting down: draining');
          for (const s of listenSockets.splice(0)) uws.us_listen_socket_close(s);
          const drained = Promise.allSettled(instances.map((i) => i.drain()));
          const timedOut = await Promise.race([
            drained.then(() => false),
            new Promise<boolean>((r) => setTimeout(r, config.server.shutdownTimeoutMs, true).unref()),
          ]);
          if (timedOut) log.warn('shutdown timeout reached; closing with work in flight');
          await closeAll();
          log.info('stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function displayHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
}

// Every listener binds with LIBUS_LISTEN_EXCLUSIVE_PORT: by default uWebSockets.js sets SO_REUSEPORT,
// so a second chatd (or an old one left after a redeploy) on a busy port would "listen" and take
// half the connections. Exclusive, the second bind fails and the start stops with one line.
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;
type ListenWithOptions = (host: string, port: number, options: number, cb: (socket: us_listen_socket | false) => void) => unknown;

function listen(uws: ReturnType<typeof loadUws>, app: TemplatedApp, host: string, port: number, name: string) {
  return new Promise<{ socket: us_listen_socket; port: number }>((resolve, reject) => {
    // The native listen takes (host, port, options, cb); the typings only declare (port, options, cb).
    (app.listen as unknown as ListenWithOptions).call(app, host, port, LIBUS_LISTEN_EXCLUSIVE_PORT, (socket) => {
      if (!socket) {
        void bindFailureReason(host, port).then((reason) =>
          reject(new ListenError(`cannot listen on ${displayAddress(host, port)} (${name} listener): ${reason}`)),
        );
        return;
      }
      resolve({ socket, port: uws.us_socket_local_port(socket) });
    });
  });
}

const displayAddress = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

/** uWebSockets.js reports only "false": bind the same address with Node to learn why. */
function bindFailureReason(host: string, port: number): Promise<string> {
  const reasons: Record<string, string> = {
    EADDRINUSE: 'address in use',
    EADDRNOTAVAIL: 'address not available on this machine',
    EACCES: 'permission denied (a port below 1024 needs privileges)',
  };
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(reasons[err.code ?? ''] ?? `${err.code ?? err.message}`));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve('address in use or not available')));
  });
}

/** `/healthz`: the process is alive. `/readyz`: every dependency answers and we are not draining. */
function mountHealth(
  router: HttpRouter,
  isDraining: () => boolean,
  checks: readonly ReadinessCheck[],
  services: (() => Promise<Services>) | undefined,
  nodeId: string,
): void {
  // X-Chatd-Node names this node: the gateway's health checks learn which upstream owns the
  // Engine.IO sids that start with that id (src/cluster/upstreams.ts).
  const node = { 'X-Chatd-Node': nodeId };
  router.get('/healthz', () => ({ body: { status: 'ok' }, headers: node }));
  router.get('/readyz', async () => {
    if (isDraining()) return { status: 503, body: { status: 'draining', checks: {} }, headers: node };
    let opened: Services | Error | undefined;
    if (services) opened = await services().catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
    const failedToOpen: ReadinessCheck[] =
      opened instanceof Error ? [{ name: 'services', check: () => Promise.reject(opened as Error) }] : [];
    const all = [...checks, ...(opened && !(opened instanceof Error) ? opened.readiness : []), ...failedToOpen];
    const results: Record<string, string> = {};
    await Promise.all(
      all.map(async (c) => {
        try {
          await withTimeout(c.check(), 2000);
          results[c.name] = 'ok';
          if (c.name === 'redis' || c.name === 'postgres' || c.name === 'pglite') dependencyUp.set({ dependency: c.name }, 1);
        } catch (err) {
          results[c.name] = (err as Error).message || 'failed';
          if (c.name === 'redis' || c.name === 'postgres' || c.name === 'pglite') dependencyUp.set({ dependency: c.name }, 0);
        }
      }),
    );
    const ok = Object.values(results).every((v) => v === 'ok');
    return { status: ok ? 200 : 503, body: { status: ok ? 'ready' : 'not_ready', checks: results }, headers: node };
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e) => (clearTimeout(t), reject(e)),
    );
  });
}

const sha = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time comparison of a presented secret with the expected one. */
export function secretEquals(presented: string, expected: string): boolean {
  return timingSafeEqual(sha(presented), sha(expected));
}

function adminRoutes(router: HttpRouter, token: string | undefined): AdminRoutes {
  return {
    route(method, path, handler, opts) {
      router.route(
        method,
        path,
        (req) => {
          const auth = req.headers.authorization ?? '';
          const presented = auth.startsWith('Bearer ') ? auth.slice(7) : '';
          if (!token || !presented || !secretEquals(presented, token)) throw new ChatdError('admin_token_required');
          return handler(req);
        },
        opts,
      );
    },
  };
}

export interface AdminContext {
  readonly config: Config;
  readonly nodeId: string;
  services(): Promise<Services>;
}
