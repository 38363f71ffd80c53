// GET /admin/emails?tenantId=&status=sent|failed&limit= → { pending, deliveries }: the reply emails
// this deployment sent or gave up on, newest first, from this process's database (what `chatd
// emails ls` asks on the embedded defaults, where PGlite's folder is held by the server).
import { ChatdError } from '../../errors.js';
import { ID_PATTERN, ID_SOURCE } from '../../ids.js';
import type { AdminContext, AdminRoutes } from '../serve.js';

export function emailsAdminEndpoints(admin: AdminRoutes, ctx: AdminContext): void {
  admin.route('GET', '/admin/emails', async (req) => {
    const q = req.query;
    const tenantId = q.get('tenantId') || undefined;
    const status = q.get('status') || undefined;
    const limitText = q.get('limit') || '50';
    if (tenantId !== undefined && !ID_PATTERN.test(tenantId)) {
      throw new ChatdError('validation_failed', `tenantId must match ${ID_SOURCE}`, {
        details: [{ path: 'tenantId', message: 'invalid' }],
      });
    }
    if (status !== undefined && status !== 'sent' && status !== 'failed') {
      throw new ChatdError('validation_failed', 'status must be sent or failed', { details: [{ path: 'status', message: 'invalid' }] });
    }
    if (!/^[0-9]{1,4}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) {
      throw new ChatdError('validation_failed', 'limit must be an integer from 1 to 1000', {
        details: [{ path: 'limit', message: 'invalid' }],
      });
    }
    const { db } = await ctx.services();
    const [pending, deliveries] = await Promise.all([
      db.offline.pendingEmails(),
      db.offline.listDeliveries({ limit: Number(limitText), ...(tenantId ? { tenantId } : {}), ...(status ? { status } : {}) }),
    ]);
    return { body: { pending, deliveries } };
  });
}
