// Configuration reload without a restart: SIGHUP, or `chatd config reload` through the
// admin listener (POST /admin/config/reload), re-reads the config file (and the environment and the
// generated secrets, exactly as at start) and applies to NEW requests: tenants with their API keys,
// allowed origins (CORS and per-tenant checks), identity settings, tokensNotBefore and JWT settings
// (Services.auth.reload swaps them in one step), and webhook endpoints (the dispatcher reads them
// per delivery). Connected sockets stay: they were admitted under the old settings.
//
// An invalid new config changes nothing: it is refused with the file and key path (ConfigError
// from the loader, or the key/tenant an auth or webhook check names). Settings that need a restart
// (listeners, redis/database URLs, limits, …) are compared with the running ones and reported as
// ignored, never half-applied.
import type { Logger } from 'pino';
import type { AdminContext, AdminRoutes } from '../app/serve.js';
import type { Services } from '../app/services.js';
import { createAuth } from '../auth/index.js';
import { corsPolicyFor } from '../auth/origins.js';
import { loadConfig } from '../config/load.js';
import type { Config, Role } from '../config/schema.js';
import { resolveSecrets } from '../config/secrets.js';
import { ChatdError } from '../errors.js';
import type { CorsPolicy } from '../http/router.js';
import { endpointDirectory } from '../webhooks/endpoints.js';
import { reloadWebhookEndpoints } from '../webhooks/start.js';

export interface ReloadResult {
  readonly file: string | null;
  /** What now applies to new requests. */
  readonly applied: string[];
  /** Top-level settings (or tenant retention) that changed but take effect only after a restart. */
  readonly ignored: string[];
  /** Tenant ids after the reload. */
  readonly tenants: string[];
}

/** Raised for a refused reload: the old configuration stays. */
export class ReloadRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Applied by a reload; every other top-level key is restart-only. `log`'s level may come from a flag. */
const RELOADABLE = new Set(['tenants', 'auth', '$schema', 'log']);

export interface ConfigReloader {
  /** CORS for the public listeners: follows the current tenants' origins. */
  readonly cors: CorsPolicy;
  /** The config now in force. */
  current(): Config;
  /** Re-reads and applies the config; rejects with ReloadRefused (nothing changed) when it is unusable. */
  reload(): Promise<ReloadResult>;
  /** Registers POST /admin/config/reload and learns how to reach the process's services. */
  adminEndpoint(admin: AdminRoutes, ctx: AdminContext): void;
  /** How to reach the services when no admin listener runs (a listener mount hands it over). */
  attach(services: () => Promise<Services>): void;
}

export function createConfigReloader(opts: {
  readonly config: Config;
  readonly configFile: string | undefined;
  readonly roles: readonly Role[];
  readonly logger: Logger;
}): ConfigReloader {
  const started = opts.config;
  let current = opts.config;
  let cors = corsPolicyFor(current);
  let services: (() => Promise<Services>) | undefined;
  // A gateway-only process never opens the database: its key set is the one it started with.
  const hasServices = opts.roles.includes('api') || opts.roles.includes('ws');
  let chain: Promise<unknown> = Promise.resolve();

  const load = async (): Promise<{ config: Config; file: string | undefined }> => {
    try {
      const loaded = await loadConfig(opts.configFile ? { file: opts.configFile } : {});
      const { config } = await resolveSecrets(loaded.config, { create: false });
      // Dry runs of everything that can refuse, before anything is swapped.
      createAuth(config);
      endpointDirectory(config);
      return { config, file: loaded.file };
    } catch (err) {
      const e = err as Error;
      throw new ReloadRefused(`config reload refused, the running configuration stays: ${e.message}`);
    }
  };

  const apply = async (): Promise<ReloadResult> => {
    const { config: next, file } = await load();
    const ignored = Object.keys({ ...started, ...next })
      .filter((k) => !RELOADABLE.has(k) && JSON.stringify((started as never)[k]) !== JSON.stringify((next as never)[k]))
      .sort();
    // Retention policies are read by the sweeper at start.
    const retention = (c: Config) => JSON.stringify(c.tenants.map((t) => [t.id, t.retention]));
    if (retention(started) !== retention(next)) ignored.push('tenants[].retention');
    const applied: string[] = ['allowed origins (CORS)'];
    if (hasServices && services) {
      const svc = await services();
      svc.auth.reload(next);
      applied.unshift('tenants', 'API keys', 'identity settings', 'tokensNotBefore', 'business hours and away messages', 'JWT settings');
      if (reloadWebhookEndpoints(next)) applied.push('webhook endpoints');
      else if (next.tenants.some((t) => t.webhooks.length > 0) && !started.tenants.some((t) => t.webhooks.length > 0)) {
        ignored.push('tenants[].webhooks (no dispatcher runs in this process: restart to start one)');
      }
    } else if (JSON.stringify([started.tenants, started.auth]) !== JSON.stringify([next.tenants, next.auth])) {
      ignored.push('tenants and auth (this process runs the gateway alone: restart it to change its keys)');
    }
    cors = corsPolicyFor(next);
    current = next;
    const result: ReloadResult = { file: file ?? null, applied, ignored, tenants: next.tenants.map((t) => t.id) };
    opts.logger.info(result, 'config reloaded');
    if (ignored.length > 0) opts.logger.warn({ ignored }, 'config reload: these settings changed but need a restart');
    return result;
  };

  const reload = (): Promise<ReloadResult> => {
    // One reload at a time: two SIGHUPs in a row apply in order.
    const run = chain.then(apply, apply);
    chain = run.catch(() => undefined);
    return run;
  };

  return {
    cors: {
      allowOrigin: (origin) => cors.allowOrigin(origin),
      get maxAgeSeconds() {
        return cors.maxAgeSeconds;
      },
    },
    current: () => current,
    reload,
    attach(s) {
      services ??= s;
    },
    adminEndpoint(admin, ctx) {
      services ??= ctx.services;
      admin.route('POST', '/admin/config/reload', async () => {
        try {
          return { body: await reload() };
        } catch (err) {
          if (err instanceof ReloadRefused) throw new ChatdError('validation_failed', err.message);
          throw err;
        }
      });
    },
  };
}
