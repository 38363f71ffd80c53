// Runs database code in a second Node process (two writers, a relay killed with SIGKILL): the child
// entry is bundled with esbuild next to node_modules (so its imports resolve) and spawned with
// plain node; it talks JSON lines on stdout and takes commands on stdin.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '../../..');
const outDir = path.join(root, 'node_modules', '.cache', 'chatd-db-tests');

const built = new Map<string, Promise<string>>();

/** Bundles `test/helpers/db/<name>.ts` once per test file; returns the .mjs path. */
export function buildChild(name: string): Promise<string> {
  let p = built.get(name);
  if (!p) {
    p = (async () => {
      fs.mkdirSync(outDir, { recursive: true });
      const outfile = path.join(outDir, `${name}-${process.pid}-${randomBytes(3).toString('hex')}.mjs`);
      await build({
        entryPoints: [path.join(here, `${name}.ts`)],
        outfile,
        bundle: true,
        platform: 'node',
        target: 'node20',
        format: 'esm',
        packages: 'external',
        logLevel: 'warning',
      });
      return outfile;
    })();
    built.set(name, p);
  }
  return p;
}

export interface ChildHandle {
  readonly child: ChildProcess;
  /** Resolves with the first JSON line satisfying `pred`. */
  next<T = Record<string, unknown>>(pred: (m: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<T>;
  send(cmd: unknown): void;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function spawnChild(name: string, env: Record<string, string>): Promise<ChildHandle> {
  const script = await buildChild(name);
  const child = spawn(process.execPath, [script], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const messages: Record<string, unknown>[] = [];
  const waiters: { pred: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }[] = [];
  let buf = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.startsWith('{')) continue;
      const m = JSON.parse(line) as Record<string, unknown>;
      messages.push(m);
      for (const w of [...waiters]) {
        if (w.pred(m)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    exited,
    stderr: () => err,
    send: (cmd) => child.stdin!.write(`${JSON.stringify(cmd)}\n`),
    next<T>(pred: (m: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<T> {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found as T);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`child ${name}: no matching message within ${timeoutMs} ms; stderr:\n${err}`)),
          timeoutMs,
        );
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`child ${name} exited (${code ?? signal}) before the expected message; stderr:\n${err}`));
        });
        waiters.push({
          pred,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m as T);
          },
        });
      });
    },
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
