// The visitor token every benchmark client presents: HS256 with the shared secret, iss/aud chatd,
// bound to its session (`sid`), as chatd's api would mint it.
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';

/** `secret`: the JWT secret's bytes. */
export function visitorToken(secret, tenantId, sessionId) {
  return new SignJWT({ tid: tenantId, sid: sessionId, role: 'visitor' })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer('chatd')
    .setAudience('chatd')
    .setSubject(sessionId)
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(secret);
}
