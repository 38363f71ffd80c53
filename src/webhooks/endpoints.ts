// The endpoints a job goes to, read from config at delivery time (so a reload that changes a URL,
// a secret or removes an endpoint applies to retries already scheduled: the retry set holds only
// the endpoint's id, never its URL or secret).
import { createHash } from 'node:crypto';
import type { Config, TenantConfig, WebhookEndpointConfig } from '../config/schema.js';

export type WebhookEventType = WebhookEndpointConfig['events'][number];

export interface ResolvedEndpoint {
  readonly tenantId: string;
  /** The configured id, or one derived from the URL (stable while the URL does not change). */
  readonly id: string;
  readonly url: string;
  readonly secret: string;
  readonly events: readonly WebhookEventType[];
  readonly concurrency: number;
}

/** An endpoint's id when the config gives none: `ep_` + 12 hex digits of SHA-256 of its URL. */
export function derivedEndpointId(url: string): string {
  return `ep_${createHash('sha256').update(url).digest('hex').slice(0, 12)}`;
}

export function resolveTenantEndpoints(tenant: TenantConfig, defaultConcurrency: number): ResolvedEndpoint[] {
  const seen = new Map<string, number>();
  return tenant.webhooks.map((ep) => {
    let id = ep.id ?? derivedEndpointId(ep.url);
    const n = (seen.get(id) ?? 0) + 1;
    seen.set(id, n);
    if (n > 1) id = `${id}_${n}`; // the same URL twice without ids: keep both distinct
    return {
      tenantId: tenant.id,
      id,
      url: ep.url,
      secret: ep.secret,
      events: ep.events,
      concurrency: ep.concurrency ?? defaultConcurrency,
    };
  });
}

/** Looks endpoints up by tenant; built once per config (call `endpointDirectory` again on reload). */
export interface EndpointDirectory {
  /** Endpoints of a tenant subscribed to `type`. */
  forEvent(tenantId: string, type: WebhookEventType): readonly ResolvedEndpoint[];
  get(tenantId: string, endpointId: string): ResolvedEndpoint | undefined;
  /** Whether any tenant has an endpoint (the dispatcher runs only then). */
  readonly any: boolean;
  /** The tenants with at least one endpoint. */
  tenants(): string[];
}

export function endpointDirectory(config: Pick<Config, 'tenants' | 'webhooks'>): EndpointDirectory {
  const byTenant = new Map<string, ResolvedEndpoint[]>();
  for (const tenant of config.tenants) {
    const eps = resolveTenantEndpoints(tenant, config.webhooks.concurrencyPerEndpoint);
    if (eps.length > 0) byTenant.set(tenant.id, eps);
  }
  return {
    any: byTenant.size > 0,
    tenants: () => [...byTenant.keys()],
    forEvent: (tenantId, type) => (byTenant.get(tenantId) ?? []).filter((e) => e.events.includes(type)),
    get: (tenantId, endpointId) => byTenant.get(tenantId)?.find((e) => e.id === endpointId),
  };
}
