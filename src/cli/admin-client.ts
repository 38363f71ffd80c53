// How a CLI command reaches the running server: with the embedded defaults the store (and PGlite)
// live inside the server process, so commands go through its admin listener with the admin token
// (from the config, or the secrets file the server generated into the data folder).
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { secretsFile } from '../config/secrets.js';
import { createLogger } from '../observability/logger.js';
import { createStore } from '../store/index.js';
import type { Store } from '../store/ports.js';
import { CliError } from './common.js';

/** The admin listener's base URL: `--admin-url`, else admin.host:admin.port from the config. */
export function adminBaseUrl(config: Config, override?: string): string {
  if (override) return override.replace(/\/+$/, '');
  const host = config.admin.host === '0.0.0.0' || config.admin.host === '::' ? '127.0.0.1' : config.admin.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.admin.port}`;
}

/** GET an admin endpoint of the running server; errors become one clear CLI line. */
export function adminGet<T>(config: Config, pathAndQuery: string, opts: { adminUrl?: string; signal?: AbortSignal } = {}): Promise<T> {
  return adminRequest<T>(config, 'GET', pathAndQuery, undefined, opts);
}

/** POST a JSON body to an admin endpoint of the running server (config reload, erase, revoke). */
export function adminPost<T>(config: Config, path: string, body: unknown, opts: { adminUrl?: string } = {}): Promise<T> {
  return adminRequest<T>(config, 'POST', path, body, opts);
}

async function adminRequest<T>(
  config: Config,
  method: 'GET' | 'POST',
  pathAndQuery: string,
  payload: unknown,
  opts: { adminUrl?: string; signal?: AbortSignal },
): Promise<T> {
  if (!config.admin.enabled && !opts.adminUrl) {
    throw new CliError("admin.enabled is false: with the embedded store this command needs the running server's admin listener");
  }
  const token = config.admin.token ?? (await generatedAdminToken(config));
  if (!token) {
    throw new CliError(
      `no admin token: none configured and ${secretsFile(config)} has none (the server writes it at its first start from this folder)`,
    );
  }
  const base = adminBaseUrl(config, opts.adminUrl);
  let res: Response;
  try {
    res = await fetch(`${base}${pathAndQuery}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(payload === undefined ? {} : { body: JSON.stringify(payload) }),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(
      `cannot reach the running chatd's admin listener at ${base} (${cause?.code ?? cause?.message ?? (err as Error).message}); ` +
        'with the embedded store, start `chatd serve` from this folder first (or pass --admin-url), or configure redis.url',
    );
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const msg = (body as { error?: string } | undefined)?.error ?? text.slice(0, 200);
    throw new CliError(`admin listener at ${base} answered ${res.status}: ${msg}`);
  }
  return body as T;
}

/** The admin token the server generated into the data folder, if it did. */
async function generatedAdminToken(config: Config): Promise<string | undefined> {
  try {
    const stored = JSON.parse(await readFile(secretsFile(config), 'utf8')) as { adminToken?: unknown };
    return typeof stored.adminToken === 'string' ? stored.adminToken : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`${secretsFile(config)}: cannot read the generated secrets (${(err as Error).message})`);
  }
}

/**
 * Opens the configured engine for a one-off command, and always closes it. Only for an engine
 * other processes share (engineOf(config).shared): a memory store opened here would be empty, the
 * data lives in the server process (go through its admin listener instead).
 */
export async function withStore<T>(
  config: Config,
  fn: (store: Store) => Promise<T>,
  logger: Logger = createLogger({ level: 'silent', format: 'json' }),
): Promise<T> {
  const store = await createStore(config, logger, 'cli');
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
