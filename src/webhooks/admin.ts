// Admin endpoints for the dead deliveries of the dispatcher running in this process (the only way
// to reach the memory store's queue; with Redis `chatd webhooks dead|replay` goes to Redis itself):
//   GET  /admin/webhooks/dead?limit=&after=   → { total, dead: [...] } oldest first
//   POST /admin/webhooks/replay { ids?: [...], all?: true } → { replayed: [...], notFound: [...] }
import type { AdminContext, AdminRoutes } from '../app/serve.js';
import { ChatdError } from '../errors.js';
import type { DeadEntry, WebhookQueue } from '../store/ports.js';
import { activeWebhookQueue } from './start.js';
import { STREAM_ID } from './tail.js';

/** What an operator sees of a dead delivery (not the message itself). */
export interface DeadView {
  readonly id: string;
  readonly failedAt: string;
  readonly tenantId: string;
  readonly endpointId: string;
  readonly messageId: string;
  readonly deliveryId: string;
  readonly attempts: number;
  readonly reason: string;
  readonly error: string;
}

export const deadView = (d: DeadEntry): DeadView => ({
  id: d.id,
  failedAt: new Date(d.failedAt).toISOString(),
  tenantId: d.item.tenantId,
  endpointId: d.item.endpointId,
  messageId: d.item.messageId,
  deliveryId: d.item.deliveryId,
  attempts: d.item.attempt,
  reason: d.reason,
  error: d.error,
});

/** Lists dead deliveries: shared by the admin endpoint and the CLI's direct Redis path. */
export async function listDeadDeliveries(queue: WebhookQueue, limit: number, after?: string): Promise<{ total: number; dead: DeadView[] }> {
  const [total, dead] = await Promise.all([queue.deadSize(), queue.listDead(limit, after)]);
  return { total, dead: dead.map(deadView) };
}

/** Replays ids (or all): shared by the admin endpoint and the CLI. */
export async function replayDeadDeliveries(
  queue: WebhookQueue,
  ids: readonly string[] | 'all',
): Promise<{ replayed: string[]; notFound: string[] }> {
  const replayed = await queue.replayDead(ids, Date.now());
  const done = new Set(replayed);
  return { replayed, notFound: ids === 'all' ? [] : ids.filter((i) => !done.has(i)) };
}

function queueOrThrow(): WebhookQueue {
  const q = activeWebhookQueue();
  if (!q) throw new ChatdError('not_found', 'No webhook dispatcher runs in this process (no tenant has webhooks, or it runs no api role)');
  return q;
}

export function webhookAdminEndpoints(admin: AdminRoutes, _ctx: AdminContext): void {
  admin.route('GET', '/admin/webhooks/dead', async (req) => {
    const limitRaw = req.query.get('limit');
    const limit = limitRaw === null ? 100 : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new ChatdError('validation_failed', 'limit must be an integer from 1 to 1000', {
        details: [{ path: 'limit', message: 'out of range' }],
      });
    }
    const after = req.query.get('after') ?? undefined;
    if (after !== undefined && !STREAM_ID.test(after)) {
      throw new ChatdError('validation_failed', 'after must be a dead entry id (ms-seq)', {
        details: [{ path: 'after', message: 'not an entry id' }],
      });
    }
    return { body: await listDeadDeliveries(queueOrThrow(), limit, after) };
  });
  admin.route(
    'POST',
    '/admin/webhooks/replay',
    async (req) => {
      const body = (req.body ?? {}) as { ids?: unknown; all?: unknown };
      const all = body.all === true;
      const ids = body.ids;
      if (all === (ids !== undefined)) {
        throw new ChatdError('validation_failed', 'Give either ids (an array of dead entry ids) or all: true', {
          details: [{ path: 'ids', message: 'ids or all required' }],
        });
      }
      if (
        !all &&
        (!Array.isArray(ids) || ids.length === 0 || ids.length > 1000 || !ids.every((i) => typeof i === 'string' && STREAM_ID.test(i)))
      ) {
        throw new ChatdError('validation_failed', 'ids must be 1 to 1000 dead entry ids (ms-seq)', {
          details: [{ path: 'ids', message: 'invalid' }],
        });
      }
      return { body: await replayDeadDeliveries(queueOrThrow(), all ? 'all' : (ids as string[])) };
    },
    { json: true },
  );
}
