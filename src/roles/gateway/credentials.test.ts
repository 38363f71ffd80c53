import { describe, expect, it } from 'vitest';
import { createApiKeyRegistry } from '../../auth/api-keys.js';
import type { Config } from '../../config/schema.js';
import { ChatdError } from '../../errors.js';
import { checkQueryCredentials, classifyBearer, redactQuery } from '../../auth/bearer.js';
import { namedTenant, precheck } from './credentials.js';
import { ownerOfSid, sidOfOpenPacket } from '../../cluster/sid.js';

const PUB_A = 'ck_pub_tenantA_0123456789abcdef';
const SEC_A = 'ck_sec_tenantA_0123456789abcdef';
const PUB_B = 'ck_pub_tenantB_0123456789abcdef';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJ0aWQiOiJhIn0.c2lnbmF0dXJl';

const keys = createApiKeyRegistry({
  auth: { gatewayApiKey: 'plain-gateway-key' } as Config['auth'],
  tenants: [
    { id: 'a', apiKeys: [{ key: PUB_A }, { key: SEC_A }] },
    { id: 'b', apiKeys: [{ key: PUB_B }] },
  ] as unknown as Config['tenants'],
});
const zeroConfig = createApiKeyRegistry({ auth: { gatewayApiKey: 'ck_pub_zero_0123456789abcdef' } as Config['auth'], tenants: [] });

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(ChatdError);
    return (err as ChatdError).code;
  }
};

describe('classifyBearer', () => {
  it('tells API keys from JWTs by shape', () => {
    expect(classifyBearer(undefined, keys)).toEqual({ type: 'none' });
    expect(classifyBearer('Bearer ', keys)).toEqual({ type: 'none' });
    expect(classifyBearer('Basic abc', keys)).toEqual({ type: 'none' });
    expect(classifyBearer(`Bearer ${PUB_A}`, keys)).toEqual({ type: 'api_key', key: PUB_A });
    expect(classifyBearer(`bearer ${JWT}`, keys)).toEqual({ type: 'jwt', token: JWT });
    // The configured GATEWAY_API_KEY is a key whatever its shape.
    expect(classifyBearer('Bearer plain-gateway-key', keys)).toEqual({ type: 'api_key', key: 'plain-gateway-key' });
    // Neither a known key nor a JWT: treated as a (wrong) key.
    expect(classifyBearer('Bearer nonsense', keys)).toEqual({ type: 'api_key', key: 'nonsense' });
  });
});

describe('precheck', () => {
  const at = (method: string, path: string, authorization: string | undefined, tenantId?: string, k = keys) =>
    code(() => precheck({ method, path, authorization, tenantId }, k));

  it('refuses a missing credential: invalid_api_key on key routes, missing_credentials elsewhere', () => {
    expect(at('POST', '/api/chat/anonymous-token', undefined, 'a')).toBe('invalid_api_key');
    expect(at('POST', '/api/chat/broadcast', undefined, 'a')).toBe('invalid_api_key');
    expect(at('POST', '/webchat/message', undefined, 'a')).toBe('missing_credentials');
    expect(at('GET', '/api/chat/messages', undefined, 'a')).toBe('missing_credentials');
    expect(at('GET', '/api/chat/unknown-route', undefined)).toBe('missing_credentials');
  });

  it('verifies API keys: unknown 401, other tenant 403, publishable where secret is needed 403', () => {
    expect(at('POST', '/api/chat/anonymous-token', 'Bearer ck_pub_nope_0123456789abcdef', 'a')).toBe('invalid_api_key');
    expect(at('POST', '/api/chat/anonymous-token', 'Bearer nonsense', 'a')).toBe('invalid_api_key');
    expect(at('POST', '/api/chat/anonymous-token', `Bearer ${PUB_A}`, 'a')).toBeUndefined();
    expect(at('POST', '/api/chat/anonymous-token', `Bearer ${PUB_A}`, 'b')).toBe('tenant_mismatch');
    expect(at('POST', '/api/chat/anonymous-token', `Bearer ${PUB_B}`, 'a')).toBe('tenant_mismatch');
    expect(at('POST', '/api/chat/agent-token', `Bearer ${PUB_A}`, 'a')).toBe('key_not_allowed');
    expect(at('POST', '/api/chat/agent-token', `Bearer ${SEC_A}`, 'a')).toBeUndefined();
    expect(at('GET', '/api/chat/online-users', `Bearer ${PUB_A}`, 'a')).toBe('key_not_allowed');
    expect(at('GET', '/api/chat/online-users', `Bearer ${SEC_A}`, 'b')).toBe('tenant_mismatch');
    // No tenant named: the key is still verified, the tenant is the api role's to check.
    expect(at('POST', '/api/chat/anonymous-token', `Bearer ${PUB_A}`, undefined)).toBeUndefined();
  });

  it('passes JWT-shaped values on unverified (the api role verifies them)', () => {
    expect(at('POST', '/webchat/message', `Bearer ${JWT}`, 'b')).toBeUndefined();
    expect(at('GET', '/api/chat/online-users', `Bearer ${JWT}`, 'a')).toBeUndefined();
  });

  it('accepts the zero-config GATEWAY_API_KEY for any tenant, and checks nothing on OPTIONS or other paths', () => {
    expect(at('POST', '/api/chat/anonymous-token', 'Bearer ck_pub_zero_0123456789abcdef', 'any-tenant', zeroConfig)).toBeUndefined();
    expect(at('OPTIONS', '/api/chat/anonymous-token', undefined)).toBeUndefined();
    expect(at('GET', '/healthz', undefined)).toBeUndefined();
  });

  it('returns the key grant for per-key rate limits', () => {
    const r = precheck({ method: 'POST', path: '/api/chat/anonymous-token', authorization: `Bearer ${PUB_A}`, tenantId: 'a' }, keys);
    expect(r.key?.tenantId).toBe('a');
    expect(r.key?.keyId).toMatch(/^[0-9a-f]{12}$/);
  });
});

describe('query strings', () => {
  it('refuses credentials by name or by shape, except the Engine.IO sid', () => {
    const q = (s: string, allowSid = false) => code(() => checkQueryCredentials(new URLSearchParams(s), { allowSid }));
    expect(q('tenantId=a&sessionId=s1&limit=10')).toBeUndefined();
    expect(q('token=abc')).toBe('credentials_in_query');
    expect(q('apiKey=abc')).toBe('credentials_in_query');
    expect(q('x=ck_pub_tenantA_0123456789abcdef')).toBe('credentials_in_query');
    expect(q(`t=${JWT}`)).toBe('credentials_in_query');
    expect(q('EIO=4&transport=polling&t=PqJ2Dk0&sid=n1.abcdefghijklmnopqrstuv', true)).toBeUndefined();
    expect(q('url=https://www.example.com/a.b.c&domain=www.example.com')).toBeUndefined();
  });

  it('redacts the sid and credentials for logs', () => {
    const out = redactQuery(`EIO=4&sid=n1.secretsecretsecret&token=${JWT}&tenantId=a`);
    expect(out).not.toContain('secretsecret');
    expect(out).not.toContain(JWT);
    expect(out).toContain('tenantId=a');
    expect(out).toContain('EIO=4');
  });

  it('finds the named tenant in the body, else the query', () => {
    expect(namedTenant({ tenantId: 'x' }, new URLSearchParams('tenantId=y'))).toBe('x');
    expect(namedTenant(undefined, new URLSearchParams('tenantId=y'))).toBe('y');
    expect(namedTenant([1], new URLSearchParams(''))).toBeUndefined();
  });
});

describe('sids', () => {
  it('name their owning node', () => {
    expect(ownerOfSid('node-1.AAAAAAAAAAAAAAAAAAAAAA')).toBe('node-1');
    expect(ownerOfSid('a1b2c3d4.abcdefghijklmnopqrstuv')).toBe('a1b2c3d4');
    expect(ownerOfSid('no-dot-here')).toBeUndefined();
    expect(ownerOfSid('../etc.passwd')).toBeUndefined();
    expect(ownerOfSid(null)).toBeUndefined();
    expect(sidOfOpenPacket('0{"sid":"n1.abcdefghijklmnop","upgrades":[]}')).toBe('n1.abcdefghijklmnop');
    expect(sidOfOpenPacket('40{"sid":"x"}')).toBeUndefined();
  });
});
