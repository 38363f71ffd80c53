// Where credentials travel over HTTP (DESIGN.md "Credentials"), read the same way by every role:
// `Authorization: Bearer <value>` and never a query string (the Engine.IO `sid` is the one
// exception). The gateway, the api role and the ws role's handshake use this one parser and this
// one list, so a direct api node refuses exactly what the gateway refuses.
import { ChatdError } from '../errors.js';
import type { ApiKeyRegistry } from './api-keys.js';

/** What the Authorization header carries, told apart by shape. */
export type BearerCredential =
  { readonly type: 'none' } | { readonly type: 'api_key'; readonly key: string } | { readonly type: 'jwt'; readonly token: string };

/** Three base64url segments: a compact JWS (an empty signature still has the shape; verification refuses it). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** A query value that is a JWT: its header always encodes `{"`, so it starts with `eyJ`. */
const JWT_VALUE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const API_KEY_VALUE = /^ck_(pub|sec)_/;

/** Query parameter names that only ever carry credentials (compared lower-cased). */
export const CREDENTIAL_PARAMS: ReadonlySet<string> = new Set([
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

/** True when `value` has the shape of a JWT (then it is verified as one, never looked up as an API key). */
export const looksLikeJwt = (value: string): boolean => JWT_SHAPE.test(value);

/**
 * The value of `Authorization: Bearer <value>` (scheme case-insensitive, one token without spaces,
 * as RFC 6750's b64token), or undefined when the header is missing, empty or another scheme.
 */
export function bearerValue(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  return /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization.trim())?.[1];
}

/**
 * Classifies the Authorization header. A value the key registry knows is an API key whatever its
 * shape (GATEWAY_API_KEY may be any string); `ck_…` values are API keys (perhaps unknown ones);
 * a JWT-shaped value is a token; anything else is treated as a (wrong) API key.
 */
export function classifyBearer(authorization: string | undefined, keys: Pick<ApiKeyRegistry, 'lookup'>): BearerCredential {
  const value = bearerValue(authorization);
  if (!value) return { type: 'none' };
  if (API_KEY_VALUE.test(value) || keys.lookup(value)) return { type: 'api_key', key: value };
  if (looksLikeJwt(value)) return { type: 'jwt', token: value };
  return { type: 'api_key', key: value };
}

const credentialLike = (name: string, value: string): boolean =>
  CREDENTIAL_PARAMS.has(name.toLowerCase()) || API_KEY_VALUE.test(value) || JWT_VALUE.test(value);

/**
 * Refuses a query string that carries a credential (400 `credentials_in_query`): by parameter
 * name, or by a value shaped like a key or a JWT. `allowSid`: the Engine.IO `sid` is the one
 * exception (it is redacted from logs).
 */
export function checkQueryCredentials(query: URLSearchParams, opts: { allowSid?: boolean } = {}): void {
  for (const [name, value] of query) {
    if (opts.allowSid && name.toLowerCase() === 'sid') continue;
    if (credentialLike(name, value)) {
      throw new ChatdError(
        'credentials_in_query',
        `Credentials are not accepted in the query string (parameter "${name.slice(0, 64)}"); send them in the Authorization header`,
      );
    }
  }
}

/** A query string safe to log: the sid and anything credential-like replaced by `[redacted]`. */
export function redactQuery(query: string): string {
  if (!query) return '';
  const params = new URLSearchParams(query);
  const out = new URLSearchParams();
  for (const [name, value] of params) {
    const secret = name.toLowerCase() === 'sid' || credentialLike(name, value);
    out.append(name, secret ? '[redacted]' : value);
  }
  return out.toString();
}
