// `npm run package`: builds dist/chatd, one self-contained linux-x64 executable (a Node.js 20
// Single Executable Application) holding the whole CLI, uWebSockets.js's native addon and PGlite.
//
//   1. esbuild: one CommonJS bundle of scripts/package/sea-entry.ts and everything it imports,
//      node_modules included (pg-native and typescript stay out: loaded only when asked for);
//   2. node --experimental-sea-config: the bundle (with a V8 code cache) and the assets become a blob;
//   3. a copy of this node binary, stripped, gets the blob injected by postject, with the SEA fuse.
//
// Options (environment): CHATD_BUILD_COMMIT (else `git rev-parse`), CHATD_PACKAGE_OUT (default
// dist/chatd), CHATD_PACKAGE_NO_STRIP=1 (keep symbols, for debugging a crash).
import { build } from 'esbuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rawPlugin } from '../esbuild-raw.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);
const started = performance.now();
const step = (what) => console.log(`[package] ${what} (${((performance.now() - started) / 1000).toFixed(1)} s)`);

// The SEA fuse every Node 20 binary carries; postject flips it so node runs the injected blob.
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

if (process.platform !== 'linux' || process.arch !== 'x64') {
  throw new Error(`npm run package builds a linux-x64 binary from the running node; this is ${process.platform}-${process.arch}`);
}
if (!process.versions.node.startsWith('20.')) {
  throw new Error(`npm run package must run on Node 20 (the binary is a copy of this node; uWS ABI 115); this is ${process.version}`);
}

const out = path.resolve(root, process.env.CHATD_PACKAGE_OUT ?? 'dist/chatd');
// Intermediate files (bundle, blob, sea-config.json) end up in dist/sea; each build writes its own
// folder first, so two builds at once (two test runs) never mix their files.
const finalWork = path.join(root, 'dist', 'sea');
const work = `${finalWork}.${process.pid}.tmp`;
const uwsAssetName = `uws_linux_x64_${process.versions.modules}.node`;
const uwsFile = path.join(path.dirname(require.resolve('uWebSockets.js/package.json', { paths: [root] })), 'binaries', uwsAssetName);
const pgliteDist = path.dirname(require.resolve('@electric-sql/pglite', { paths: [root] }));
const assets = {
  [uwsAssetName]: uwsFile,
  'pglite.wasm': path.join(pgliteDist, 'pglite.wasm'),
  'initdb.wasm': path.join(pgliteDist, 'initdb.wasm'),
  'pglite.data': path.join(pgliteDist, 'pglite.data'),
};
for (const [name, file] of Object.entries(assets)) {
  if (!existsSync(file)) throw new Error(`asset ${name} not found at ${file} (run npm ci)`);
}

function buildCommit() {
  if (process.env.CHATD_BUILD_COMMIT) return process.env.CHATD_BUILD_COMMIT;
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return 'unknown';
  }
}

const tmp = `${out}.${process.pid}.tmp`;
let done = false;
process.on('exit', () => {
  // A failed build leaves neither a half-built executable (~110 MB) nor its work folder behind.
  if (!done) for (const p of [tmp, work]) rmSync(p, { recursive: true, force: true });
});
await mkdir(work, { recursive: true });

const bundle = path.join(work, 'chatd.cjs');

// Runs first in the bundle. (1) import.meta.url for the CommonJS bundle. (2) The SEA gives the main
// script a require() that loads built-in modules only and prints a warning the first time it is
// asked for anything else. Packages probe optional dependencies at load time (debug tries
// supports-color, undici node:sqlite, PGlite's emscripten code ws); those probes get the error
// they expect (MODULE_NOT_FOUND, or ERR_UNKNOWN_BUILTIN_MODULE for a node: name), without the warning.
// "use strict" first: esbuild emits it for the ESM sources, and after a banner it would be ignored.
const BANNER = `"use strict";
var __chatdImportMetaUrl = require("node:url").pathToFileURL(process.execPath).href;
function __chatdImportBuiltin(id) {
  var m = require(id);
  return Object.assign(Object.create(null), m, { default: m });
}
require = (function (seaRequire) {
  var isBuiltin = seaRequire("node:module").isBuiltin;
  function chatdRequire(id) {
    if (isBuiltin(id)) return seaRequire(id);
    var err = new Error("Cannot find module '" + id + "': it is not bundled into the chatd binary");
    err.code = String(id).startsWith("node:") ? "ERR_UNKNOWN_BUILTIN_MODULE" : "MODULE_NOT_FOUND";
    throw err;
  }
  return Object.assign(chatdRequire, seaRequire);
})(require);`;
const commit = buildCommit();

// 1. The bundle. Notes on the options:
//  - `import.meta.url` does not exist in CommonJS; PGlite evaluates new URL('./pglite.data',
//    import.meta.url) and src/ uses createRequire(import.meta.url). It becomes the binary's file URL.
//  - import() of a bundled module becomes a call into the bundle; import() of a built-in module
//    is rewritten after the build (below).
const result = await build({
  entryPoints: [path.join(root, 'scripts/package/sea-entry.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // pg-native: pg loads it only for `native: true`. typescript (10 MB): cosmiconfig requires it only
  // to read a chat-server.ts config; chatd reads YAML/JSON, so in the binary a .ts config is an error.
  external: ['pg-native', 'typescript'],
  define: {
    'import.meta.url': '__chatdImportMetaUrl',
    'process.env.CHATD_BUILD_COMMIT': JSON.stringify(commit),
    __CHATD_UWS_ASSET__: JSON.stringify(uwsAssetName),
  },
  banner: { js: BANNER },
  // `import text from './file?raw'` (demo pages), as in the dev build (scripts/build.mjs).
  plugins: [rawPlugin],
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  logOverride: { 'empty-import-meta': 'silent' },
});
// A SEA built with useCodeCache has no dynamic-import callback: `await import('fs/promises')`
// (PGlite does that) throws ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING. Each import() of a built-in
// becomes __chatdImportBuiltin(), which builds the same namespace from require(). Not esbuild's
// `supported: { 'dynamic-import': false }`: that emits require(), and PGlite's emscripten code
// declares its own `var require` in the same function, which shadows it (TypeError at first start).
let code = await readFile(bundle, 'utf8');
let rewritten = 0;
code = code.replace(/\bimport\(\s*(["'])((?:node:)?[a-z_/]+)\1\s*\)/g, (whole, _q, id) => {
  if (!isBuiltin(id)) return whole;
  rewritten++;
  return `Promise.resolve().then(()=>__chatdImportBuiltin(${JSON.stringify(id)}))`;
});
await writeFile(bundle, code);
const leftover = [...code.matchAll(/\bimport\(\s*[^\s)]/g)].length;
step(
  `bundle ${(code.length / 1e6).toFixed(1)} MB from ${Object.keys(result.metafile.inputs).length} inputs, commit ${commit}, ` +
    `${rewritten} import() of built-ins rewritten${leftover ? `, ${leftover} other "import(" texts left (strings, or computed specifiers that would fail if reached)` : ''}`,
);

// 2. The blob.
const seaConfig = {
  main: bundle,
  output: path.join(work, 'chatd.blob'),
  disableExperimentalSEAWarning: true,
  useCodeCache: true,
  useSnapshot: false,
  assets,
};
await writeFile(path.join(work, 'sea-config.json'), `${JSON.stringify(seaConfig, null, 2)}\n`);
execFileSync(process.execPath, ['--experimental-sea-config', path.join(work, 'sea-config.json')], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'inherit'],
});
step('SEA blob');

// 3. The executable: copy node, strip it (before injecting: strip would drop the injected note),
// inject, then move into place atomically so a running dist/chatd is never half-written.
await mkdir(path.dirname(out), { recursive: true });
await copyFile(process.execPath, tmp);
await chmod(tmp, 0o755);
if (process.env.CHATD_PACKAGE_NO_STRIP !== '1') {
  const s = spawnSync('strip', [tmp], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (s.error || s.status !== 0) console.warn(`[package] strip unavailable or failed, keeping symbols: ${s.error?.message ?? s.stderr}`);
}
const { inject } = require('postject');
const originalWarn = console.warn;
console.warn = (...args) => {
  // postject warns about every ELF .note it cannot parse; harmless, and noise in CI logs.
  if (!String(args[0] ?? '').includes('.note')) originalWarn(...args);
};
try {
  await inject(tmp, 'NODE_SEA_BLOB', await readFile(seaConfig.output), { sentinelFuse: SEA_FUSE });
} finally {
  console.warn = originalWarn;
}
await rename(tmp, out);
try {
  await rm(finalWork, { recursive: true, force: true });
  await rename(work, finalWork);
} catch {
  await rm(work, { recursive: true, force: true }); // another build just put its own dist/sea in place
}
done = true;
step('executable');

// A first smoke test with no node on PATH, and the numbers for CI logs (gzip size, start-up to the
// first 200: scripts/package/measure.mjs).
const size = (await stat(out)).size;
const t0 = performance.now();
const version = execFileSync(out, ['--version'], { encoding: 'utf8', env: { PATH: '/nonexistent' } }).trim();
const versionMs = performance.now() - t0;
step(`${path.relative(root, out)}: ${(size / 1e6).toFixed(1)} MB; "${version}" in ${versionMs.toFixed(0)} ms`);
