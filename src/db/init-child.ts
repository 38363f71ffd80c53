// Waits for a child process that creates an embedded database folder: src/db/pglite.ts runs a
// `node -e` child, the single binary (scripts/package/sea-entry.ts) runs itself. Only
// node:child_process here, so the binary's entry bundle does not pull PGlite in.
import { spawn } from 'node:child_process';

/** Runs `process.execPath` with `args` and `env`; rejects with the end of its stderr unless it exits 0. */
export function runInitChild(args: readonly string[], env: NodeJS.ProcessEnv, dir: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4000)));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`initialising the embedded database in ${dir} failed (${signal ?? `exit code ${code}`}): ${stderr.trim()}`));
    });
  });
}
