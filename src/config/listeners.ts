// Which listeners one chatd process opens for a set of roles, and the rule that no two of them may
// share an address and port. uWebSockets.js would otherwise let a second bind share the port
// (SO_REUSEPORT) and split the traffic between them; `serve` binds exclusively too, and this check
// names the config keys before anything is opened (`chatd config check`, `chatd serve`).
import type { Config, Role } from './schema.js';

export interface ListenerPlan {
  /** `public` (the gateway with api and/or ws: one shared listener), `gateway`, `api`, `ws` or `admin`. */
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly roles: readonly Role[];
  /** The config key of the port (for error messages): `server.port`, `roles.api.port`, … */
  readonly portKey: string;
}

const ALL: readonly Role[] = ['gateway', 'api', 'ws'];

/**
 * The public listeners a role set needs. The gateway with the api role, the ws role or both shares
 * one public listener, the gateway's (server.host, server.port): its checks run in process and the
 * co-located roles serve what they can (DESIGN.md "Edge"). Roles without the gateway keep a listener
 * each.
 */
export function planListeners(config: Config, roles: readonly Role[]): ListenerPlan[] {
  if (roles.includes('gateway') && roles.length > 1) {
    // In this order: the gateway's guards are on the router before the other roles' routes.
    const shared = ALL.filter((r) => roles.includes(r));
    return [{ name: 'public', host: config.server.host, port: config.server.port, roles: shared, portKey: 'server.port' }];
  }
  return roles.map((role): ListenerPlan => {
    switch (role) {
      case 'gateway':
        return { name: 'gateway', host: config.server.host, port: config.server.port, roles: [role], portKey: 'server.port' };
      case 'api':
        return { name: 'api', host: config.roles.api.host, port: config.roles.api.port, roles: [role], portKey: 'roles.api.port' };
      case 'ws':
        return { name: 'ws', host: config.roles.ws.host, port: config.roles.ws.port, roles: [role], portKey: 'roles.ws.port' };
      default: {
        const never: never = role;
        throw new Error(`unknown role ${String(never)}`);
      }
    }
  });
}

/** Every listener of a process running `roles`: its public listeners and, when enabled, the admin one. */
export function processListeners(config: Config, roles: readonly Role[]): ListenerPlan[] {
  const out = planListeners(config, roles);
  if (config.admin.enabled) out.push({ name: 'admin', host: config.admin.host, port: config.admin.port, roles: [], portKey: 'admin.port' });
  return out;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);
const normalHost = (h: string) => (h === 'localhost' ? '127.0.0.1' : h.replace(/^\[(.*)\]$/, '$1'));

/** Two binds collide when they share a port (not 0: the kernel picks) and one address covers the other. */
export function overlaps(a: Pick<ListenerPlan, 'host' | 'port'>, b: Pick<ListenerPlan, 'host' | 'port'>): boolean {
  if (a.port === 0 || b.port === 0 || a.port !== b.port) return false;
  const ha = normalHost(a.host);
  const hb = normalHost(b.host);
  return ha === hb || WILDCARDS.has(ha) || WILDCARDS.has(hb);
}

/** The first pair of listeners of one process that would collide, as a message naming both keys; or undefined. */
export function listenerConflict(config: Config, roles: readonly Role[]): string | undefined {
  const all = processListeners(config, roles);
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i]!;
      const b = all[j]!;
      if (overlaps(a, b)) {
        return `${b.portKey} ${b.port} (${b.name} listener on ${b.host}) collides with ${a.portKey} (${a.name} listener on ${a.host}): one process cannot listen twice on one address and port`;
      }
    }
  }
  return undefined;
}

/**
 * What a co-located gateway needs from the config, as a message naming the key; or undefined. With
 * `gateway,ws` the HTTP API is proxied to upstreams.api, with `gateway,api` Socket.IO to upstreams.ws.
 */
export function coLocationProblem(config: Config, roles: readonly Role[]): string | undefined {
  if (!roles.includes('gateway')) return undefined;
  const api = roles.includes('api');
  const ws = roles.includes('ws');
  if (ws && !api && config.upstreams.api.length === 0) {
    return `--role ${roles.join(',')} serves Socket.IO here and proxies the HTTP API: set upstreams.api (or BACKEND_API_URL) to the api nodes, or add the api role`;
  }
  if (api && !ws && config.upstreams.ws.length === 0) {
    return `--role ${roles.join(',')} serves the HTTP API here and proxies Socket.IO: set upstreams.ws (or BACKEND_WS_URL) to the ws nodes, or add the ws role`;
  }
  return undefined;
}
