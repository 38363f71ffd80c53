// The gateway's credential pre-check (DESIGN.md "Credentials"): refuse what the edge can see is
// wrong, pass the rest on. An API key is verified here (it is a lookup); a JWT is only recognised
// by its shape and passed on, because the api and ws roles verify every credential themselves and
// the gateway never holds signing keys. Credentials never travel in a query string.
import { ChatdError } from '../../errors.js';
import type { ApiKeyMatch, ApiKeyRegistry } from '../../auth/api-keys.js';

/** What the Authorization header carries, told apart by shape. */
export type BearerCredential =
  | { readonly type: 'none' }
  | { readonly type: 'api_key'; readonly key: string }
  | { readonly type: 'jwt'; readonly token: string };

/** Three base64url segments: a compact JWS. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** A query value that is a JWT: its header always encodes `{"`, so it starts with `eyJ`. */
const JWT_VALUE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const API_KEY_VALUE = /^ck_(pub|sec)_/;

/** Query parameter names that only ever carry credentials. */
const CREDENTIAL_PARAMS = new Set([
  'token',
  'access_token',
  'accesstoken',
  'id_token',
  'jwt',
  'apikey',
  'api_key',
  'api-key',
  'key',
  'auth',
  'authorization',
  'bearer',
  'secret',
  'password',
  'pid',
]);

/**
 * Classifies the Authorization header. A value the key registry knows is an API key whatever its
 * shape (GATEWAY_API_KEY may be any string); `ck_…` values are API keys (perhaps unknown ones);
 * a JWT-shaped value is a token; anything else is treated as a (wrong) API key.
 */
export function classifyBearer(authorization: string | undefined, keys: Pick<ApiKeyRegistry, 'lookup'>): BearerCredential {
  if (!authorization) return { type: 'none' };
  const m = /^Bearer[ \t]+(.+)$/i.exec(authorization.trim());
  const value = m ? m[1]!.trim() : '';
  if (!value) return { type: 'none' };
  if (API_KEY_VALUE.test(value) || keys.lookup(value)) return { type: 'api_key', key: value };
  if (JWT_SHAPE.test(value)) return { type: 'jwt', token: value };
  return { type: 'api_key', key: value };
}

/**
 * Refuses a query string that carries a credential: by parameter name, or by a value shaped like a
 * key or a JWT. `allowSid`: the Engine.IO `sid` is the one exception (it is redacted from logs).
 */
export function checkQueryCredentials(query: URLSearchParams, opts: { allowSid?: boolean } = {}): void {
  for (const [name, value] of query) {
    const lower = name.toLowerCase();
    if (lower === 'sid' && opts.allowSid) continue;
    if (CREDENTIAL_PARAMS.has(lower) || API_KEY_VALUE.test(value) || JWT_VALUE.test(value)) {
      throw new ChatdError(
        'credentials_in_query',
        `Credentials are not accepted in the query string (parameter "${name.slice(0, 64)}"); send them in the Authorization header`,
      );
    }
  }
}

/**
 * A query string safe to log: the sid and anything credential-like replaced by `[redacted]`.
 * Used for every URL the gateway logs, including refused ones.
 */
export function redactQuery(query: string): string {
  if (!query) return '';
  const params = new URLSearchParams(query);
  const out = new URLSearchParams();
  for (const [name, value] of params) {
    const lower = name.toLowerCase();
    const secret = lower === 'sid' || CREDENTIAL_PARAMS.has(lower) || API_KEY_VALUE.test(value) || JWT_VALUE.test(value);
    out.append(name, secret ? '[redacted]' : value);
  }
  return out.toString();
}

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
  'GET /api/chat/messages': 'jwt',
  'POST /webchat/message': 'jwt',
};

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
  const need = ROUTES[`${method} ${input.path}`];
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
