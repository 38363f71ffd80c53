// Wires a chatd process: which adapters, which roles, which admin endpoints. The only module that
// knows every concrete implementation.
import type { Logger } from 'pino';
import type { Config, Role } from '../config/schema.js';
import { serve, type RunningServer } from './serve.js';
import type { RoleFactory } from '../roles/role-context.js';
import { createStore } from '../store/index.js';
import { checkDatabase, openDatabase } from '../db/index.js';
import { createApiRole } from '../roles/api/index.js';
import { withWebhooks } from '../webhooks/start.js';
import { createWsRole } from '../roles/ws/index.js';
import { createGatewayRole } from '../roles/gateway/index.js';
import { createConfigReloader, type ReloadResult } from '../ops/reload.js';
import { adminEndpoints } from './admin/index.js';
import { demoMount } from '../demo/mount.js';

export const ROLE_FACTORIES: Readonly<Record<Role, RoleFactory>> = {
  gateway: createGatewayRole,
  // The webhook dispatcher runs with the api role when tenants have endpoints.
  api: withWebhooks(createApiRole),
  ws: createWsRole,
};

export interface StartOptions {
  readonly config: Config;
  readonly roles: readonly Role[];
  readonly logger: Logger;
  readonly configFile?: string | undefined;
}

/** A running chatd that can re-read its config (SIGHUP, `chatd config reload`). */
export interface ReloadableServer extends RunningServer {
  reload(): Promise<ReloadResult>;
}

export async function startChatd(opts: StartOptions): Promise<ReloadableServer> {
  const reloader = createConfigReloader({ config: opts.config, configFile: opts.configFile, roles: opts.roles, logger: opts.logger });
  const server = await serve({
    config: opts.config,
    roles: opts.roles,
    logger: opts.logger,
    roleFactories: ROLE_FACTORIES,
    serviceFactories: { createStore, openDatabase, checkDatabase },
    cors: reloader.cors,
    adminEndpoints: [...adminEndpoints, (admin, ctx) => reloader.adminEndpoint(admin, ctx)],
    listenerMounts: [demoMount, (_listener, _router, ctx) => reloader.attach(ctx.services)],
  });
  return Object.assign(server, { reload: () => reloader.reload() });
}
