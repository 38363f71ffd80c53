// GET /admin/conversations?tenantId=&status=&assignee=&limit=&before= → { conversations, nextCursor }:
// a tenant's inbox from this process's database (what `chatd conversations ls` asks on the embedded
// defaults, where PGlite's folder is held by the server). Same rules as the HTTP list with a secret key.
import type { AdminContext, AdminRoutes } from '../serve.js';

export function conversationsAdminEndpoints(admin: AdminRoutes, ctx: AdminContext): void {
  admin.route('GET', '/admin/conversations', async (req) => {
    const q = req.query;
    const opt = (name: string) => q.get(name) || undefined;
    const tenantId = q.get('tenantId') ?? '';
    const limit = opt('limit');
    const { inbox } = await ctx.services();
    const page = await inbox.list(
      { kind: 'secret', tenantId },
      {
        tenantId,
        status: opt('status'),
        assignee: opt('assignee'),
        before: opt('before'),
        limit: limit === undefined ? undefined : /^[0-9]{1,4}$/.test(limit) ? Number(limit) : NaN,
      },
    );
    return { body: page };
  });
}
