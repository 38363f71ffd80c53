// Entry point of the single binary (dist/chatd, a Node.js Single Executable Application). It hands
// the CLI the two things a bundle cannot carry as plain JavaScript, then runs it:
//  - uWebSockets.js's native addon, embedded as a SEA asset, written to a content-hashed file in a
//    cache folder and dlopen'ed (src/uws.ts picks it up from globalThis.__chatdUws);
//  - PGlite's wasm modules and data bundle, embedded as assets (src/db/pglite.ts spreads
//    globalThis.__chatdPgliteAssets into the PGlite options), and a way to create a database folder
//    in a child process of the binary (globalThis.__chatdPgliteInitInChild).
// Both are lazy: `chatd --version` or `chatd config check` neither write nor compile anything, and
// a host where no cache folder allows executing files can still run the commands that do not serve.
import sea from 'node:sea';
// Not src/db/pglite.ts (that would bundle PGlite into the entry): the small module it shares.
import { runInitChild } from '../../src/db/init-child.js';
import { cacheCandidates, loadNativeFromCache, type LoadedNative } from './native-cache.js';

/** The addon's asset name (`uws_linux_x64_115.node`), set by scripts/package/build.mjs (esbuild define). */
declare const __CHATD_UWS_ASSET__: string;

/**
 * What the entry set up, on globalThis.__chatdEmbedded for diagnostics (a debugger, or a status
 * endpoint that wants to show it); `/proc/<pid>/maps` shows the same file mapped.
 */
export interface EmbeddedInfo {
  uws?: { file: string; skipped: readonly string[]; written: boolean };
}

const g = globalThis as {
  __chatdUws?: unknown;
  __chatdPgliteAssets?: Record<string, unknown>;
  __chatdPgliteInitInChild?: (dir: string, postgresqlconf: readonly string[] | undefined) => Promise<void>;
  __chatdEmbedded?: EmbeddedInfo;
};

/** Set on a child of the binary that only initialises an embedded database folder, then exits. */
const PGLITE_INIT_ENV = 'CHATD_INTERNAL_PGLITE_INIT';

/** An asset's bytes without a copy (they stay in the executable's mapped memory). */
const rawAsset = (key: string) => sea.getRawAsset(key) as ArrayBuffer;

function installUws(): void {
  let loaded: LoadedNative<unknown> | undefined;
  Object.defineProperty(g, '__chatdUws', {
    configurable: true,
    enumerable: false,
    get() {
      if (!loaded) {
        loaded = loadNativeFromCache({
          bytes: new Uint8Array(rawAsset(__CHATD_UWS_ASSET__)),
          name: __CHATD_UWS_ASSET__.replace(/\.node$/, ''),
          candidates: cacheCandidates(process.env, process.execPath),
          verify: (m): m is unknown => typeof (m as { getParts?: unknown }).getParts === 'function',
          what: `the native uWebSockets.js module (${__CHATD_UWS_ASSET__}) embedded in ${process.execPath}`,
        });
        g.__chatdEmbedded = { ...g.__chatdEmbedded, uws: { file: loaded.file, skipped: loaded.skipped, written: loaded.written } };
        if (loaded.skipped.length > 0) {
          // Before the logger exists: one line per skipped folder so an operator sees why the cache moved.
          for (const s of loaded.skipped) process.stderr.write(`chatd: native module cache: skipped ${s}\n`);
          process.stderr.write(`chatd: native module cache: using ${loaded.file}\n`);
        }
      }
      return loaded.exports;
    },
  });
}

function installPgliteAssets(): void {
  // The ~10 MB pglite.wasm takes a few hundred ms to compile. For the commands that open the
  // database, compilation starts now on V8's background threads; the getters (read when PGlite is
  // constructed, by a spread) take the finished module, or compile synchronously if it is not ready.
  const opensDatabase = process.argv.slice(2).some((a) => a === 'serve' || a === 'migrate') || process.env[PGLITE_INIT_ENV] !== undefined;
  const early = (key: string) => {
    const slot: { module?: WebAssembly.Module } = {};
    if (opensDatabase) {
      WebAssembly.compile(rawAsset(key)).then(
        (m) => (slot.module ??= m),
        () => undefined, // the synchronous compile in the getter reports the error
      );
    }
    return () => (slot.module ??= new WebAssembly.Module(rawAsset(key)));
  };
  const wasm = early('pglite.wasm');
  const initdb = early('initdb.wasm');
  let data: Blob | undefined;
  const assets = {};
  Object.defineProperties(assets, {
    pgliteWasmModule: { enumerable: true, get: wasm },
    initdbWasmModule: { enumerable: true, get: initdb },
    fsBundle: { enumerable: true, get: () => (data ??= sea.getAssetAsBlob('pglite.data')) },
  });
  g.__chatdPgliteAssets = assets;
}

/**
 * The first start's initdb peaks near 800 MB, and memory a WebAssembly instance grew is never given
 * back while its process lives; it also blocks the event loop for seconds. src/db/pglite.ts runs it
 * in a `node -e` child, which a single binary cannot do: it runs itself instead, with PGLITE_INIT_ENV.
 */
function installPgliteInitInChild(): void {
  g.__chatdPgliteInitInChild = (dir, postgresqlconf) =>
    runInitChild([], { ...process.env, [PGLITE_INIT_ENV]: JSON.stringify({ dir, postgresqlconf }) }, dir);
}

/** The child's whole job: create the database folder with the embedded assets. */
async function initialisePglite(spec: string): Promise<void> {
  const { dir, postgresqlconf } = JSON.parse(spec) as { dir: string; postgresqlconf?: string[] };
  const { PGlite } = await import('@electric-sql/pglite');
  const pg = new PGlite({ dataDir: dir, ...(postgresqlconf ? { postgresqlconf } : {}), ...g.__chatdPgliteAssets });
  await pg.waitReady;
  await pg.close();
}

async function main(): Promise<void> {
  if (sea.isSea()) {
    const initSpec = process.env[PGLITE_INIT_ENV];
    if (initSpec !== undefined) {
      installPgliteAssets();
      await initialisePglite(initSpec);
      return;
    }
    installUws();
    installPgliteAssets();
    installPgliteInitInChild();
  }
  // Imported only now, after the globals exist (esbuild inlines it; no runtime module loading).
  const { run } = await import('../../src/cli/main.js');
  await run(process.argv);
}

main().catch((err: unknown) => {
  const e = err as Error;
  process.stderr.write(`chatd: ${e?.name === 'NativeUwsError' ? e.message : (e?.stack ?? String(err))}\n`);
  process.exitCode = 1;
});
