// The credentials of a chatd process in one object, shared by every role (Services.auth): tenants
// and their policies, API keys, JWTs. `reload` swaps them all at once (SIGHUP): a request
// reads `auth.apiKeys` / `auth.tokens` / `auth.tenants` when it starts and sees one consistent set.
import type { Config } from '../config/schema.js';
import { createApiKeyRegistry, type ApiKeyRegistry } from './api-keys.js';
import { createTokenService, type TokenService, type TokenServiceOptions } from './jwt.js';
import { createTenantDirectory, type TenantDirectory } from './tenants.js';

export interface Auth {
  readonly tenants: TenantDirectory;
  readonly apiKeys: ApiKeyRegistry;
  readonly tokens: TokenService;
  /** Start-up warnings to log once (zero-config mode, ignored keys). */
  readonly warnings: readonly string[];
  /** Applies a new config's tenants, keys and JWT settings; throws (changing nothing) if they are unusable. */
  reload(config: Pick<Config, 'tenants' | 'auth'>): void;
}

export function createAuth(config: Pick<Config, 'tenants' | 'auth'>, opts: TokenServiceOptions = {}): Auth {
  const build = (c: Pick<Config, 'tenants' | 'auth'>) => {
    const tenants = createTenantDirectory(c);
    const apiKeys = createApiKeyRegistry(c);
    const tokens = createTokenService(c, tenants, opts);
    return { tenants, apiKeys, tokens };
  };
  let state = build(config);
  return {
    get tenants() {
      return state.tenants;
    },
    get apiKeys() {
      return state.apiKeys;
    },
    get tokens() {
      return state.tokens;
    },
    get warnings() {
      return state.apiKeys.warnings;
    },
    reload(c) {
      state = build(c);
    },
  };
}

export type { ApiKeyMatch, ApiKeyKind, ApiKeyRegistry } from './api-keys.js';
export type { Principal, PrincipalRole, TokenService, MintRequest, MintedToken } from './jwt.js';
export type { TenantPolicy, TenantDirectory, IdentityPolicy } from './tenants.js';
export type { Identity } from './identity.js';
