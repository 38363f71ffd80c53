// Connection-state-recovery ids (`pid` in the CONNECT ack). A pid is a bearer secret that lets a
// reconnecting client resume its stream, so it is bound to the authenticated identity: a MAC over
// a fresh nonce and the identity, under a key every node derives from the same secret. No state
// is kept: the stream offset the client sends says where to resume, and any node can verify.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { randomId } from './random-id.js';

export class RecoveryPids {
  private readonly key: Buffer;

  /** `secret`: shared by every node (e.g. the JWT secret); a label separates this use of it. */
  constructor(secret: string | Buffer) {
    this.key = createHmac('sha256', secret).update('chatd/recovery-pid/v1').digest();
  }

  /** A new pid for `identity` (e.g. `tenant\0stream\0subject`). */
  mint(identity: string): string {
    const nonce = randomId(12);
    return `${nonce}.${this.mac(nonce, identity)}`;
  }

  /** Whether `pid` was minted by a node of this deployment for exactly this identity. */
  verify(pid: string, identity: string): boolean {
    if (typeof pid !== 'string' || pid.length > 128) return false;
    const dot = pid.indexOf('.');
    if (dot <= 0) return false;
    const expected = Buffer.from(this.mac(pid.slice(0, dot), identity));
    const given = Buffer.from(pid.slice(dot + 1));
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private mac(nonce: string, identity: string): string {
    return createHmac('sha256', this.key).update(nonce).update('\0').update(identity).digest('base64url').slice(0, 32);
  }
}
