// How roles plug into the server: each role gets a narrow context (its router, the shared
// services it asks for) and returns what the server needs to run and stop it.
import type { Logger } from 'pino';
import type { Config, Role } from '../config/schema.js';
import type { HttpRouter } from '../http/router.js';
import type { TemplatedApp } from '../uws.js';
import type { Services } from '../app/services.js';
import type { Store } from '../store/ports.js';

export interface ReadinessCheck {
  readonly name: string;
  /** Resolves when ready; rejects (or throws) with a reason otherwise. */
  check(): Promise<void>;
}

export interface RoleContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly nodeId: string;
  /** The roles running in this process (with `all`, the api and ws roles are in process). */
  readonly roles: readonly Role[];
  /** The uWS app of this role's listener (shared by every role with `all`). */
  readonly app: TemplatedApp;
  readonly router: HttpRouter;
  /** Shared services (store, database, auth), created once per process on first use. */
  services(): Promise<Services>;
  /**
   * The store alone (the same one `services()` uses), without opening the database: for roles that
   * need only the distributed engine (the gateway's shared rate limits).
   */
  store(): Promise<Store>;
  /** Fills in after listen: the port this role's listener got. */
  readonly port: () => number;
}

export interface RoleInstance {
  readonly readiness: readonly ReadinessCheck[];
  /** Stop accepting new work (SIGTERM): close transports so clients fail over. */
  drain(): Promise<void>;
  /** Release everything; called after drain or on failure. */
  close(): Promise<void>;
}

export type RoleFactory = (ctx: RoleContext) => Promise<RoleInstance>;
