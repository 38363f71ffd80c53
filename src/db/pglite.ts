// The embedded PostgreSQL (PGlite, PostgreSQL compiled to WebAssembly) in a local folder. Its
// construction lives here and only here: the single binary passes its embedded WebAssembly and data
// assets through `extra` (or `globalThis.__chatdPgliteAssets`), since PGlite cannot find its files
// next to a bundle.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { runInitChild } from './init-child.js';

declare global {
  /**
   * Set by the single binary before the database opens: PGlite options that replace file lookups
   * (`pgliteWasmModule`, `initdbWasmModule`, `fsBundle`, optionally `loadDataDir` for a
   * pre-initialised folder). Spread into every PGlite this process creates.
   */

  var __chatdPgliteAssets: Partial<PGliteOptions> | undefined;
  /**
   * Set by the single binary, which cannot run `node -e`: initialises a folder in a child process
   * of itself, with its embedded assets (the same memory reason as initialiseInChild).
   */

  var __chatdPgliteInitInChild: ((dir: string, postgresqlconf: PGliteOptions['postgresqlconf']) => Promise<void>) | undefined;
}

/**
 * Memory settings for an embedded chat store. PGlite runs PostgreSQL single-user in this process,
 * so every buffer is our RSS: PostgreSQL's default 128 MB of shared buffers is sized for a server;
 * 16 MB brings a reopened PGlite from ~260 MB to ~165 MB of RSS (measured; chatd figures in docs/deployment.md "Storage").
 */
export const PGLITE_CONF: readonly string[] = [
  'shared_buffers=16MB',
  'wal_buffers=1MB',
  'work_mem=2MB',
  'maintenance_work_mem=16MB',
  'temp_buffers=2MB',
  // PGlite rewrites postgresql.conf with exactly these lines at each start, so the settings initdb
  // would have written must be repeated here.
  'timezone=UTC',
  'log_timezone=UTC',
  "datestyle='iso, mdy'",
  "default_text_search_config='pg_catalog.english'",
  'min_wal_size=32MB',
  'max_wal_size=256MB',
];

/** Whether `dir` already holds an initialised database (a later start, not the slow first one). */
export function isInitialised(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'PG_VERSION'));
}

/**
 * Opens (and on first use initialises, ~5 s) the PGlite database in `dir`. The caller holds the
 * folder's lock (dir-lock.ts). `extra` options win over the defaults; the SEA assets hook wins over
 * both, except `loadDataDir`, which only applies to an empty folder (PGlite refuses it otherwise).
 */
export async function createPglite(dir: string, extra: Partial<PGliteOptions> = {}): Promise<PGlite> {
  fs.mkdirSync(dir, { recursive: true });
  const assets = { ...(globalThis.__chatdPgliteAssets ?? {}) };
  const options: PGliteOptions = {
    dataDir: dir,
    postgresqlconf: [...PGLITE_CONF],
    ...extra,
    ...assets,
  };
  if (isInitialised(dir)) delete options.loadDataDir;
  else if (!options.loadDataDir) {
    const inChild = globalThis.__chatdPgliteInitInChild ?? (globalThis.__chatdPgliteAssets ? undefined : initialiseInChild);
    if (inChild && !(await copyTemplate(dir, options.postgresqlconf, inChild))) await inChild(dir, options.postgresqlconf);
  }
  const pg = new PGlite(options);
  await pg.waitReady;
  return pg;
}

/**
 * Runs PGlite's initdb in a short-lived child process. initdb needs ~800 MB at its peak, and
 * memory a WebAssembly instance grew is not given back while its process lives: initialised in
 * process, a first start would keep ~750 MB of RSS for the life of the server (~355 MB even from a
 * terminated worker thread); from a child that exits, chatd itself stays at a later start's figure
 * (docs/deployment.md "Storage"). Falls back to the caller initialising in process where PGlite cannot be
 * loaded by path or `node` is not our executable (the single binary).
 */
async function initialiseInChild(dir: string, postgresqlconf: PGliteOptions['postgresqlconf']): Promise<void> {
  let moduleUrl: string;
  try {
    moduleUrl = pathToFileURL(createRequire(import.meta.url).resolve('@electric-sql/pglite')).href;
  } catch {
    return;
  }
  const code = `
    const { moduleUrl, dir, postgresqlconf } = JSON.parse(process.env.CHATD_PGLITE_INIT);
    const { PGlite } = await import(moduleUrl);
    const pg = new PGlite({ dataDir: dir, postgresqlconf });
    await pg.waitReady;
    await pg.close();`;
  await runInitChild(
    ['--input-type=module', '-e', code],
    { ...process.env, CHATD_PGLITE_INIT: JSON.stringify({ moduleUrl, dir, postgresqlconf }) },
    dir,
  );
}

type Initialise = (dir: string, postgresqlconf: PGliteOptions['postgresqlconf']) => Promise<void>;

/**
 * The folder a fresh initdb is kept in for this PGlite version and these settings, beside the
 * installed packages (`node_modules/.cache/chatd-pglite/…`, where build tools keep their caches);
 * undefined where PGlite is not installed by path (the single binary).
 */
export function templateDir(postgresqlconf: PGliteOptions['postgresqlconf']): string | undefined {
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  } catch {
    return undefined;
  }
  const at = entry.lastIndexOf(`${path.sep}node_modules${path.sep}`);
  if (at < 0) return undefined;
  const modules = entry.slice(0, at + '/node_modules'.length);
  let version = 'unknown';
  try {
    version = (JSON.parse(fs.readFileSync(path.join(modules, '@electric-sql', 'pglite', 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return undefined;
  }
  const settings = createHash('sha256')
    .update(JSON.stringify(postgresqlconf ?? []))
    .digest('hex')
    .slice(0, 12);
  return path.join(modules, '.cache', 'chatd-pglite', `${version}-${settings}`);
}

/**
 * A first start copies a kept initdb result instead of running initdb (~5 s of WebAssembly) again:
 * the template is made once per installation, by the first start that needs it (initialised in a
 * folder of its own and renamed into place, so two starts at once never see half of one), and
 * copied with PG_VERSION last, so a copy cut short is not taken for a database. Resolves false,
 * leaving initdb to the caller, where no template can be kept (no cache folder, not writable).
 */
export async function copyTemplate(
  dir: string,
  postgresqlconf: PGliteOptions['postgresqlconf'],
  initialise: Initialise,
  template = templateDir(postgresqlconf),
): Promise<boolean> {
  if (!template) return false;
  try {
    if (!isInitialised(template)) {
      const tmp = `${template}.${process.pid}-${randomBytes(4).toString('hex')}`;
      fs.mkdirSync(tmp, { recursive: true });
      try {
        await initialise(tmp, postgresqlconf);
        fs.renameSync(tmp, template);
      } catch (err) {
        fs.rmSync(tmp, { recursive: true, force: true });
        // Another start put its template in place first: use that one.
        if (!isInitialised(template)) throw err;
      }
    }
    fs.cpSync(template, dir, { recursive: true, filter: (src) => src !== path.join(template, 'PG_VERSION') });
    fs.copyFileSync(path.join(template, 'PG_VERSION'), path.join(dir, 'PG_VERSION'));
    return true;
  } catch {
    return false;
  }
}
