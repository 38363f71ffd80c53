// Measures the single binary the way docs/deployment.md reports it:
//   node scripts/package/measure.mjs [path/to/chatd] [--runs N] [--json]
// size (and gzip), `--version` time, and for `serve --role all` on embedded defaults in a fresh
// temporary folder: milliseconds from spawn to the first 200 of /healthz and of /readyz, RSS and
// peak RSS, on the first start (the embedded database is created) and on restarts. Runs with a bare
// environment (no node on PATH). Pass `node bin/chatd` as the command (quoted) to compare with the
// node_modules build.
import { spawn, execFileSync } from 'node:child_process';
import { createReadStream, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createGzip } from 'node:zlib';

const args = process.argv.slice(2);
const json = args.includes('--json');
const runsAt = args.indexOf('--runs');
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
const positional = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs');
const command = (positional[0] ?? 'dist/chatd').split(' ');
const [exe, ...pre] = command.map((c) => (c.includes('/') ? path.resolve(c) : c));
const isBinary = pre.length === 0;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until200(url, deadline) {
  while (performance.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.status === 200) return performance.now();
    } catch {
      /* not listening yet */
    }
    await sleep(5);
  }
  throw new Error(`${url}: no 200 before the deadline`);
}

async function rss(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(status.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'))[1]);
  return { rssMb: Math.round(kb('VmRSS') / 1024), peakMb: Math.round(kb('VmHWM') / 1024) };
}

/** One `serve --role all`; the public port is fixed up front so /healthz can be polled from the spawn on. */
async function serveOnce(cwd, env) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  await writeFile(
    path.join(cwd, 'chat-server.yaml'),
    `server:\n  host: 127.0.0.1\n  port: ${port}\nadmin:\n  port: 0\nlog:\n  level: warn\n`,
  );
  const t0 = performance.now();
  const child = spawn(exe, [...pre, 'serve', '--role', 'all'], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  try {
    const healthz = (await until200(`http://127.0.0.1:${port}/healthz`, t0 + 120_000)) - t0;
    const readyz = (await until200(`http://127.0.0.1:${port}/readyz`, t0 + 120_000)) - t0;
    const mem = await rss(child.pid);
    child.kill('SIGTERM');
    const code = await exited;
    return { healthz, readyz, ...mem, exitCode: code };
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${stderr}`, { cause: err });
  }
}

const dir = await mkdtemp(path.join(tmpdir(), 'chatd-measure-'));
try {
  const emptyBin = path.join(dir, 'empty-bin');
  await mkdir(emptyBin);
  const env = isBinary ? { PATH: emptyBin, HOME: dir } : { PATH: process.env.PATH, HOME: dir };
  const result = { command: command.join(' ') };
  if (isBinary) {
    result.sizeMb = +(statSync(exe).size / 1e6).toFixed(1);
    result.gzipMb = +(
      (await new Promise((resolve, reject) => {
        let n = 0;
        createReadStream(exe)
          .on('error', reject)
          .pipe(createGzip())
          .on('data', (c) => (n += c.length))
          .on('end', () => resolve(n));
      })) / 1e6
    ).toFixed(1);
  }
  const versions = [];
  for (let i = 0; i < Math.max(runs, 3); i++) {
    const t = performance.now();
    execFileSync(exe, [...pre, '--version'], { env, stdio: 'ignore' });
    versions.push(performance.now() - t);
  }
  result.versionMs = Math.round(median(versions));
  const cwd = path.join(dir, 'work');
  await mkdir(cwd);
  const first = await serveOnce(cwd, env);
  result.firstStart = {
    healthzMs: Math.round(first.healthz),
    readyzMs: Math.round(first.readyz),
    rssMb: first.rssMb,
    peakMb: first.peakMb,
    exitCode: first.exitCode,
  };
  const again = [];
  for (let i = 0; i < runs; i++) again.push(await serveOnce(cwd, env));
  result.restart = {
    healthzMs: Math.round(median(again.map((r) => r.healthz))),
    readyzMs: Math.round(median(again.map((r) => r.readyz))),
    rssMb: median(again.map((r) => r.rssMb)),
    peakMb: median(again.map((r) => r.peakMb)),
    exitCodes: [...new Set(again.map((r) => r.exitCode))],
  };
  result.loadAverage = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  if (json) console.log(JSON.stringify(result, null, 2));
  else {
    console.log(`${result.command}${result.sizeMb ? `: ${result.sizeMb} MB (${result.gzipMb} MB gzip)` : ''}`);
    console.log(`  --version                     ${result.versionMs} ms (median of ${versions.length})`);
    console.log(
      `  first start (creates the db)  /healthz ${result.firstStart.healthzMs} ms, /readyz ${result.firstStart.readyzMs} ms, RSS ${result.firstStart.rssMb} MB (peak ${result.firstStart.peakMb} MB), SIGTERM exit ${result.firstStart.exitCode}`,
    );
    console.log(
      `  restart (median of ${runs})        /healthz ${result.restart.healthzMs} ms, /readyz ${result.restart.readyzMs} ms, RSS ${result.restart.rssMb} MB (peak ${result.restart.peakMb} MB), SIGTERM exit ${result.restart.exitCodes.join(',')}`,
    );
    console.log(`  load average while measuring  ${result.loadAverage}`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
