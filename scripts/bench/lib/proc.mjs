// Process helpers for benchmarks: pinned spawning, server CPU time from /proc, fd limits, medians.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86_64

export const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return true;
  } catch {
    return false;
  }
})();

export const hasPrlimit = (() => {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/**
 * Spawns `node args` pinned to `cpu` (when taskset exists), with its open-file limit raised to the
 * hard limit (when prlimit exists), and returns the child. Both tools exec, so child.pid is node's.
 */
export function spawnPinned(cpu, args, opts = {}) {
  const argv = [process.execPath, ...args];
  if (hasTaskset && cpu !== undefined) argv.unshift('taskset', '-c', String(cpu));
  if (hasPrlimit) {
    const { hard } = fdLimits();
    if (Number.isFinite(hard)) argv.unshift('prlimit', `--nofile=${hard}:${hard}`);
  }
  return spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], ...opts });
}

/** A running process's open-file limit, from /proc. */
export function childFdLimit(pid) {
  try {
    const m = /Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? { soft: Number(m[1]), hard: Number(m[2]) } : undefined;
  } catch {
    return undefined;
  }
}

/** Waits for a line on the child's stdout matching `re`; resolves with the match. */
export function waitForLine(child, re, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}: ${buf.slice(-500)}`)), timeoutMs);
    const onData = (chunk) => {
      buf += chunk.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve(m);
      }
    };
    child.stdout.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process exited (${code}) before ${re}: ${buf.slice(-500)}`));
    });
  });
}

/** User+system CPU seconds of a process (and its threads). */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Resident set size of a process in bytes. */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

export function fdLimits() {
  const text = readFileSync('/proc/self/limits', 'utf8');
  const m = /Max open files\s+(\d+)\s+(\d+)/.exec(text);
  return m ? { soft: Number(m[1]), hard: Number(m[2]) } : { soft: NaN, hard: NaN };
}

export function machine() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    kernel: os.release(),
    taskset: hasTaskset,
    fdLimit: fdLimits(),
  };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after `graceMs` (a profiled process needs time to write its profile). */
export function kill(child, graceMs = 5000) {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), graceMs).unref();
  });
}
