// The single binary's native-addon cache (scripts/package/native-cache.ts), run in plain node on the
// real uWebSockets.js addon: folder order, a corrupt cached copy, a folder another user owns, a
// `noexec` mount (needs root to mount a tmpfs; skipped otherwise) and the refusal when nothing works.
// Each load runs in its own node process: a process can hold only one copy of the uWS addon.
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheCandidates, sha256, type CacheCandidate } from '../../scripts/package/native-cache.js';

const require = createRequire(import.meta.url);
const ADDON = path.join(
  path.dirname(require.resolve('uWebSockets.js/package.json')),
  'binaries',
  `uws_linux_x64_${process.versions.modules}.node`,
);
const supported = process.platform === 'linux' && process.arch === 'x64' && existsSync(ADDON);
const bytes = supported ? new Uint8Array(readFileSync(ADDON)) : new Uint8Array();

let base: string;
let runner: string;
beforeAll(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'chatd-cache-'));
  runner = path.join(base, 'runner.mjs');
  await build({
    stdin: {
      contents: `
        import { readFileSync } from 'node:fs';
        import { loadNativeFromCache } from './native-cache.ts';
        const { addon, candidates, accept } = JSON.parse(process.argv[2]);
        const isUws = (m) => typeof m.getParts === 'function';
        try {
          const r = loadNativeFromCache({ bytes: new Uint8Array(readFileSync(addon)), name: 'uws_test', candidates,
            verify: (m) => accept && isUws(m), what: 'the test addon' });
          console.log(JSON.stringify({ ok: true, file: r.file, skipped: r.skipped, written: r.written, native: isUws(r.exports) }));
        } catch (e) {
          console.log(JSON.stringify({ ok: false, name: e.name, message: e.message, reasons: e.reasons }));
        }`,
      resolveDir: path.resolve(__dirname, '../../scripts/package'),
      loader: 'js',
    },
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile: runner,
    logLevel: 'warning',
  });
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

interface Outcome {
  ok: boolean;
  file: string;
  skipped: string[];
  written: boolean;
  native: boolean;
  name?: string;
  message?: string;
  reasons?: string[];
}
/** Loads the addon through the cache in a fresh node process. */
const load = (candidates: CacheCandidate[], accept = true): Outcome =>
  JSON.parse(
    execFileSync(process.execPath, [runner, JSON.stringify({ addon: ADDON, candidates, accept })], { encoding: 'utf8' }),
  ) as Outcome;

/** Mounts a small noexec tmpfs (root only); undefined when this machine does not allow it. */
function mountNoexec(dir: string): string | undefined {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'noexec,size=32m,mode=0700', 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    return undefined;
  }
}

describe.skipIf(!supported)('native addon cache', () => {
  it('orders the folders CHATD_CACHE_DIR, XDG cache, next to the binary, tmp', () => {
    const c = cacheCandidates({ CHATD_CACHE_DIR: 'rel/cache', XDG_CACHE_HOME: '/x/cache', HOME: '/home/u' }, '/opt/chatd/bin/chatd');
    expect(c.map((x) => x.source)).toEqual(['CHATD_CACHE_DIR', 'XDG cache', 'next to the binary', 'tmp']);
    expect(c[0]!.dir).toBe(path.resolve('rel/cache'));
    expect(c[1]!.dir).toBe('/x/cache/chatd');
    expect(c[2]!.dir).toBe('/opt/chatd/bin/.chatd-cache');
    expect(c[3]!.dir.startsWith(tmpdir())).toBe(true);
    // No XDG_CACHE_HOME: ~/.cache; a relative XDG_CACHE_HOME is ignored, as the XDG spec says.
    expect(cacheCandidates({ HOME: '/home/u', XDG_CACHE_HOME: 'rel' }, '/b/chatd')[0]!.dir).toBe('/home/u/.cache/chatd');
  });

  it('writes a content-hashed file, loads the native module from it, and reuses it on the next start', () => {
    const dir = path.join(base, 'first');
    const a = load([{ dir, source: 'test' }]);
    expect(a.ok && a.native).toBe(true);
    expect(a.written).toBe(true);
    expect(path.basename(a.file)).toBe(`uws_test-${sha256(bytes).slice(0, 16)}.node`);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readdirSync(dir)).toEqual([path.basename(a.file)]); // no temp file left behind
    const b = load([{ dir, source: 'test' }]);
    expect(b.file).toBe(a.file);
    expect(b.written).toBe(false);
  });

  it('replaces a corrupt cached copy instead of loading it', () => {
    const dir = path.join(base, 'corrupt');
    const first = load([{ dir, source: 'test' }]);
    chmodSync(first.file, 0o600);
    writeFileSync(first.file, 'not an ELF file');
    const again = load([{ dir, source: 'test' }]);
    expect(again.written).toBe(true);
    expect(sha256(readFileSync(again.file))).toBe(sha256(bytes));
  });

  it('skips a folder that is a file, or that another user owns, and says why', () => {
    const notDir = path.join(base, 'a-file');
    writeFileSync(notDir, 'x');
    const foreign = path.join(base, 'foreign');
    mkdirSync(foreign, { mode: 0o700 });
    const asRoot = process.getuid?.() === 0;
    if (asRoot) chownSync(foreign, 65534, 65534);
    const good = path.join(base, 'good');
    const r = load([
      { dir: notDir, source: 'first' },
      ...(asRoot ? [{ dir: foreign, source: 'second' }] : []),
      { dir: good, source: 'last' },
    ]);
    expect(r.file.startsWith(good)).toBe(true);
    expect(r.skipped[0]).toContain(`${notDir} (first)`);
    if (asRoot) expect(r.skipped[1]).toMatch(/owned by uid 65534/);
  });

  it('refuses with every reason when no folder yields the native module', () => {
    const dir = path.join(base, 'refuse');
    const e = load([{ dir, source: 'only' }], false);
    expect(e.ok).toBe(false);
    expect(e.name).toBe('NativeUwsError'); // the CLI prints this name as one clear line
    expect(e.message).toContain('refusing to start');
    expect(e.message).toContain('CHATD_CACHE_DIR');
    expect(e.reasons).toHaveLength(1);
    expect(e.reasons![0]).toContain('not the expected native module');
  });

  let mounted: string | undefined;
  beforeAll(() => {
    if (process.getuid?.() === 0) mounted = mountNoexec(path.join(tmpdir(), `chatd-noexec-unit-${process.pid}`));
  });
  afterAll(async () => {
    if (!mounted) return;
    execFileSync('umount', [mounted]);
    await rm(mounted, { recursive: true, force: true });
  });

  it('skips a noexec folder (dlopen cannot map it) and leaves no file there', (ctx) => {
    if (!mounted) ctx.skip('mounting a noexec tmpfs needs root');
    const good = path.join(base, 'after-noexec');
    const r = load([
      { dir: path.join(mounted!, 'cache'), source: 'noexec' },
      { dir: good, source: 'exec' },
    ]);
    expect(r.file.startsWith(good)).toBe(true);
    expect(r.native).toBe(true);
    expect(r.skipped).toHaveLength(1);
    expect(r.skipped[0]).toMatch(/noexec/);
    expect(r.skipped[0]).toMatch(/failed to map segment/);
    expect(readdirSync(path.join(mounted!, 'cache'))).toEqual([]);
  });
});
