import { createHmac, createSecretKey, generateKeyPairSync } from 'node:crypto';
import { SignJWT, UnsecuredJWT, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { tenant } from '../../test/helpers/tenants.js';
import type { Config } from '../config/schema.js';
import { ChatdError } from '../errors.js';
import { createTokenService, fastHs256, parseTtl, type TokenService } from './jwt.js';
import { createTenantDirectory } from './tenants.js';

const SECRET = 'test-secret-0123456789abcdef';
const enc = new TextEncoder();

type AuthCfg = Config['auth'];
function authConfig(over: Partial<AuthCfg> = {}): Pick<Config, 'auth'> {
  return {
    auth: {
      jwtSecret: SECRET,
      jwtKeys: [],
      issuer: 'chatd',
      audience: 'chatd',
      visitorTokenTtlSeconds: 3600,
      agentTokenTtlSeconds: 28800,
      clockToleranceSeconds: 5,
      ...over,
    } as AuthCfg,
  };
}
const tenants = (list: Config['tenants'] = []) => createTenantDirectory({ tenants: list });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (err) {
    expect(err).toBeInstanceOf(ChatdError);
    return (err as ChatdError).code;
  }
}

const now = () => Math.floor(Date.now() / 1000);
/** A hand-made token with chatd's claims, for attacks. */
function forged(over: { iss?: string; aud?: string; exp?: number; nbf?: number; tid?: string; role?: string; iat?: number } = {}) {
  return new SignJWT({ tid: over.tid ?? 'acme', role: over.role ?? 'visitor' })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(over.iss ?? 'chatd')
    .setAudience(over.aud ?? 'chatd')
    .setIssuedAt(over.iat ?? now())
    .setNotBefore(over.nbf ?? now())
    .setExpirationTime(over.exp ?? now() + 600)
    .setJti('j1');
}

describe('TokenService (HS256 with auth.jwtSecret)', () => {
  const svc: TokenService = createTokenService(authConfig(), tenants());

  it('mints a token whose claims verify back into the same principal', async () => {
    const m = await svc.mint({ tenantId: 'acme', role: 'agent', subject: 'alice@x.io', name: 'Alice', ttlSeconds: 120 });
    expect(m.expiresIn).toBe(120);
    const p = await svc.verify(m.token);
    expect(p).toMatchObject({ tenantId: 'acme', role: 'agent', subject: 'alice@x.io', name: 'Alice', jti: m.jti, issuer: 'chatd' });
    expect(p.expiresAt).toBe(m.expiresAt);
    const v = await svc.verify((await svc.mint({ tenantId: 'acme', role: 'visitor', sessionId: 's1', ttlSeconds: 60 })).token);
    expect(v).toMatchObject({ role: 'visitor', sessionId: 's1' });
    expect(v.subject).toBeUndefined();
  });

  it('refuses the token-attack list with the right codes', async () => {
    const good = await forged().sign(enc.encode(SECRET));
    expect(await codeOf(svc.verify(good))).toBe('accepted');
    // alg none
    const none = new UnsecuredJWT({ tid: 'acme', role: 'agent', sub: 'x' })
      .setIssuer('chatd')
      .setAudience('chatd')
      .setExpirationTime('1h')
      .setJti('n')
      .encode();
    expect(await codeOf(svc.verify(none))).toBe('token_invalid');
    // wrong secret
    expect(await codeOf(svc.verify(await forged().sign(enc.encode('another-secret-0123456789'))))).toBe('token_invalid');
    // expired (beyond the 5 s tolerance)
    expect(await codeOf(svc.verify(await forged({ exp: now() - 60, nbf: now() - 120, iat: now() - 120 }).sign(enc.encode(SECRET))))).toBe(
      'token_expired',
    );
    // not yet valid
    expect(await codeOf(svc.verify(await forged({ nbf: now() + 300 }).sign(enc.encode(SECRET))))).toBe('token_invalid');
    // wrong iss / aud
    expect(await codeOf(svc.verify(await forged({ iss: 'evil' }).sign(enc.encode(SECRET))))).toBe('token_invalid');
    expect(await codeOf(svc.verify(await forged({ aud: 'other' }).sign(enc.encode(SECRET))))).toBe('token_invalid');
    // bad role, bad tenant id, agent without sub
    expect(await codeOf(svc.verify(await forged({ role: 'admin' }).sign(enc.encode(SECRET))))).toBe('token_invalid');
    expect(await codeOf(svc.verify(await forged({ tid: 'bad tenant!' }).sign(enc.encode(SECRET))))).toBe('token_invalid');
    expect(await codeOf(svc.verify(await forged({ role: 'agent' }).sign(enc.encode(SECRET))))).toBe('token_invalid');
    // HS512 with the right secret: the algorithm is pinned
    const hs512 = await new SignJWT({ tid: 'acme', role: 'visitor' })
      .setProtectedHeader({ alg: 'HS512' })
      .setIssuer('chatd')
      .setAudience('chatd')
      .setExpirationTime('1h')
      .setJti('x')
      .sign(enc.encode(SECRET));
    expect(await codeOf(svc.verify(hs512))).toBe('token_invalid');
    // garbage and missing
    expect(await codeOf(svc.verify('not.a.jwt'))).toBe('token_invalid');
    expect(await codeOf(svc.verify(undefined))).toBe('missing_credentials');
  });

  it('tolerates clock skew within auth.clockToleranceSeconds', async () => {
    const skewed = await forged({ nbf: now() + 3 }).sign(enc.encode(SECRET));
    expect(await codeOf(svc.verify(skewed))).toBe('accepted');
  });
});

describe('TokenService with tenants', () => {
  it('refuses an unknown tenant once tenants are configured, and tokens issued before tokensNotBefore', async () => {
    const svc = createTokenService(
      authConfig(),
      tenants([tenant('acme', { tokensNotBefore: new Date(Date.now() - 60_000).toISOString() })]),
    );
    expect(await codeOf(svc.verify(await forged({ tid: 'other' }).sign(enc.encode(SECRET))))).toBe('token_invalid');
    expect(await codeOf(svc.verify(await forged({ iat: now() - 3600, nbf: now() - 3600 }).sign(enc.encode(SECRET))))).toBe('token_revoked');
    expect(await codeOf(svc.verify(await forged().sign(enc.encode(SECRET))))).toBe('accepted');
  });

  it("verifies a tenant's own user tokens with its key, and only as role user", async () => {
    const tenantSecret = 'acme-own-secret-0123456789';
    const svc = createTokenService(authConfig(), tenants([tenant('acme', { jwtVerificationKey: tenantSecret })]));
    const own = (role?: string) =>
      new SignJWT(role ? { tid: 'acme', role } : { tid: 'acme' })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('acme')
        .setAudience('chatd')
        .setSubject('u-42')
        .setExpirationTime('10m')
        .sign(enc.encode(tenantSecret));
    const p = await svc.verify(await own());
    expect(p).toMatchObject({ tenantId: 'acme', role: 'user', subject: 'u-42', issuer: 'tenant' });
    expect(p.jti).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await codeOf(svc.verify(await own('agent')))).toBe('token_invalid');
    // The tenant's key cannot sign chatd's own tokens.
    expect(await codeOf(svc.verify(await forged().sign(enc.encode(tenantSecret))))).toBe('token_invalid');
  });

  it('asks the revocation hook', async () => {
    const svc = createTokenService(authConfig(), tenants(), { isRevoked: (p) => p.subject === 'gone' });
    const t = await svc.mint({ tenantId: 'acme', role: 'agent', subject: 'gone', ttlSeconds: 60 });
    expect(await codeOf(svc.verify(t.token))).toBe('token_revoked');
  });
});

/** A token service signing with a fresh key pair of `type`, read from (in-memory) key files. */
function asymmetricService(type: 'rsa' | 'ed25519') {
  const pair = type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  const files: Record<string, string> = {
    'priv.pem': pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    'pub.pem': pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
  const algorithm = type === 'rsa' ? ('RS256' as const) : ('EdDSA' as const);
  const svc = createTokenService(
    authConfig({ jwtSecret: undefined, jwtKeys: [{ kid: 'a1', privateKeyFile: 'priv.pem', publicKeyFile: 'pub.pem', algorithm }] }),
    tenants(),
    { readFile: (p) => files[p]! },
  );
  return { svc, files, algorithm };
}

describe('key rotation and asymmetric keys', () => {
  it('the first key signs with its kid; every key verifies; a removed kid is refused', async () => {
    const keys = [
      { kid: 'k2', secret: 'second-secret-0123456789abc', algorithm: 'HS256' as const },
      { kid: 'k1', secret: 'first-secret-0123456789abcd', algorithm: 'HS256' as const },
    ];
    const old = createTokenService(authConfig({ jwtSecret: undefined, jwtKeys: [keys[1]!] }), tenants());
    const rotated = createTokenService(authConfig({ jwtSecret: undefined, jwtKeys: keys }), tenants());
    const retired = createTokenService(authConfig({ jwtSecret: undefined, jwtKeys: [keys[0]!] }), tenants());
    const oldToken = (await old.mint({ tenantId: 'acme', role: 'visitor', ttlSeconds: 60 })).token;
    const newToken = (await rotated.mint({ tenantId: 'acme', role: 'visitor', ttlSeconds: 60 })).token;
    expect(JSON.parse(Buffer.from(newToken.split('.')[0]!, 'base64url').toString()).kid).toBe('k2');
    expect(await codeOf(rotated.verify(oldToken))).toBe('accepted');
    expect(await codeOf(rotated.verify(newToken))).toBe('accepted');
    expect(await codeOf(retired.verify(oldToken))).toBe('token_invalid');
  });

  it.each(['rsa', 'ed25519'] as const)(
    'signs and verifies with %s key files; an HS256 token signed with the public key is refused',
    async (type) => {
      const { svc, files, algorithm } = asymmetricService(type);
      const t = await svc.mint({ tenantId: 'acme', role: 'agent', subject: 'bob', ttlSeconds: 60 });
      expect(JSON.parse(Buffer.from(t.token.split('.')[0]!, 'base64url').toString()).alg).toBe(algorithm);
      expect((await svc.verify(t.token)).subject).toBe('bob');
      const confused = await new SignJWT({ tid: 'acme', role: 'agent', sub: 'x' })
        .setProtectedHeader({ alg: 'HS256', kid: 'a1' })
        .setIssuer('chatd')
        .setAudience('chatd')
        .setExpirationTime('1h')
        .setJti('c')
        .sign(enc.encode(files['pub.pem']!));
      expect(await codeOf(svc.verify(confused))).toBe('token_invalid');
    },
  );
});

describe('fastHs256 (the synchronous HS256 path)', () => {
  const key = createSecretKey(enc.encode(SECRET));
  const opts = { issuer: 'chatd', audience: 'chatd', clockTolerance: 5 };
  const sign = (b: SignJWT, secret = SECRET) => b.sign(enc.encode(secret));

  it('returns exactly the claims jose returns for a good token', async () => {
    const token = await sign(forged().setSubject('u1'));
    const ours = fastHs256(token, key, opts);
    const { payload } = await jwtVerify(token, enc.encode(SECRET), {
      algorithms: ['HS256'],
      issuer: 'chatd',
      audience: 'chatd',
      requiredClaims: ['exp'],
    });
    expect(ours).toEqual(payload);
    // An audience list that holds ours is accepted, as by jose.
    expect(fastHs256(await sign(forged().setAudience(['other', 'chatd'])), key, opts)?.aud).toEqual(['other', 'chatd']);
  });

  it('leaves every token jose would refuse (or anything unusual) to jose', async () => {
    const good = await sign(forged());
    const [h, p, sig] = good.split('.') as [string, string, string];
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    // Correctly signed with the right secret, whatever the header says.
    const signed = (header: object, body: object) => {
      const input = `${b64(header)}.${b64(body)}`;
      return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
    };
    expect(fastHs256(signed({ alg: 'HS256', typ: 'JWT' }, claims), key, opts)).toEqual(claims);
    const refused: Record<string, string> = {
      'another secret': await sign(forged(), 'another-secret-0123456789abcdef'),
      'a flipped signature bit': `${h}.${p}.${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`,
      'a payload swapped under the signature': `${h}.${b64({ ...claims, role: 'agent' })}.${sig}`,
      'alg none': new UnsecuredJWT({ tid: 'acme', role: 'visitor' })
        .setIssuer('chatd')
        .setAudience('chatd')
        .setExpirationTime('1h')
        .encode(),
      'a crit header': signed({ alg: 'HS256', crit: ['x'], x: 1 }, claims),
      'b64 false': signed({ alg: 'HS256', b64: false, crit: ['b64'] }, claims),
      'an unknown header field': signed({ alg: 'HS256', jku: 'https://evil.example/keys' }, claims),
      'alg HS512': signed({ alg: 'HS512' }, claims),
      expired: await sign(forged({ exp: now() - 60 })),
      'nbf in the future': await sign(forged({ nbf: now() + 60 })),
      'another issuer': await sign(forged({ iss: 'evil' })),
      'another audience': await sign(forged({ aud: 'evil' })),
      'no exp': await new SignJWT({ tid: 'acme', role: 'visitor' })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('chatd')
        .setAudience('chatd')
        .sign(enc.encode(SECRET)),
      'iat a string': await new SignJWT({ tid: 'acme', role: 'visitor', iat: 'yesterday' } as never)
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('chatd')
        .setAudience('chatd')
        .setExpirationTime('1h')
        .sign(enc.encode(SECRET)),
      'a payload that is an array': `${h}.${b64([1])}.${sig}`,
      'two segments': `${h}.${p}`,
    };
    for (const [what, token] of Object.entries(refused)) {
      expect(fastHs256(token, key, opts), what).toBeUndefined();
    }
    // Within the clock tolerance, as jose.
    expect(fastHs256(await sign(forged({ exp: now() - 2 })), key, opts)).toBeDefined();
  });

  it("the service still gives jose's codes for what the fast path leaves to it", async () => {
    const svc = createTokenService(authConfig(), tenants());
    const good = await sign(forged());
    const [h, p, sig] = good.split('.') as [string, string, string];
    expect(await codeOf(svc.verify(`${h}.${p}.${sig.slice(0, 42)}${sig[42] === 'A' ? 'Q' : 'A'}`))).toBe('token_invalid');
    expect(await codeOf(svc.verify(await sign(forged({ exp: now() - 60 }))))).toBe('token_expired');
    expect(await codeOf(svc.verify(good))).toBe('accepted');
  });
});

describe('parseTtl', () => {
  it('reads seconds and units', () => {
    expect(parseTtl('3600')).toBe(3600);
    expect(parseTtl('15m')).toBe(900);
    expect(parseTtl('1h')).toBe(3600);
    expect(parseTtl('2d')).toBe(172800);
    expect(() => parseTtl('1 week')).toThrow(/invalid duration/);
  });
});

/**
 * Every copy of `token` whose last segment decodes to the same bytes but is spelled differently:
 * base64url's last character carries bits no byte uses, and lenient decoders ignore them.
 */
function nonCanonicalCopies(token: string): string[] {
  const dot = token.lastIndexOf('.');
  const sig = token.slice(dot + 1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const bytes = Buffer.from(sig, 'base64url');
  const copies: string[] = [];
  for (const c of alphabet) {
    const altered = sig.slice(0, -1) + c;
    if (altered !== sig && Buffer.from(altered, 'base64url').equals(bytes)) copies.push(`${token.slice(0, dot + 1)}${altered}`);
  }
  // Padding and stray characters that decoders skip are other spellings of the same bytes.
  copies.push(`${token}=`, `${token.slice(0, dot + 1)}${sig.slice(0, 10)}=${sig.slice(10)}`);
  return copies;
}

describe('only the canonical encoding of a signature verifies', () => {
  it('an HS256 token (the fast path) and its altered copies', async () => {
    const svc = createTokenService(authConfig(), tenants());
    const { token } = await svc.mint({ tenantId: 'acme', role: 'visitor', ttlSeconds: 60 });
    const copies = nonCanonicalCopies(token);
    expect(copies.length).toBeGreaterThan(2);
    expect(await codeOf(svc.verify(token))).toBe('accepted');
    for (const copy of copies) expect(await codeOf(svc.verify(copy)), copy).toBe('token_invalid');
    const key = createSecretKey(enc.encode(SECRET));
    for (const copy of copies) expect(fastHs256(copy, key, { issuer: 'chatd', audience: 'chatd', clockTolerance: 5 })).toBeUndefined();
  });

  it('a tenant token without jti (its digest is its id) cannot be multiplied into distinct tokens', async () => {
    const tenantSecret = 'tenant-secret-0123456789abcdef';
    const svc = createTokenService(authConfig(), tenants([tenant('acme', { jwtVerificationKey: tenantSecret })]));
    const token = await new SignJWT({ tid: 'acme' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('acme')
      .setAudience('chatd')
      .setSubject('user-1')
      .setExpirationTime('1h')
      .sign(enc.encode(tenantSecret));
    expect((await svc.verify(token)).subject).toBe('user-1');
    for (const copy of nonCanonicalCopies(token)) expect(await codeOf(svc.verify(copy)), copy).toBe('token_invalid');
  });

  it.each(['rsa', 'ed25519'] as const)('a %s token (verified by jose) and its altered copies', async (type) => {
    const { svc } = asymmetricService(type);
    const { token } = await svc.mint({ tenantId: 'acme', role: 'visitor', ttlSeconds: 60 });
    expect(await codeOf(svc.verify(token))).toBe('accepted');
    const copies = nonCanonicalCopies(token);
    expect(copies.length).toBeGreaterThan(2);
    for (const copy of copies) expect(await codeOf(svc.verify(copy)), copy).toBe('token_invalid');
  });
});
