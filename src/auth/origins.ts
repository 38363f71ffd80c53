// Origins (DESIGN.md "Origins"): preflights answer for the union of configured origins; with no
// tenants configured any origin is allowed. Per-tenant enforcement happens once the tenant is known.
import type { Config, TenantConfig } from '../config/schema.js';
import type { CorsPolicy } from '../http/router.js';
import type { TenantDirectory } from './tenants.js';

export function corsPolicyFor(config: Config): CorsPolicy {
  const any = config.tenants.length === 0 || config.tenants.some((t) => t.allowedOrigins.includes('*'));
  const union = new Set(config.tenants.flatMap((t) => t.allowedOrigins));
  return {
    allowOrigin: (origin) => any || union.has(origin),
    maxAgeSeconds: config.server.corsMaxAgeSeconds,
  };
}

/** Whether `origin` may act for `tenant`. No Origin header (a server, a CLI) is not refused here. */
export function originAllowed(tenant: TenantConfig | undefined, origin: string | undefined): boolean {
  if (!origin || !tenant) return true;
  return tenant.allowedOrigins.includes('*') || tenant.allowedOrigins.includes(origin);
}

/**
 * CORS that follows a reloadable tenant directory (Services.auth.tenants, swapped by a config
 * reload); `fallback` until the directory is available. The union is computed once per directory.
 */
export function corsPolicyOfTenants(tenants: () => TenantDirectory | undefined, fallback: Config): CorsPolicy {
  const initial = corsPolicyFor(fallback);
  const unions = new WeakMap<TenantDirectory, { any: boolean; origins: Set<string> }>();
  return {
    allowOrigin(origin) {
      const dir = tenants();
      if (!dir) return initial.allowOrigin(origin);
      let u = unions.get(dir);
      if (!u) {
        const origins = new Set(dir.ids().flatMap((id) => dir.get(id)?.allowedOrigins ?? []));
        u = { any: dir.zeroConfig || origins.has('*'), origins };
        unions.set(dir, u);
      }
      return u.any || u.origins.has(origin);
    },
    maxAgeSeconds: initial.maxAgeSeconds,
  };
}
