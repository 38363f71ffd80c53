// Admin endpoints (on the admin listener, behind the admin token), one registration per module.
// The CLI's commands reach the running server through them when its state lives in the process
// (the memory store, PGlite); the CLI itself only calls them (src/cli/admin-client.ts).
import { webhookAdminEndpoints } from '../../webhooks/admin.js';
import type { AdminContext, AdminRoutes } from '../serve.js';
import { conversationsAdminEndpoints } from './conversations.js';
import { emailsAdminEndpoints } from './emails.js';
import { opsAdminEndpoints } from './ops.js';
import { presenceAdminEndpoints } from './presence.js';
import { webhookTailAdminEndpoints } from './webhook-jobs.js';

export const adminEndpoints: ((admin: AdminRoutes, ctx: AdminContext) => void)[] = [
  webhookAdminEndpoints,
  presenceAdminEndpoints,
  webhookTailAdminEndpoints,
  opsAdminEndpoints,
  conversationsAdminEndpoints,
  emailsAdminEndpoints,
];
