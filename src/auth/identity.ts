// Identity (DESIGN.md "Credentials"): a `userId` in a payload is a claim. It is verified when the
// token carries it (`sub` of a user or agent token) or when the tenant's identity secret validates
// `userHash` = hex HMAC-SHA256(identitySecret, userId). Per tenant, `identityVerification`:
// off (a claimed userId is ignored), optional (kept, `verified: false`), required (refused).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ChatdError } from '../errors.js';
import type { Principal } from './jwt.js';
import { assertUserId } from '../ids.js';
import type { TenantPolicy } from './tenants.js';

export interface Identity {
  /** The userId to store (claimed or verified); undefined for an anonymous visitor. */
  readonly userId: string | undefined;
  readonly verified: boolean;
}

/** `userHash` for a userId: what a tenant's backend computes and hands to its widget. */
export const userHashOf = (secret: string, userId: string) => createHmac('sha256', secret).update(userId, 'utf8').digest('hex');

function hashMatches(secret: string, userId: string, presented: string): boolean {
  const expected = Buffer.from(userHashOf(secret, userId), 'utf8');
  const given = Buffer.from(presented.toLowerCase(), 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Decides who a visitor or user is, from the token and the payload's `userId`/`userHash`. Throws
 * 403 `identity_invalid` (hash or token subject mismatch) or `identity_required`.
 * Agents are always their token's subject (never asked here).
 */
export function resolveIdentity(
  principal: Pick<Principal, 'role' | 'subject'>,
  tenant: TenantPolicy,
  claim: { userId?: string | undefined; userHash?: string | undefined },
): Identity {
  const userId = claim.userId || undefined;
  if (userId !== undefined) assertUserId('userId', userId);
  if (principal.subject && (principal.role === 'user' || principal.role === 'agent')) {
    if (userId !== undefined && userId !== principal.subject) {
      throw new ChatdError('identity_invalid', "userId does not match the token's subject");
    }
    return { userId: principal.subject, verified: true };
  }
  if (tenant.identityVerification === 'off') {
    return { userId: undefined, verified: false };
  }
  if (userId !== undefined && claim.userHash && tenant.identitySecret) {
    if (!hashMatches(tenant.identitySecret, userId, claim.userHash)) throw new ChatdError('identity_invalid');
    return { userId, verified: true };
  }
  if (tenant.identityVerification === 'required') {
    throw new ChatdError(
      'identity_required',
      userId === undefined
        ? 'A verified userId is required: send userId and userHash, or a user token'
        : 'userHash is required with userId',
    );
  }
  return { userId, verified: false };
}
