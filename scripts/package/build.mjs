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
import { createReadStream, existsSync, rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
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
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
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

/**
 * Optional packages that are not installed but that a dependency tries to require at load time
 * inside a try (debug tries supports-color). Left as require() calls, the SEA would print a warning
 * at every start ("require() ... only supports loading built-in modules"); an empty module is what
 * the try/catch would have fallen back to.
 */
function absentOptionals(names) {
  const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')).join('|')})$`);
  return {
    name: 'absent-optionals',
    setup(b) {
      b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'absent-optional' }));
      b.onLoad({ filter: /.*/, namespace: 'absent-optional' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
    },
  };
}
const bundle = path.join(work, 'chatd.cjs');
const commit = buildCommit();

// 1. The bundle. Notes on the options:
//  - `import.meta.url` does not exist in CommonJS; PGlite evaluates new URL('./pglite.data',
//    import.meta.url) and src/ uses createRequire(import.meta.url). It becomes the binary's file URL.
//  - `dynamic-import: false` makes esbuild turn import() into require(): a SEA built with
//    useCodeCache has no dynamic-import callback (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING), and the
//    packages that do `await import('fs/promises')` (PGlite) would fail at run time.
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
  supported: { 'dynamic-import': false },
  define: {
    'import.meta.url': '__chatdImportMetaUrl',
    'process.env.CHATD_BUILD_COMMIT': JSON.stringify(commit),
    __CHATD_UWS_ASSET__: JSON.stringify(uwsAssetName),
  },
  banner: { js: 'var __chatdImportMetaUrl = require("node:url").pathToFileURL(process.execPath).href;' },
  // `import text from './file?raw'` (demo pages), as in the dev build (scripts/build.mjs).
  plugins: [rawPlugin, absentOptionals(['supports-color'])],
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  logOverride: { 'empty-import-meta': 'silent' },
});
const code = await readFile(bundle, 'utf8');
// Whatever import() esbuild could not rewrite (a computed specifier) would throw inside the SEA.
const leftover = [...code.matchAll(/\bimport\((?!\s*\))/g)].length;
const requiredOutside = Object.keys(result.metafile.inputs).length;
step(`bundle ${(code.length / 1e6).toFixed(1)} MB from ${requiredOutside} inputs, commit ${commit}${leftover ? `, ${leftover} import( text left (check they are not reached)` : ''}`);

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
execFileSync(process.execPath, ['--experimental-sea-config', path.join(work, 'sea-config.json')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
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
await rm(finalWork, { recursive: true, force: true });
await rename(work, finalWork);
done = true;
step('executable');

// Numbers for the README and CI logs.
const size = (await stat(out)).size;
const gz = await new Promise((resolve, reject) => {
  let n = 0;
  createReadStream(out)
    .on('error', reject)
    .pipe(createGzip({ level: 6 }))
    .on('data', (c) => (n += c.length))
    .on('end', () => resolve(n))
    .on('error', reject);
});
const t0 = performance.now();
const version = execFileSync(out, ['--version'], { encoding: 'utf8', env: { PATH: '/nonexistent' } }).trim();
const versionMs = performance.now() - t0;
step(`${path.relative(root, out)}: ${(size / 1e6).toFixed(1)} MB (${(gz / 1e6).toFixed(1)} MB gzip); "${version}" in ${versionMs.toFixed(0)} ms`);
