// Erasure and revocation for `chatd erase` and `chatd token revoke` on the embedded defaults, where
// the data lives inside the server process.
import { eraseSubject } from '../../chat/erase.js';
import { ChatdError } from '../../errors.js';
import { ID_PATTERN, USER_ID_PATTERN } from '../../ids.js';
import { revokeSubject } from '../../ops/revocation.js';
import type { AdminContext, AdminRoutes } from '../serve.js';

/** POST /admin/erase and POST /admin/token/revoke: the embedded defaults' doors for the CLI. */
export function opsAdminEndpoints(admin: AdminRoutes, ctx: AdminContext): void {
  admin.route(
    'POST',
    '/admin/erase',
    async (req) => {
      const b = (req.body ?? {}) as Record<string, unknown>;
      const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
      const svc = await ctx.services();
      const report = await eraseSubject(
        { messages: svc.db.messages, erasure: svc.store.erasure },
        { tenantId: str(b.tenantId) ?? '', sessionId: str(b.sessionId), userId: str(b.userId), dryRun: b.dryRun === true },
      );
      return { body: report };
    },
    { json: true },
  );
  admin.route(
    'POST',
    '/admin/token/revoke',
    async (req) => {
      const b = (req.body ?? {}) as Record<string, unknown>;
      const tenantId = typeof b.tenantId === 'string' ? b.tenantId : '';
      const userId = typeof b.userId === 'string' ? b.userId : '';
      if (!ID_PATTERN.test(tenantId) || !USER_ID_PATTERN.test(userId)) {
        throw new ChatdError('validation_failed', 'tenantId and userId are required ([A-Za-z0-9_-] and [A-Za-z0-9_.@-], 1-128 characters)');
      }
      const svc = await ctx.services();
      const r = await revokeSubject({ log: svc.db.revocations, revocations: svc.store.revocations, bus: svc.store.bus }, tenantId, userId);
      svc.revocation.forget(tenantId, userId);
      return { body: r };
    },
    { json: true },
  );
}
