// What every command shares: global options, loading config the same way, printing, and turning
// any failure into one clear line on stderr with a non-zero exit.
import type { Command } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { ROLES, type Role } from '../config/schema.js';

const CLEAR_ERRORS = new Set([
  'ConfigError',
  'CliError',
  'ListenError',
  'NativeUwsError',
  'DependencyError',
  'ChatdError',
  'MigrationError',
  'DatabaseLockedError',
]);

export interface GlobalOptions {
  config?: string;
  logLevel?: string;
  json?: boolean;
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The options of the root program (`--config`, `--log-level`), from any subcommand. */
export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

export interface CliOverrides {
  /** The roles this process runs (`serve --role`, `config check --role`): which listener `--port`/`PORT` sets. */
  readonly roles?: readonly Role[];
  /** `serve --port`: wins over `PORT`, which wins over the file. */
  readonly port?: number;
  /** `serve --admin-port`: wins over `admin.port` in the file. */
  readonly adminPort?: number;
}

/**
 * Loads the config as every command does. Precedence of the public port: `--port` > `PORT` in the
 * environment (what platforms set) > the config file > the default; it sets the port of the one
 * public listener of `roles` (server.port for all or gateway, roles.api.port / roles.ws.port alone).
 */
export async function loadCliConfig(cmd: Command, extra: CliOverrides = {}): Promise<LoadedConfig> {
  const g = globals(cmd);
  const env = process.env;
  const envPort = env.PORT !== undefined && env.PORT !== '' ? parsePort(env.PORT, 'PORT') : undefined;
  const port = extra.port ?? envPort;
  const roles = extra.roles ?? ROLES;
  return loadConfig({
    ...(g.config ? { file: g.config } : {}),
    overrides: (raw) => {
      const section = (name: string) => {
        const s = raw[name];
        if (s && typeof s === 'object' && !Array.isArray(s)) return s as Record<string, unknown>;
        return (raw[name] = {}) as Record<string, unknown>;
      };
      if (g.logLevel) section('log').level = g.logLevel;
      if (port !== undefined) {
        const key = publicPortKey(roles, extra.port !== undefined ? '--port' : 'PORT');
        const target = key.length === 2 ? section(key[0]!) : ((section(key[0]!)[key[1]!] ??= {}) as Record<string, unknown>);
        target.port = port;
      }
      if (extra.adminPort !== undefined) section('admin').port = extra.adminPort;
    },
  });
}

/** The config path of the port `--port`/`PORT` sets: the one public listener of these roles. */
function publicPortKey(roles: readonly Role[], what: string): string[] {
  // The gateway with other roles shares its listener (config/listeners.ts).
  if (roles.includes('gateway')) return ['server', 'port'];
  if (roles.length === 1) return ['roles', roles[0]!, 'port'];
  throw new CliError(
    `${what} sets the port of one public listener, and --role ${roles.join(',')} opens ${roles.length}: set their ports in the config file`,
  );
}

/** A TCP port from a flag or the environment (0 picks a free one). */
export function parsePort(value: string, what: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535)
    throw new CliError(`${what} must be a port number from 0 to 65535 (got "${value}")`);
  return Number(value);
}

/** Runs a command action; errors become one line on stderr and exit code 1 (or the error's). */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void) {
  return async (...args: A): Promise<void> => {
    try {
      await fn(...args);
    } catch (err) {
      const e = err as Error;
      // Our own errors are written for the operator: print their message alone.
      const message = CLEAR_ERRORS.has(e?.name) ? e.message : `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`;
      process.stderr.write(`chatd: ${message}\n`);
      process.exitCode = err instanceof CliError ? err.exitCode : 1;
    }
  };
}

/** Prints rows as an aligned text table (human output). */
export function printTable(rows: readonly Record<string, unknown>[], columns: readonly string[]): void {
  const cells = rows.map((r) => columns.map((c) => formatCell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: readonly string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(columns.map((c) => c.toUpperCase()))}\n`);
  for (const row of cells) process.stdout.write(`${line(row)}\n`);
}

function formatCell(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
