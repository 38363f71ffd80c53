// `npm run bench -- <scenario> [--targets uws,socketio,chatd] [--runs 3]`
// Starts each server under test and the load generators as separate processes on 127.0.0.1
// (server pinned to CPU 0, load generators to CPU 1 when taskset exists), runs the scenario
// `--runs` times per target, and writes a Markdown table and a JSON file (machine, versions,
// medians, min–max, server CPU per operation) under bench/results/. Bounded in count and time.
import { parseArgs } from 'node:util';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, kill, machine, median, rssBytes, sleep, spawnPinned, waitForLine } from './lib/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    targets: { type: 'string', default: 'uws,socketio,chatd' },
    runs: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
  },
});
const scenario = positionals[0];
const runs = Number(o.runs);
const JWT_SECRET = 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const API_KEY = 'ck_pub_benchbenchbenchbench0001';

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Starts a target server pinned to CPU 0; resolves { child, port, url }. */
async function startTarget(target, extraEnv = {}) {
  const port = await freePort();
  const env = { ...process.env, JWT_SECRET, PORT: String(port), ...extraEnv };
  let child;
  switch (target) {
    case 'uws':
      child = spawnPinned(0, [path.join(here, 'servers/uws-raw.mjs')], { env });
      await waitForLine(child, /LISTENING (\d+)/);
      break;
    case 'socketio':
      child = spawnPinned(0, [path.join(here, 'servers/socketio.mjs')], { env });
      await waitForLine(child, /LISTENING (\d+)/);
      break;
    case 'chatd': {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-bench-'));
      const cfg = [
        `server: { host: 127.0.0.1, port: ${port}, shutdownTimeoutMs: 2000 }`,
        'admin: { enabled: false }',
        "log: { level: 'warn', format: json }",
        'auth:',
        `  jwtSecret: ${JWT_SECRET}`,
        `  gatewayApiKey: ${API_KEY}`,
        'limits:',
        '  connectPerIp: { rate: 1000000, burst: 1000000 }',
        '  connectPerKey: { rate: 1000000, burst: 1000000 }',
        '  httpPerIp: { rate: 1000000, burst: 1000000 }',
        '  httpPerKey: { rate: 1000000, burst: 1000000 }',
        '  messagesPerSocket: { rate: 1000000, burst: 1000000 }',
        ...(extraEnv.DATABASE_URL ? [`database: { url: "${extraEnv.DATABASE_URL}", autoMigrate: true }`] : []),
        ...(extraEnv.REDIS_URL ? [`redis: { url: "${extraEnv.REDIS_URL}", prefix: "bench:${port}:" }`] : []),
      ].join('\n');
      writeFileSync(path.join(dir, 'chat-server.yaml'), `${cfg}\n`);
      child = spawnPinned(0, ['--expose-gc', path.join(root, 'bin/chatd'), 'serve', '--role', 'all'], { env: { PATH: process.env.PATH, HOME: process.env.HOME }, cwd: dir });
      // Logs at warn: poll /healthz instead of reading a line.
      for (let i = 0; i < 300; i++) {
        try {
          if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) break;
        } catch {
          /* not up yet */
        }
        await sleep(100);
      }
      break;
    }
    default:
      throw new Error(`unknown target ${target}`);
  }
  child.stdout.resume();
  return { child, port, url: `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket` };
}

/** Runs a load generator pinned to CPU 1; resolves its RESULT JSON. */
async function loadgen(args, env = {}) {
  const child = spawnPinned(1, [path.join(here, 'loadgen.mjs'), ...args], { env: { ...process.env, JWT_SECRET, ...env } });
  const m = await waitForLine(child, /RESULT (.*)\n/, 600_000);
  await kill(child);
  return JSON.parse(m[1]);
}

async function measure(target, fn) {
  const srv = await startTarget(target);
  try {
    await sleep(300);
    const cpu0 = cpuSeconds(srv.child.pid);
    const result = await fn(srv);
    result.serverCpuSeconds = cpuSeconds(srv.child.pid) - cpu0;
    return result;
  } finally {
    await kill(srv.child);
  }
}

const SCENARIOS = {
  /** Accept rate: N connections with JWT verification, 200 in flight. */
  async accept(target) {
    const n = o.quick ? 1000 : 5000;
    const r = await measure(target, (srv) => loadgen(['--mode', 'accept', '--url', srv.url, '--n', String(n), '--inflight', '200', '--apiKey', API_KEY]));
    return { ...r, value: r.perSecond, unit: 'conn/s', cpuPerOpUs: (r.serverCpuSeconds / r.connected) * 1e6 };
  },
  /** Fan-out of a non-stored event to N subscribers of one conversation. */
  async fanout(target) {
    const subs = o.quick ? 200 : 1000;
    const r = await measure(target, (srv) =>
      loadgen(['--mode', 'fanout', '--url', srv.url, '--subs', String(subs), '--inflight', '32', '--seconds', o.quick ? '3' : '8', '--apiKey', API_KEY]),
    );
    return { ...r, value: r.perSecond, unit: 'deliveries/s', cpuPerOpUs: (r.serverCpuSeconds / r.delivered) * 1e6 };
  },
  /** Latency of `typing` at a fixed rate to a room of 100. */
  async latency(target) {
    const r = await measure(target, (srv) =>
      loadgen(['--mode', 'latency', '--event', 'typing', '--url', srv.url, '--subs', '100', '--rate', '600', '--seconds', o.quick ? '3' : '8', '--apiKey', API_KEY]),
    );
    return { ...r, value: r.p99, unit: 'ms p99', cpuPerOpUs: (r.serverCpuSeconds / Math.max(1, r.samples)) * 1e6 };
  },
  /** Memory per idle authenticated connection. */
  async memory(target) {
    const n = o.quick ? 2000 : 5000;
    const perProcess = 5000;
    return measure(target, async (srv) => {
      await sleep(500);
      const before = rssBytes(srv.child.pid);
      const gens = [];
      for (let i = 0; i < Math.ceil(n / perProcess); i++) {
        const count = Math.min(perProcess, n - i * perProcess);
        const child = spawnPinned(1, [path.join(here, 'loadgen.mjs'), '--mode', 'idle', '--url', srv.url, '--n', String(count), '--srcBase', String(1 + i), '--apiKey', API_KEY], {
          env: { ...process.env, JWT_SECRET },
        });
        gens.push(child);
        await waitForLine(child, /READY (\d+)/, 600_000);
      }
      await sleep(2000);
      const after = rssBytes(srv.child.pid);
      await Promise.all(gens.map(kill));
      const perConn = (after - before) / n;
      return { connections: n, rssBefore: before, rssAfter: after, value: perConn / 1024, unit: 'KB RSS/conn' };
    });
  },
};

if (!SCENARIOS[scenario]) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(SCENARIOS).join('|')}> [--targets uws,socketio,chatd] [--runs 3] [--quick]\n`);
  process.exit(2);
}

const results = {};
for (const target of o.targets.split(',')) {
  const samples = [];
  for (let i = 0; i < runs; i++) {
    process.stderr.write(`${scenario} ${target} run ${i + 1}/${runs}… `);
    const r = await SCENARIOS[scenario](target);
    process.stderr.write(`${r.value.toFixed(2)} ${r.unit}\n`);
    samples.push(r);
  }
  const values = samples.map((s) => s.value);
  results[target] = {
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    unit: samples[0].unit,
    cpuPerOpUs: median(samples.map((s) => s.cpuPerOpUs ?? NaN)),
    samples,
  };
}

const pkg = (name) => {
  try {
    return JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return 'n/a';
  }
};
const report = {
  scenario,
  date: new Date().toISOString(),
  machine: machine(),
  versions: { chatd: pkg('../'), 'socket.io': pkg('socket.io'), 'uWebSockets.js': pkg('uWebSockets.js') },
  runs,
  results,
};
const rows = Object.entries(results).map(
  ([t, r]) => `| ${t} | ${r.median.toFixed(2)} ${r.unit} | ${r.min.toFixed(2)}–${r.max.toFixed(2)} | ${Number.isFinite(r.cpuPerOpUs) ? r.cpuPerOpUs.toFixed(2) : '–'} |`,
);
const ratios = results.chatd
  ? Object.entries(results)
      .filter(([t]) => t !== 'chatd')
      .map(([t, r]) => `chatd / ${t}: ${(results.chatd.median / r.median).toFixed(2)}×`)
  : [];
const md = [`### ${scenario} (${report.date}, medians of ${runs})`, '', '| target | median | min–max | server CPU µs/op |', '|---|---|---|---|', ...rows, '', ...ratios].join('\n');
mkdirSync(path.join(root, 'bench/results'), { recursive: true });
const stamp = report.date.replace(/[:.]/g, '-');
writeFileSync(path.join(root, `bench/results/${scenario}-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(path.join(root, `bench/results/${scenario}-${stamp}.md`), `${md}\n`);
process.stdout.write(`${md}\n`);
