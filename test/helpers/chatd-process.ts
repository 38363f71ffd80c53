// Spawns bin/chatd as a real process for end-to-end tests: JSON logs are parsed to learn the ports
// it listens on (tests use port 0), and teardown always kills it.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { eventually } from './eventually.js';

export const CHATD_BIN = path.resolve(__dirname, '../../bin/chatd');

// Every chatd this test process started dies with it, even when a hook timed out or the worker is
// torn down before teardown ran: no server outlives its test file.
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
function track<C extends ChildProcess>(child: C): C {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export interface ChatdProcess {
  readonly child: ChildProcess;
  /** Listener name → port (`public`, `api`, `ws`, `gateway`, `admin`). */
  readonly ports: Record<string, number>;
  readonly logs: () => string;
  readonly stderr: () => string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface SpawnOptions {
  args?: string[];
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Listeners to wait for (default: public and admin). */
  waitFor?: string[];
  /**
   * How long to wait for the listeners: a hang detector, not a bound. A first start in a fresh
   * folder creates the embedded database, which takes a minute on a loaded 2-core machine.
   */
  timeoutMs?: number;
}

const LISTEN_TIMEOUT_MS = 240_000;

/** The JSON log records in `text`, one a line (a partial line, not yet complete, is skipped). */
export function* logRecords(text: string): Generator<{ pid?: number; listener?: string; url?: string }> {
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      yield JSON.parse(line) as { pid?: number; listener?: string; url?: string };
    } catch {
      /* a partial line */
    }
  }
}

/** Notes in `ports` the port of each listener that `text` logs as listening. */
export function listenerPorts(text: string, ports: Record<string, number>): void {
  for (const rec of logRecords(text)) if (rec.listener && rec.url) ports[rec.listener] = Number(new URL(rec.url).port);
}

/**
 * Resolves once `GET /readyz` on `port` answers 200. A first start in a fresh folder opens the
 * embedded database in the background after the listener is up (seconds; a minute or more on a
 * loaded 2-core machine), so tests wait for readiness rather than race it. A hang detector.
 */
export async function whenReady(port: number, timeoutMs = LISTEN_TIMEOUT_MS): Promise<void> {
  await eventually(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, `chatd on port ${port} to be ready`, {
    timeoutMs,
    intervalMs: 100,
    retryOnError: true,
  });
}

export function spawnChatd(opts: SpawnOptions): Promise<ChatdProcess> {
  const child = track(
    spawn(process.execPath, [CHATD_BIN, ...(opts.args ?? ['serve', '--role', 'all'])], {
      cwd: opts.cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let out = '';
  let err = '';
  const ports: Record<string, number> = {};
  const waitFor = opts.waitFor ?? ['public', 'admin'];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`chatd did not listen within ${opts.timeoutMs ?? LISTEN_TIMEOUT_MS} ms\nstdout:\n${out}\nstderr:\n${err}`));
    }, opts.timeoutMs ?? LISTEN_TIMEOUT_MS);
    const check = () => {
      if (waitFor.every((l) => ports[l] !== undefined)) {
        clearTimeout(timer);
        resolve({
          child,
          ports,
          logs: () => out,
          stderr: () => err,
          exited,
          async stop(signal = 'SIGTERM') {
            if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
            child.kill(signal);
            return exited;
          },
        });
      }
    };
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      listenerPorts(chunk, ports);
      check();
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`chatd exited with ${code} before listening\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
}

/** Starts a chatd command (minimal environment) and collects what it prints; `exited` has its code. */
export function startChatdCommand(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }) {
  const child = track(
    spawn(process.execPath, [CHATD_BIN, ...args], {
      cwd: opts.cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

/** Runs a chatd command to completion (killed after `timeoutMs`, default 60 s: code null then). */
export async function runChatd(
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cmd = startChatdCommand(args, opts);
  const timer = setTimeout(() => cmd.child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const code = await cmd.exited;
  clearTimeout(timer);
  return { code, stdout: cmd.out(), stderr: cmd.err() };
}
