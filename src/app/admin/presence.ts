// GET /admin/presence?tenantId=T → { tenantId, users }: who is online, from this process's store;
// with `&agents=1` → { tenantId, agents }: the agents online (agent presence, never online_users).
// What `chatd presence ls [--agents]` asks on the embedded defaults, where the store lives in the server.
import { ChatdError } from '../../errors.js';
import { ID_PATTERN, ID_SOURCE } from '../../ids.js';
import { byConnectedAt } from '../../store/ports.js';
import type { AdminContext, AdminRoutes } from '../serve.js';

export function presenceAdminEndpoints(admin: AdminRoutes, ctx: AdminContext): void {
  admin.route('GET', '/admin/presence', async (req) => {
    const tenantId = req.query.get('tenantId') ?? '';
    if (!ID_PATTERN.test(tenantId)) {
      throw new ChatdError('validation_failed', `tenantId is required and must match ${ID_SOURCE}`, {
        details: [{ path: 'tenantId', message: 'invalid' }],
      });
    }
    const { store } = await ctx.services();
    if (req.query.get('agents') === '1') return { body: { tenantId, agents: await store.agentPresence.online(tenantId) } };
    return { body: { tenantId, users: byConnectedAt(await store.presence.list(tenantId)) } };
  });
}
