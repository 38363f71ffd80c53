import { describe, expect, it } from 'vitest';
import { tenant } from '../../test/helpers/tenants.js';
import type { Config } from '../config/schema.js';
import { type ChatdError } from '../errors.js';
import { createApiKeyRegistry, hashApiKey } from './api-keys.js';
import { resolveIdentity, userHashOf } from './identity.js';
import { createTenantDirectory, tenantAllowsOrigin } from './tenants.js';

const PUB_A = 'ck_pub_aaaaaaaaaaaaaaaaaaaa';
const SEC_A = 'ck_sec_aaaaaaaaaaaaaaaaaaaa';
const SEC_B = 'ck_sec_bbbbbbbbbbbbbbbbbbbb';
const GW = 'ck_pub_gateway0000000000000';

const auth = (over: Partial<Config['auth']> = {}) => ({ jwtKeys: [], issuer: 'chatd', audience: 'chatd', ...over }) as Config['auth'];

const codeOf = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as ChatdError).code;
  }
};

describe('API keys', () => {
  const reg = createApiKeyRegistry({
    tenants: [
      tenant('a', { apiKeys: [{ key: PUB_A }, { hash: hashApiKey(SEC_A), kind: 'secret', name: 'backend' }] }),
      tenant('b', { apiKeys: [{ key: SEC_B }] }),
    ],
    auth: auth({ gatewayApiKey: GW, defaultTenant: 'b' }),
  });

  it('finds keys given as key or sha256 hash, with their kind and tenant', () => {
    expect(reg.lookup(PUB_A)).toMatchObject({ tenantId: 'a', kind: 'publishable' });
    expect(reg.lookup(SEC_A)).toMatchObject({ tenantId: 'a', kind: 'secret', name: 'backend' });
    expect(reg.lookup(SEC_B)).toMatchObject({ tenantId: 'b', kind: 'secret' });
    expect(reg.lookup(GW)).toMatchObject({ tenantId: 'b', kind: 'publishable' });
    expect(reg.lookup('ck_pub_nope')).toBeUndefined();
    expect(reg.lookup('')).toBeUndefined();
    expect(reg.lookup(undefined)).toBeUndefined();
    expect(reg.lookup(PUB_A)!.keyId).toMatch(/^[0-9a-f]{12}$/);
    expect(JSON.stringify(reg.lookup(SEC_A))).not.toContain(SEC_A);
  });

  it('authorize: unknown key 401, other tenant 403 tenant_mismatch, publishable where secret is needed 403', () => {
    expect(codeOf(() => reg.authorize('wrong', 'a'))).toBe('invalid_api_key');
    expect(codeOf(() => reg.authorize(undefined, 'a'))).toBe('invalid_api_key');
    expect(codeOf(() => reg.authorize(PUB_A, 'b'))).toBe('tenant_mismatch');
    expect(codeOf(() => reg.authorize(PUB_A, 'a', 'secret'))).toBe('key_not_allowed');
    expect(codeOf(() => reg.authorize(SEC_A, 'a', 'secret'))).toBe('ok');
    expect(codeOf(() => reg.authorize(GW, 'a'))).toBe('tenant_mismatch');
    expect(codeOf(() => reg.authorize(GW, 'b'))).toBe('ok');
  });

  it('with no tenants, GATEWAY_API_KEY is a publishable key for any tenant, with a warning', () => {
    const open = createApiKeyRegistry({ tenants: [], auth: auth({ gatewayApiKey: GW }) });
    expect(open.authorize(GW, 'anything')).toMatchObject({ tenantId: '*', kind: 'publishable' });
    expect(codeOf(() => open.authorize(GW, 'x', 'secret'))).toBe('key_not_allowed');
    expect(open.warnings.join()).toMatch(/any tenant/);
    expect(open.warnings.join()).not.toContain(GW);
  });

  it('refuses one key configured for two tenants', () => {
    expect(() =>
      createApiKeyRegistry({
        tenants: [tenant('a', { apiKeys: [{ key: PUB_A }] }), tenant('b', { apiKeys: [{ key: PUB_A }] })],
        auth: auth(),
      }),
    ).toThrow(/tenants "a" and "b"/);
  });
});

describe('tenants and identity', () => {
  const dir = createTenantDirectory({
    tenants: [
      tenant('shop', {
        allowedOrigins: ['https://shop.example'],
        identityVerification: 'required',
        identitySecret: 'identity-secret-0123456789',
      }),
      tenant('blog', { identityVerification: 'off' }),
    ],
  });

  it('knows configured tenants only; origins per tenant', () => {
    expect(dir.get('nope')).toBeUndefined();
    const shop = dir.get('shop')!;
    expect(tenantAllowsOrigin(shop, 'https://shop.example')).toBe(true);
    expect(tenantAllowsOrigin(shop, 'https://evil.example')).toBe(false);
    expect(tenantAllowsOrigin(shop, undefined)).toBe(true);
    const zero = createTenantDirectory({ tenants: [] });
    expect(zero.get('whatever')).toMatchObject({ configured: false });
    expect(zero.get('bad id!')).toBeUndefined();
  });

  it('verifies userHash, refuses a wrong one, requires it when the tenant says so, ignores userId when off', () => {
    const shop = dir.get('shop')!;
    const visitor = { role: 'visitor' as const };
    const hash = userHashOf('identity-secret-0123456789', 'u1');
    expect(resolveIdentity(visitor, shop, { userId: 'u1', userHash: hash })).toEqual({ userId: 'u1', verified: true });
    expect(resolveIdentity(visitor, shop, { userId: 'u1', userHash: hash.toUpperCase() })).toEqual({ userId: 'u1', verified: true });
    expect(codeOf(() => resolveIdentity(visitor, shop, { userId: 'u2', userHash: hash }))).toBe('identity_invalid');
    expect(codeOf(() => resolveIdentity(visitor, shop, { userId: 'u1' }))).toBe('identity_required');
    expect(codeOf(() => resolveIdentity(visitor, shop, {}))).toBe('identity_required');
    expect(resolveIdentity({ role: 'user', subject: 'u9' }, shop, {})).toEqual({ userId: 'u9', verified: true });
    expect(codeOf(() => resolveIdentity({ role: 'user', subject: 'u9' }, shop, { userId: 'u1' }))).toBe('identity_invalid');
    expect(resolveIdentity(visitor, dir.get('blog')!, { userId: 'u1' })).toEqual({ userId: undefined, verified: false });
    const open = createTenantDirectory({ tenants: [] }).get('t')!;
    expect(resolveIdentity(visitor, open, { userId: 'u1' })).toEqual({ userId: 'u1', verified: false });
    expect(codeOf(() => resolveIdentity(visitor, open, { userId: 'bad id' }))).toBe('invalid_id');
  });
});
