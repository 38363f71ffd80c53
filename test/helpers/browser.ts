// Finds Debian's Chromium for browser tests (playwright-core drives it; no browser download).
// Missing: installed with apt when running as root; otherwise skipped with a visible message —
// unless CI=true, where a missing browser fails the run.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { IN_CI } from './services.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Flags that keep headless Chromium off the (closed) network and quiet, as root in a sandbox. */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

function tryInstall(): void {
  if (process.getuid?.() !== 0) return;
  process.stderr.write('\n  installing Debian chromium for the browser tests (apt-get)…\n');
  try {
    execFileSync('apt-get', ['update'], { stdio: 'ignore', timeout: 300_000 });
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], {
      stdio: 'ignore',
      timeout: 600_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch (err) {
    process.stderr.write(`  apt-get could not install chromium: ${(err as Error).message}\n`);
  }
}

/** Whether browser tests may run; throws with CI=true when no browser can be had. */
export function hasChromium(): boolean {
  if (!existsSync(CHROMIUM)) tryInstall();
  if (existsSync(CHROMIUM)) return true;
  const msg = `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
  if (IN_CI) throw new Error(`${msg}: CI=true, so browser tests fail instead of skipping`);
  process.stderr.write(`\n  ⚠ SKIPPING browser tests: ${msg}\n`);
  return false;
}
