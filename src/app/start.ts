// Wires a chatd process: which adapters, which roles, which admin endpoints. The only module that
// knows every concrete implementation.
import type { Logger } from 'pino';
import type { Config, Role } from '../config/schema.js';
import { serve, type RunningServer } from './serve.js';
import type { RoleFactory } from './types.js';
import { createStore } from '../store/index.js';
import { checkDatabase, openDatabase } from '../db/index.js';
import { createApiRole } from '../roles/api/index.js';
import { withWebhooks } from '../webhooks/start.js';
import { createWsRole } from '../roles/ws/index.js';
import { createGatewayRole } from '../roles/gateway/index.js';
import { corsPolicyFor } from '../auth/origins.js';
import { adminEndpoints } from './admin-endpoints.js';
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

export async function startChatd(opts: StartOptions): Promise<RunningServer> {
  return serve({
    config: opts.config,
    roles: opts.roles,
    logger: opts.logger,
    roleFactories: ROLE_FACTORIES,
    serviceFactories: { createStore, openDatabase, checkDatabase },
    cors: corsPolicyFor(opts.config),
    adminEndpoints,
    listenerMounts: [demoMount],
  });
}
