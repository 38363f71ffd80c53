// The gateway's credential pre-check (DESIGN.md "Credentials"): refuse what the edge can see is
// wrong, pass the rest on. An API key is verified here (it is a lookup); a JWT is only recognised
// by its shape and passed on, because the api and ws roles verify every credential themselves and
// the gateway never holds signing keys. Reading the header and refusing credentials in a query
// string is auth/bearer.ts, shared with the api and ws roles.
import { ChatdError } from '../../errors.js';
import type { ApiKeyMatch, ApiKeyRegistry } from '../../auth/api-keys.js';
import { classifyBearer, type BearerCredential } from '../../auth/bearer.js';

/** What a route needs, as far as the gateway can tell. */
export type RouteCredential =
  /** An API key (publishable or secret); a JWT is passed on. */
  | 'api_key'
  /** A secret API key, or a JWT passed on (e.g. an agent token). */
  | 'secret_key_or_jwt'
  /** A secret API key. */
  | 'secret_key'
  /** A JWT; an API key is verified and passed on for the api role to refuse or accept. */
  | 'jwt';

/** The routes the gateway pre-checks, by method and path; unknown paths under the prefixes need some credential. */
const ROUTES: Readonly<Record<string, RouteCredential>> = {
  'POST /api/chat/anonymous-token': 'api_key',
  'POST /api/chat/agent-token': 'secret_key',
  'POST /api/chat/broadcast': 'secret_key',
  'POST /api/chat/erase': 'secret_key',
  'GET /api/chat/online-users': 'secret_key_or_jwt',
  // and every path under /api/chat/conversations (the inbox): 'secret_key_or_jwt'.
  'GET /api/chat/messages': 'jwt',
  'POST /webchat/message': 'jwt',
  'POST /webchat/contact': 'jwt',
  'GET /api/chat/availability': 'api_key',
};

/**
 * Paths whose credential is not an API key or a JWT, checked by the api role itself: the signed
 * token of an unsubscribe link (in the path), the inbound-email webhook's own secret.
 */
const OWN_CREDENTIAL_PREFIXES = ['/webchat/unsubscribe/', '/api/chat/inbound-email'] as const;

/** The path prefixes under which every request must carry a credential. */
export const PROTECTED_PREFIXES = ['/api/chat/', '/webchat/'] as const;

export const isProtected = (path: string) => PROTECTED_PREFIXES.some((p) => path.startsWith(p));

export interface PrecheckInput {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
  /** The tenant the request names (body `tenantId` or query `tenantId`), when it names one. */
  readonly tenantId: string | undefined;
}

export interface PrecheckResult {
  readonly credential: BearerCredential;
  /** The verified key's grant (for per-key rate limits), when an API key was presented. */
  readonly key: ApiKeyMatch | undefined;
}

/**
 * The pre-check of one request under a protected prefix. Throws a ChatdError to refuse it:
 * 401 `invalid_api_key` for a missing or unknown key on a key route, 401 `missing_credentials` for
 * no credential elsewhere, 403 `tenant_mismatch` for a key of another tenant, 403 `key_not_allowed`
 * for a publishable key where a secret one is needed. OPTIONS (CORS preflights) is never checked.
 */
export function precheck(input: PrecheckInput, keys: Pick<ApiKeyRegistry, 'lookup'>): PrecheckResult {
  const method = input.method.toUpperCase();
  const none: PrecheckResult = { credential: { type: 'none' }, key: undefined };
  if (method === 'OPTIONS' || !isProtected(input.path)) return none;
  if (OWN_CREDENTIAL_PREFIXES.some((p) => input.path.startsWith(p))) return none;
  const need = ROUTES[`${method} ${input.path}`] ?? (input.path.startsWith('/api/chat/conversations') ? 'secret_key_or_jwt' : undefined);
  const credential = classifyBearer(input.authorization, keys);
  const keyRoute = need === 'api_key' || need === 'secret_key';
  switch (credential.type) {
    case 'none':
      throw new ChatdError(keyRoute ? 'invalid_api_key' : 'missing_credentials');
    case 'jwt':
      // Verified by the api role (signature, expiry, tenant, role): the gateway holds no key for it.
      return { credential, key: undefined };
    case 'api_key': {
      const key = keys.lookup(credential.key);
      if (!key) throw new ChatdError('invalid_api_key');
      if (input.tenantId !== undefined && key.tenantId !== '*' && key.tenantId !== input.tenantId) {
        throw new ChatdError('tenant_mismatch');
      }
      if ((need === 'secret_key' || need === 'secret_key_or_jwt') && key.kind !== 'secret') {
        throw new ChatdError('key_not_allowed');
      }
      return { credential, key };
    }
    default: {
      const never: never = credential;
      throw new Error(`unknown credential ${String(never)}`);
    }
  }
}

/** The tenant a request names: `tenantId` in a JSON object body, else in the query. */
export function namedTenant(body: unknown, query: URLSearchParams): string | undefined {
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const t = (body as { tenantId?: unknown }).tenantId;
    if (typeof t === 'string') return t;
  }
  return query.get('tenantId') ?? undefined;
}
