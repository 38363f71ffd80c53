// Admin endpoints (on the admin listener, behind the admin token), one registration per module.
import type { AdminContext, AdminRoutes } from './serve.js';
import { webhookAdminEndpoints } from '../webhooks/admin.js';
import { presenceAdminEndpoints } from '../cli/presence.js';
import { webhookTailAdminEndpoints } from '../cli/webhooks.js';
import { opsAdminEndpoints } from '../cli/ops.js';

export const adminEndpoints: ((admin: AdminRoutes, ctx: AdminContext) => void)[] = [
  webhookAdminEndpoints,
  presenceAdminEndpoints,
  webhookTailAdminEndpoints,
  opsAdminEndpoints,
];
