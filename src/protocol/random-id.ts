// Random ids for every connection (Engine.IO sid, Socket.IO sid, recovery-pid nonce) drawn from a
// pooled buffer of the same CSPRNG, refilled 4 KB at a time: one `randomBytes` call per id was
// 3–4% of the accept path's CPU (`npm run bench -- accept --profile`). Node's randomUUID pools
// the same way.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/** `bytes` (≤ 256) fresh random bytes as base64url. No byte is ever handed out twice. */
export function randomId(bytes: number): string {
  if (bytes > 256) throw new RangeError('randomId: at most 256 bytes');
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + bytes);
  offset += bytes;
  return id;
}
