// API keys (DESIGN.md "Credentials"): publishable `ck_pub_…` keys live in the widget and may only
// mint visitor tokens; secret `ck_sec_…` keys live on a tenant's servers and may also mint agent
// tokens, broadcast and list online users. The guide's GATEWAY_API_KEY is a publishable key for any
// tenant when none is configured, else for `auth.defaultTenant`.
//
// A presented key is hashed (SHA-256) and the digest looked up: the configured keys are held only
// as digests (a `sha256:` hash in the config never needs the key at all), and the lookup's timing
// depends on the digest, which an attacker cannot steer towards a real key. Keys are never logged.
import { createHash } from 'node:crypto';
import type { Config } from '../config/schema.js';
import { ChatdError } from '../errors.js';

export type ApiKeyKind = 'publishable' | 'secret';

/** What a valid key grants. `tenantId: '*'` = any tenant (GATEWAY_API_KEY with no tenants configured). */
export interface ApiKeyMatch {
  readonly tenantId: string | '*';
  readonly kind: ApiKeyKind;
  /** The configured label, for logs and metrics (never the key). */
  readonly name?: string;
  /** A short, non-reversible id of the key (first 12 hex chars of its SHA-256), for rate-limit buckets and logs. */
  readonly keyId: string;
}

export interface ApiKeyRegistry {
  /** The grant of a presented key, or undefined for an unknown (or empty) key. */
  lookup(presented: string | undefined): ApiKeyMatch | undefined;
  /**
   * The grant of a presented key for `tenantId`, or a ChatdError: 401 `invalid_api_key` for a
   * missing or unknown key, 403 `tenant_mismatch` for another tenant's key, 403 `key_not_allowed`
   * when a secret key is needed and a publishable one was given.
   */
  authorize(presented: string | undefined, tenantId: string, need?: ApiKeyKind): ApiKeyMatch;
  /** Start-up warnings (e.g. the gateway key accepted for any tenant); no key material in them. */
  readonly warnings: readonly string[];
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
const hex = (b: Buffer) => b.toString('hex');

/** Kind of a key from its prefix: `ck_sec_` is secret, everything else publishable. */
export const kindOfKey = (key: string): ApiKeyKind => (key.startsWith('ck_sec_') ? 'secret' : 'publishable');

/** The `sha256:` form of a key, as written in the config's `hash` (for `chatd` docs and tests). */
export const hashApiKey = (key: string) => `sha256:${hex(digest(key))}`;

export function createApiKeyRegistry(config: Pick<Config, 'tenants' | 'auth'>): ApiKeyRegistry {
  const byDigest = new Map<string, ApiKeyMatch>();
  const warnings: string[] = [];
  const add = (d: Buffer, m: Omit<ApiKeyMatch, 'keyId'>) => {
    const k = hex(d);
    const existing = byDigest.get(k);
    if (existing && existing.tenantId !== m.tenantId) {
      // One key cannot belong to two tenants: refuse to guess which one was meant.
      throw new Error(`the same API key is configured for tenants "${existing.tenantId}" and "${m.tenantId}"`);
    }
    byDigest.set(k, Object.freeze({ ...m, keyId: k.slice(0, 12) }));
  };

  for (const t of config.tenants) {
    for (const k of t.apiKeys) {
      const d = k.key ? digest(k.key) : Buffer.from(k.hash!.slice('sha256:'.length), 'hex');
      const kind: ApiKeyKind = k.kind ?? kindOfKey(k.key!);
      add(d, { tenantId: t.id, kind, ...(k.name ? { name: k.name } : {}) });
    }
  }

  const gw = config.auth.gatewayApiKey;
  if (gw) {
    if (config.tenants.length === 0) {
      add(digest(gw), { tenantId: '*', kind: 'publishable', name: 'GATEWAY_API_KEY' });
      warnings.push('no tenants configured: GATEWAY_API_KEY is accepted for any tenant id, from any origin');
    } else {
      const owner = config.auth.defaultTenant ?? (config.tenants.length === 1 ? config.tenants[0]!.id : undefined);
      if (owner) add(digest(gw), { tenantId: owner, kind: 'publishable', name: 'GATEWAY_API_KEY' });
      else warnings.push('GATEWAY_API_KEY is ignored: tenants are configured and auth.defaultTenant names none of them');
    }
  }

  // The zero-config secret key (DESIGN "Zero-config secret key"): any tenant while none is configured.
  const sec = config.auth.secretApiKey;
  if (sec && config.tenants.length === 0) add(digest(sec), { tenantId: '*', kind: 'secret', name: 'zero-config secret key' });

  // The few valid keys seen lately (a deployment has a handful; every connect and request presents
  // one): a hit skips the SHA-256. Only keys that matched are kept, so an unknown key always takes
  // the digest path below and the cache cannot be filled by guesses.
  const recent = new Map<string, ApiKeyMatch>();
  const lookup = (presented: string | undefined): ApiKeyMatch | undefined => {
    if (!presented || presented.length > 512) return undefined;
    const hit = recent.get(presented);
    if (hit) return hit;
    // Hash, then compare digests: the comparison's timing depends only on the digest of what
    // was presented, which tells an attacker nothing about any configured key.
    const m = byDigest.get(hex(digest(presented)));
    if (m) {
      if (recent.size >= 64) recent.delete(recent.keys().next().value!);
      recent.set(presented, m);
    }
    return m;
  };

  return {
    lookup,
    authorize(presented, tenantId, need = 'publishable') {
      const m = lookup(presented);
      if (!m) throw new ChatdError('invalid_api_key');
      if (m.tenantId !== '*' && m.tenantId !== tenantId) throw new ChatdError('tenant_mismatch');
      if (need === 'secret' && m.kind !== 'secret') throw new ChatdError('key_not_allowed');
      return m;
    },
    warnings,
  };
}
