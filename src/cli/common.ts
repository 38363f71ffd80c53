// What every command shares: global options, loading config the same way, printing, and turning
// any failure into one clear line on stderr with a non-zero exit.
import type { Command } from 'commander';
import { loadConfig, type LoadedConfig } from '../config/load.js';

const CLEAR_ERRORS = new Set(['ConfigError', 'CliError', 'ListenError', 'NativeUwsError', 'DependencyError', 'ChatdError', 'MigrationError', 'DatabaseLockedError']);

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

export async function loadCliConfig(cmd: Command): Promise<LoadedConfig> {
  const g = globals(cmd);
  return loadConfig({
    ...(g.config ? { file: g.config } : {}),
    overrides: (raw) => {
      if (g.logLevel) {
        const log = (raw.log ??= {}) as Record<string, unknown>;
        log.level = g.logLevel;
      }
    },
  });
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
  const line = (vals: readonly string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  process.stdout.write(`${line(columns.map((c) => c.toUpperCase()))}\n`);
  for (const row of cells) process.stdout.write(`${line(row)}\n`);
}

function formatCell(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
