// JWTs (DESIGN.md "Credentials"), minted and verified with jose.
//
// - chatd's own tokens: `iss` = auth.issuer, `aud` = auth.audience, signed by the first key of
//   `auth.jwtKeys` that can sign (HS256 secret, or an RS256/EdDSA private key file) or by
//   `auth.jwtSecret` (HS256, no `kid`). Every key verifies; the header's `kid` picks the key and
//   each key pins its algorithm, so `alg: none` or an HS256 token signed with a public key are
//   refused by construction.
// - A tenant's own user tokens: `iss` = the tenant id, `aud` = auth.audience, verified with the
//   tenant's `jwtVerificationKey` (a shared secret = HS256, or a PEM public key = RS256/EdDSA).
//   They may only carry role `user` and must carry `sub`.
// - Claims: `jti`, `tid` (tenant), `sid` (session, optional), `sub` (user), `role`
//   (visitor|user|agent), `name` (agents, optional); `exp`/`nbf` with auth.clockToleranceSeconds.
// - Revocation: a tenant's `tokensNotBefore` refuses tokens issued (`iat`) before it; an optional
//   `isRevoked` hook (agent revocation) is asked after the signature checks out.
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  randomUUID,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { Config } from '../config/schema.js';
import { ChatdError } from '../errors.js';
import { ID_PATTERN, USER_ID_PATTERN, type TenantDirectory } from './tenants.js';

export type PrincipalRole = 'visitor' | 'user' | 'agent';
export const PRINCIPAL_ROLES: readonly PrincipalRole[] = ['visitor', 'user', 'agent'];

/** Who a verified token speaks for. Both doors (HTTP, Socket.IO) act on this and nothing else. */
export interface Principal {
  readonly tenantId: string;
  readonly role: PrincipalRole;
  /** `sub`: the user (role user: verified identity) or the agent. */
  readonly subject?: string;
  /** `sid`: the session the token was minted for; a token with it acts on that session only. */
  readonly sessionId?: string;
  /** `jti`: the token's id (bindings are stored under it). Synthesised from the token for tenant tokens without one. */
  readonly jti: string;
  /** `exp`, seconds since the epoch. */
  readonly expiresAt: number;
  /** `iat`, seconds since the epoch (0 when absent). */
  readonly issuedAt: number;
  /** An agent's display name (`name` claim). */
  readonly name?: string;
  /** Who signed it: chatd, or the tenant with its own key. */
  readonly issuer: 'chatd' | 'tenant';
}

export interface MintRequest {
  readonly tenantId: string;
  readonly role: PrincipalRole;
  readonly subject?: string;
  readonly sessionId?: string;
  readonly name?: string;
  readonly ttlSeconds: number;
}

export interface MintedToken {
  readonly token: string;
  /** Seconds until expiry (the guide's `expiresIn`). */
  readonly expiresIn: number;
  readonly jti: string;
  /** `exp`, seconds since the epoch. */
  readonly expiresAt: number;
}

export interface TokenService {
  mint(req: MintRequest): Promise<MintedToken>;
  /** Verifies a token; throws ChatdError `token_expired`, `token_invalid` or `token_revoked`. */
  verify(token: string | undefined): Promise<Principal>;
}

export interface TokenServiceOptions {
  /** Asked after a token verified; true refuses it with `token_revoked` (agent revocation). */
  readonly isRevoked?: (p: Principal) => Promise<boolean> | boolean;
  /** Reads key files (tests replace it). */
  readonly readFile?: (path: string) => string;
}

type Alg = 'HS256' | 'RS256' | 'EdDSA';
interface VerifyKey {
  readonly alg: Alg;
  readonly key: Uint8Array | KeyObject;
  /** The HS256 secret imported once as a WebCrypto key (jose re-imports raw bytes on every call). */
  imported?: Promise<CryptoKey>;
  /** The HS256 secret as a node:crypto key, for the synchronous fast path (`fastHs256`). */
  hmac?: KeyObject;
}

/** The key in the form jose uses fastest: HS256 secrets as a CryptoKey imported once (~4× faster). */
function usable(k: VerifyKey): Promise<CryptoKey | KeyObject> | KeyObject {
  if (k.alg !== 'HS256') return k.key as KeyObject;
  k.imported ??= crypto.subtle.importKey('raw', new Uint8Array(k.key as Uint8Array), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
    'verify',
  ]);
  return k.imported;
}
interface SignKey extends VerifyKey {
  readonly kid: string | undefined;
}

const enc = new TextEncoder();
const MAX_TOKEN_LENGTH = 8192;

function asymmetricAlg(key: KeyObject, where: string): Alg {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'ed25519':
      return 'EdDSA';
    default:
      throw new Error(`${where}: unsupported key type ${key.asymmetricKeyType} (use RSA for RS256 or Ed25519 for EdDSA)`);
  }
}

/** The verification key of a tenant's own user tokens: a PEM public key, else an HS256 secret. */
function tenantKey(material: string, tenantId: string): VerifyKey {
  if (material.includes('-----BEGIN')) {
    const key = createPublicKey(material);
    return { alg: asymmetricAlg(key, `tenant ${tenantId} jwtVerificationKey`), key };
  }
  return { alg: 'HS256', key: enc.encode(material) };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const decodeSegment = (segment: string): unknown => JSON.parse(strictUtf8.decode(Buffer.from(segment, 'base64url')));
/**
 * True when `segment` is the one base64url spelling of its bytes. Node's decoder (like atob and
 * jose's) ignores the unused low bits of the last character, padding and stray characters, so
 * without this one signature has several spellings: altered copies of a token would verify, and a
 * tenant token without `jti` (identified by its digest) could be multiplied into distinct tokens.
 */
const canonicalBase64url = (segment: string): boolean =>
  /^[A-Za-z0-9_-]*$/.test(segment) && Buffer.from(segment, 'base64url').toString('base64url') === segment;
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const HS256_HEADER_KEYS = new Set(['alg', 'typ', 'kid']);

/** A compact JWS split once: both decoded JSON parts, and what the signature covers. */
interface SplitJwt {
  readonly header: Record<string, unknown>;
  readonly claims: Record<string, unknown>;
  readonly signingInput: string;
  readonly signature: string;
}

/**
 * Splits and decodes a compact JWT; undefined unless it has three parts, two JSON objects and a
 * canonically encoded signature (the other two parts are covered by the signature).
 */
function splitJwt(token: string): SplitJwt | undefined {
  const dot1 = token.indexOf('.');
  const dot2 = token.lastIndexOf('.');
  if (dot1 <= 0 || dot2 === dot1 || token.indexOf('.', dot1 + 1) !== dot2) return undefined;
  if (!canonicalBase64url(token.slice(dot2 + 1))) return undefined;
  try {
    const header = decodeSegment(token.slice(0, dot1));
    const claims = decodeSegment(token.slice(dot1 + 1, dot2));
    if (!isPlainObject(header) || !isPlainObject(claims)) return undefined;
    return { header, claims, signingInput: token.slice(0, dot2), signature: token.slice(dot2 + 1) };
  } catch {
    return undefined;
  }
}

interface Hs256Options {
  readonly issuer: string;
  readonly audience: string;
  readonly clockTolerance: number;
}

/**
 * The common case of every connect and request — an HS256 token — checked synchronously with
 * node:crypto: jose verifies through WebCrypto, whose async round trip costs ~100–170 µs of CPU
 * per token here against ~10–20 µs for one HMAC (5,000 tokens on one core, `jwtVerify` against
 * `createHmac`). True only when the header is exactly `{alg: HS256[, typ][, kid]}`, the signature
 * matches and every check jose makes with the same options passes (iss, aud, exp required, nbf,
 * iat a number); false means jose decides, so every refusal (and anything unusual) stays jose's.
 */
function hs256Valid(jwt: SplitJwt, key: KeyObject, opts: Hs256Options): boolean {
  const { header, claims } = jwt;
  if (header.alg !== 'HS256' || jwt.signature.length !== 43) return false;
  for (const k in header) if (!HS256_HEADER_KEYS.has(k)) return false;
  const signature = Buffer.from(jwt.signature, 'base64url');
  const expected = createHmac('sha256', key).update(jwt.signingInput).digest();
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return false;
  if (claims.iss !== opts.issuer) return false;
  const aud = claims.aud;
  if (!(aud === opts.audience || (Array.isArray(aud) && aud.includes(opts.audience)))) return false;
  const now = Math.floor(Date.now() / 1000);
  const { exp, nbf, iat } = claims;
  if (typeof exp !== 'number' || exp <= now - opts.clockTolerance) return false;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + opts.clockTolerance)) return false;
  if (iat !== undefined && typeof iat !== 'number') return false;
  return true;
}

/** The claims of `token` when `hs256Valid` accepts it, else undefined (for tests and benchmarks). */
export function fastHs256(token: string, key: KeyObject, opts: Hs256Options): JWTPayload | undefined {
  const jwt = splitJwt(token);
  return jwt && hs256Valid(jwt, key, opts) ? (jwt.claims as JWTPayload) : undefined;
}

const invalid = (why: string) => new ChatdError('token_invalid', `Invalid token: ${why}`);

export function createTokenService(config: Pick<Config, 'auth'>, tenants: TenantDirectory, opts: TokenServiceOptions = {}): TokenService {
  const auth = config.auth;
  const read = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const byKid = new Map<string, VerifyKey>();
  let signer: SignKey | undefined;

  for (const k of auth.jwtKeys) {
    let verify: VerifyKey;
    let sign: SignKey | undefined;
    if (k.algorithm === 'HS256') {
      verify = { alg: 'HS256', key: enc.encode(k.secret!) };
      sign = { ...verify, kid: k.kid };
    } else {
      const pub = createPublicKey(read(k.publicKeyFile!));
      const alg = asymmetricAlg(pub, `auth.jwtKeys kid ${k.kid}`);
      if (alg !== k.algorithm) throw new Error(`auth.jwtKeys kid ${k.kid}: the key is ${alg}, not ${k.algorithm}`);
      verify = { alg, key: pub };
      if (k.privateKeyFile) sign = { alg, key: createPrivateKey(read(k.privateKeyFile)), kid: k.kid };
    }
    byKid.set(k.kid, verify);
    signer ??= sign;
  }
  const kidless: VerifyKey | undefined = auth.jwtSecret ? { alg: 'HS256', key: enc.encode(auth.jwtSecret) } : undefined;
  if (!signer && kidless) signer = { ...kidless, kid: undefined };

  const tenantKeys = new Map<string, VerifyKey>();
  const keyOfTenant = (tenantId: string): VerifyKey | undefined => {
    const t = tenants.get(tenantId);
    if (!t?.jwtVerificationKey) return undefined;
    let k = tenantKeys.get(tenantId);
    if (!k) tenantKeys.set(tenantId, (k = tenantKey(t.jwtVerificationKey, tenantId)));
    return k;
  };

  return {
    async mint(req) {
      if (!signer) throw new ChatdError('internal', 'No JWT signing key is configured');
      const now = Math.floor(Date.now() / 1000);
      const jti = randomUUID();
      const claims: JWTPayload & Record<string, unknown> = { tid: req.tenantId, role: req.role };
      if (req.sessionId) claims.sid = req.sessionId;
      if (req.name) claims.name = req.name;
      let jwt = new SignJWT(claims)
        .setProtectedHeader(signer.kid ? { alg: signer.alg, kid: signer.kid, typ: 'JWT' } : { alg: signer.alg, typ: 'JWT' })
        .setIssuer(auth.issuer)
        .setAudience(auth.audience)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + req.ttlSeconds)
        .setJti(jti);
      if (req.subject) jwt = jwt.setSubject(req.subject);
      const token = await jwt.sign(await usable(signer));
      return { token, expiresIn: req.ttlSeconds, jti, expiresAt: now + req.ttlSeconds };
    },

    async verify(token) {
      if (!token) throw new ChatdError('missing_credentials', 'Missing token: send Authorization: Bearer <token>');
      if (token.length > MAX_TOKEN_LENGTH) throw invalid('too long');
      // Decoded once, here; the signature is checked below before any claim is trusted.
      const jwt = splitJwt(token);
      if (!jwt) throw invalid('malformed');
      const header = jwt.header;
      const unverified = jwt.claims;
      let key: VerifyKey | undefined;
      let issuer: string;
      let kind: Principal['issuer'];
      if (unverified.iss === auth.issuer) {
        key = header.kid !== undefined ? byKid.get(String(header.kid)) : kidless;
        issuer = auth.issuer;
        kind = 'chatd';
      } else if (typeof unverified.tid === 'string' && unverified.iss === unverified.tid) {
        key = keyOfTenant(unverified.tid);
        issuer = unverified.tid;
        kind = 'tenant';
      } else {
        throw invalid('unexpected iss');
      }
      if (!key) throw invalid('unknown signing key');

      let payload: JWTPayload | undefined;
      if (key.alg === 'HS256') {
        key.hmac ??= createSecretKey(key.key as Uint8Array);
        if (hs256Valid(jwt, key.hmac, { issuer, audience: auth.audience, clockTolerance: auth.clockToleranceSeconds }))
          payload = jwt.claims as JWTPayload;
      }
      if (!payload) {
        try {
          ({ payload } = await jwtVerify(token, await usable(key), {
            algorithms: [key.alg],
            issuer,
            audience: auth.audience,
            clockTolerance: auth.clockToleranceSeconds,
            requiredClaims: ['exp'],
          }));
        } catch (err) {
          if (err instanceof joseErrors.JWTExpired) throw new ChatdError('token_expired');
          if (err instanceof joseErrors.JWTClaimValidationFailed) throw invalid(`${err.claim} check failed`);
          if (err instanceof joseErrors.JOSEAlgNotAllowed) throw invalid('algorithm not allowed');
          if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw invalid('signature mismatch');
          throw invalid('cannot be verified');
        }
      }

      const tid = payload.tid;
      if (typeof tid !== 'string' || !ID_PATTERN.test(tid)) throw invalid('tid missing or malformed');
      const tenant = tenants.get(tid);
      if (!tenant) throw invalid('unknown tenant');
      const role = (payload.role ?? (kind === 'tenant' ? 'user' : undefined)) as PrincipalRole | undefined;
      if (!role || !PRINCIPAL_ROLES.includes(role)) throw invalid('role missing or unknown');
      if (kind === 'tenant' && role !== 'user') throw invalid("a tenant's own tokens may only carry role user");
      const sub = payload.sub;
      if (sub !== undefined && (typeof sub !== 'string' || !USER_ID_PATTERN.test(sub))) throw invalid('sub malformed');
      if ((role === 'agent' || role === 'user') && !sub) throw invalid(`role ${role} needs sub`);
      const sid = payload.sid;
      if (sid !== undefined && (typeof sid !== 'string' || !ID_PATTERN.test(sid))) throw invalid('sid malformed');
      let jti = payload.jti;
      if (jti !== undefined && (typeof jti !== 'string' || jti.length === 0 || jti.length > 128)) throw invalid('jti malformed');
      if (!jti) {
        if (kind === 'chatd') throw invalid('jti missing');
        // A tenant's token minted without jti: its own digest identifies it just as well.
        jti = createHash('sha256').update(token).digest('base64url').slice(0, 32);
      }
      const iat = typeof payload.iat === 'number' ? payload.iat : 0;
      if (tenant.tokensNotBefore !== undefined && iat < tenant.tokensNotBefore) throw new ChatdError('token_revoked');
      const name = typeof payload.name === 'string' ? payload.name.slice(0, 200) : undefined;

      const principal: Principal = Object.freeze({
        tenantId: tid,
        role,
        ...(sub ? { subject: sub } : {}),
        ...(sid ? { sessionId: sid } : {}),
        jti,
        expiresAt: payload.exp!,
        issuedAt: iat,
        ...(name ? { name } : {}),
        issuer: kind,
      });
      if (opts.isRevoked && (await opts.isRevoked(principal))) throw new ChatdError('token_revoked');
      return principal;
    },
  };
}

/** Seconds a token has left (at least 1): the TTL of anything stored on its behalf, such as a binding. */
export const remainingSeconds = (p: Pick<Principal, 'expiresAt'>, nowMs = Date.now()) =>
  Math.max(1, p.expiresAt - Math.floor(nowMs / 1000));

/** Parses `--ttl`-style durations: `3600`, `90s`, `15m`, `1h`, `7d` → seconds. */
export function parseTtl(text: string): number {
  const m = /^([0-9]+)(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new Error(`invalid duration "${text}": use e.g. 3600, 90s, 15m, 1h, 7d`);
  const n = Number(m[1]);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return n * unit;
}
