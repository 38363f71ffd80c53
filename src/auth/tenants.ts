// The tenants chatd knows, as the policies the other auth modules and the domain ask about. With no
// tenants configured (zero-config mode) every syntactically valid tenant id is a tenant with the
// default policy: any origin, identity optional, no identity secret.
import type { Config, TenantConfig } from '../config/schema.js';
import { ID_PATTERN } from '../ids.js';
import { ALWAYS_OPEN, availabilitySettings, type AvailabilitySettings } from '../chat/availability.js';

/** Re-exported for the auth modules; the formats live in src/ids.ts. */
export { ID_PATTERN, USER_ID_PATTERN } from '../ids.js';

export type IdentityPolicy = 'off' | 'optional' | 'required';

/** What the rest of chatd needs to know about one tenant. */
export interface TenantPolicy {
  readonly id: string;
  /** False in zero-config mode (the tenant exists because its id was used). */
  readonly configured: boolean;
  readonly allowedOrigins: readonly string[];
  readonly identityVerification: IdentityPolicy;
  /** HMAC-SHA256 secret that validates `userHash`; undefined when not configured. */
  readonly identitySecret: string | undefined;
  /** The tenant's own key for user tokens it mints (a shared secret or a PEM public key). */
  readonly jwtVerificationKey: string | undefined;
  /** Every token issued before this instant (seconds since the epoch) is refused. */
  readonly tokensNotBefore: number | undefined;
  /** The tenant's label (`name`, else its id). */
  readonly name: string;
  /** Its reply emails' sender name, subject and intro (defaults when absent). */
  readonly email: TenantConfig['email'];
  /** Business hours, away message, expected reply time (always open in zero-config mode). */
  readonly availability: AvailabilitySettings;
  /** The inbox: reopening on a visitor's message, automatic assignment. */
  readonly conversations: TenantConfig['conversations'];
}

/** The inbox defaults (the schema's): reopen on a visitor's message, no automatic assignment. */
export const DEFAULT_CONVERSATIONS: TenantConfig['conversations'] = Object.freeze({
  reopenOnVisitorMessage: true,
  autoAssign: Object.freeze({ mode: 'off' as const, maxOpenPerAgent: 10 }),
});

export interface TenantDirectory {
  /** True when no tenants are configured: any tenant id is accepted (warned at start). */
  readonly zeroConfig: boolean;
  /** The tenant's policy, or undefined when tenants are configured and this one is not. */
  get(tenantId: string): TenantPolicy | undefined;
  /** Configured tenant ids (empty in zero-config mode). */
  ids(): readonly string[];
}

function policyOf(t: TenantConfig): TenantPolicy {
  const nbf = t.tokensNotBefore ? Math.floor(Date.parse(t.tokensNotBefore) / 1000) : undefined;
  return Object.freeze({
    id: t.id,
    configured: true,
    allowedOrigins: Object.freeze([...t.allowedOrigins]),
    identityVerification: t.identityVerification,
    identitySecret: t.identitySecret,
    jwtVerificationKey: t.jwtVerificationKey,
    tokensNotBefore: Number.isFinite(nbf) ? nbf : undefined,
    availability: availabilitySettings(t),
    conversations: t.conversations ?? DEFAULT_CONVERSATIONS,
    name: t.name ?? t.id,
    email: t.email,
  });
}

export function createTenantDirectory(config: Pick<Config, 'tenants'>): TenantDirectory {
  const zeroConfig = config.tenants.length === 0;
  const byId = new Map(config.tenants.map((t) => [t.id, policyOf(t)] as const));
  const open = new Map<string, TenantPolicy>();
  return {
    zeroConfig,
    get(tenantId) {
      if (!ID_PATTERN.test(tenantId)) return undefined;
      if (!zeroConfig) return byId.get(tenantId);
      let p = open.get(tenantId);
      if (!p) {
        p = Object.freeze({
          id: tenantId,
          configured: false,
          allowedOrigins: Object.freeze(['*']),
          identityVerification: 'optional' as const,
          identitySecret: undefined,
          jwtVerificationKey: undefined,
          tokensNotBefore: undefined,
          availability: ALWAYS_OPEN,
          conversations: DEFAULT_CONVERSATIONS,
          name: tenantId,
          email: undefined,
        });
        // Bounded: zero-config mode is for one developer, but a flood of ids must not grow memory.
        if (open.size < 10_000) open.set(tenantId, p);
      }
      return p;
    },
    ids: () => [...byId.keys()],
  };
}

/** Whether `origin` may act for the tenant. A request without Origin (a server, a CLI) passes. */
export function tenantAllowsOrigin(tenant: TenantPolicy, origin: string | undefined): boolean {
  if (!origin) return true;
  return tenant.allowedOrigins.includes('*') || tenant.allowedOrigins.includes(origin);
}
