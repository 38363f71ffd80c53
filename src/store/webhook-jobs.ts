// How webhook jobs and retries are written down, shared by both webhook queue adapters
// (memory/memory-webhook-queue.ts, redis/redis-webhook-queue.ts) and the admin tools: the retry
// set's member encoding, the jobs stream's fields, the order of stream ids. The port itself
// (WebhookQueue) is in ports.ts.
import type { RetryItem, WebhookJob } from './ports.js';

/** Serialises a retry item as the retry set's member (one canonical JSON text). */
export const encodeRetry = (item: RetryItem): string => JSON.stringify(item);

export function decodeRetry(member: string): RetryItem | undefined {
  try {
    const v = JSON.parse(member) as RetryItem;
    return v && v.v === 1 && typeof v.deliveryId === 'string' && typeof v.endpointId === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A retry item made from a dead entry for replay: attempt count kept, window restarted. */
export const replayItem = (item: RetryItem, now: number): RetryItem => ({ ...item, firstAttemptAt: now });

/** Parses a `meta:webhook_jobs` entry's fields (DESIGN.md); undefined when a field is missing. */
export function parseJobFields(id: string, fields: readonly string[] | Record<string, string> | null): WebhookJob | undefined {
  if (!fields) return undefined;
  const f: Record<string, string> = Array.isArray(fields) ? {} : { ...(fields as Record<string, string>) };
  if (Array.isArray(fields)) for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const { type, tenantId, sessionId, messageId, createdAt, payload } = f;
  if ((type !== 'message.created' && type !== 'conversation.updated') || !tenantId || !messageId || payload === undefined) return undefined;
  return { id, type, tenantId, sessionId: sessionId ?? '', messageId, createdAt: createdAt ?? '', payload };
}

/** Orders two stream ids (`ms-seq`). */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}
