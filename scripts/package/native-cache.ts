// Loads a native addon that travels inside the single binary. A `.node` file can only be loaded
// from disk (dlopen), so the embedded copy is written once to a content-hashed file in a cache
// folder and loaded from there. The folders are tried in order; one that cannot be created, is not
// ours, or is mounted `noexec` (dlopen then fails with "failed to map segment from shared object")
// is skipped with its reason, so that the caller can say why it refused to start.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';

export interface CacheCandidate {
  readonly dir: string;
  /** Where the folder comes from, for messages: `CHATD_CACHE_DIR`, `XDG cache`, `next to the binary`, `tmp`. */
  readonly source: string;
}

export interface LoadedNative<T> {
  readonly exports: T;
  /** The file that was dlopen'ed. */
  readonly file: string;
  /** Folders tried before the one that worked, with the reason each was skipped. */
  readonly skipped: readonly string[];
  /** True when this run wrote the file (first start, or a corrupt cached copy replaced). */
  readonly written: boolean;
}

export interface LoadNativeOptions<T> {
  /** The addon's bytes (from the SEA asset). */
  readonly bytes: Uint8Array;
  /** File name stem, e.g. `uws_linux_x64_115`; the content hash is appended. */
  readonly name: string;
  readonly candidates: readonly CacheCandidate[];
  /** Accepts the loaded exports (e.g. the native uWS has `getParts`); a rejected module is skipped. */
  readonly verify: (exports: unknown) => exports is T;
  /** What to say when every folder failed (prefixes the list of reasons). */
  readonly what: string;
}

/** Thrown when no cache folder could hold and load the addon. Named like src/uws.ts's error so the CLI prints it as one clear line. */
export class NativeModuleError extends Error {
  constructor(
    message: string,
    readonly reasons: readonly string[],
  ) {
    super(message);
    this.name = 'NativeUwsError';
  }
}

/**
 * The cache folders, in the order they are tried: `$CHATD_CACHE_DIR` (as given), the XDG cache
 * (`$XDG_CACHE_HOME/chatd`, else `~/.cache/chatd`), `.chatd-cache` next to the binary, then a
 * per-user folder in the temp dir (`$TMPDIR/chatd-<uid>`).
 */
export function cacheCandidates(env: NodeJS.ProcessEnv, execPath: string): CacheCandidate[] {
  const out: CacheCandidate[] = [];
  if (env.CHATD_CACHE_DIR) out.push({ dir: path.resolve(env.CHATD_CACHE_DIR), source: 'CHATD_CACHE_DIR' });
  let home: string | undefined;
  try {
    home = env.HOME || homedir();
  } catch {
    home = undefined; // no passwd entry (e.g. a bare container user): no XDG default
  }
  const xdg = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : home ? path.join(home, '.cache') : undefined;
  if (xdg) out.push({ dir: path.join(xdg, 'chatd'), source: 'XDG cache' });
  out.push({ dir: path.join(path.dirname(execPath), '.chatd-cache'), source: 'next to the binary' });
  const uid = typeof process.getuid === 'function' ? process.getuid() : 'user';
  out.push({ dir: path.join(tmpdir(), `chatd-${uid}`), source: 'tmp' });
  // The same folder reached twice (e.g. CHATD_CACHE_DIR = the XDG one) is tried once.
  return out.filter((c, i) => out.findIndex((o) => o.dir === c.dir) === i);
}

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Writes (if needed) and dlopens the addon from the first usable cache folder. The file name holds
 * the content hash and an existing file is re-hashed before use, so a truncated or tampered copy is
 * replaced, and a new binary version never loads an old addon. Writes go to a temp file renamed into
 * place, so concurrent first starts never see a half-written file.
 */
export function loadNativeFromCache<T>(opts: LoadNativeOptions<T>): LoadedNative<T> {
  const hash = sha256(opts.bytes);
  const fileName = `${opts.name}-${hash.slice(0, 16)}.node`;
  const skipped: string[] = [];
  for (const candidate of opts.candidates) {
    const where = `${candidate.dir} (${candidate.source})`;
    try {
      prepareFolder(candidate.dir);
    } catch (err) {
      skipped.push(`${where}: ${reason(err)}`);
      continue;
    }
    const file = path.join(candidate.dir, fileName);
    let written = false;
    try {
      if (!holds(file, hash)) {
        writeAtomically(file, opts.bytes);
        written = true;
      }
    } catch (err) {
      skipped.push(`${where}: cannot write ${fileName}: ${reason(err)}`);
      continue;
    }
    const mod: { exports: unknown } = { exports: {} };
    try {
      process.dlopen(mod, file);
    } catch (err) {
      const message = reason(err);
      const noexec = /failed to map segment|operation not permitted/i.test(message);
      skipped.push(`${where}: dlopen failed${noexec ? ' (is the folder mounted noexec?)' : ''}: ${message}`);
      if (written) safeUnlink(file); // useless here; do not leave 7 MB behind in a folder we cannot use
      continue;
    }
    if (!opts.verify(mod.exports)) {
      skipped.push(`${where}: ${file} loaded but is not the expected native module`);
      continue;
    }
    return { exports: mod.exports, file, skipped, written };
  }
  throw new NativeModuleError(
    `${opts.what}: no cache folder could load it; refusing to start. Tried:\n  ${skipped.join('\n  ')}\n` +
      'Set CHATD_CACHE_DIR to a writable folder on a filesystem that allows executing files.',
    skipped,
  );
}

/** Creates the folder (0700) and refuses one another user could write into (a file swapped between the hash check and dlopen would run as us). */
function prepareFolder(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error('not a directory');
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) throw new Error(`owned by uid ${st.uid}, not by this user (${uid})`);
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)
    throw new Error(`writable by other users (mode ${(st.mode & 0o7777).toString(8)})`);
}

function holds(file: string, hash: string): boolean {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    return false;
  }
  return sha256(bytes) === hash;
}

function writeAtomically(file: string, bytes: Uint8Array): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o500);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    safeUnlink(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    safeUnlink(tmp);
    throw err;
  }
}

function safeUnlink(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    /* already gone */
  }
}

const reason = (err: unknown) => (err instanceof Error ? err.message.split('\n')[0]! : String(err));
