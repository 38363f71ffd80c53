#!/usr/bin/env node
// What one GET /api/chat/availability costs the server (docs/offline.md, "Cost per call"):
//   node scripts/bench/availability.mjs [--store embedded|redis|both] [--calls 20000] [--concurrency 8]
//        [--hours open|closed|none] [--idle-seconds 5] [--postgres postgres://…]
// Starts `chatd serve --role all` (the built CLI, so `npm run build` first) with one tenant — business
// hours in Europe/Paris, an away message — on the embedded defaults (in-process store, PGlite) and/or
// on Redis (a redis-server of its own, so its INFO commandstats counts chatd's commands only) and the
// shared PostgreSQL (a schema of its own, dropped at the end). Rate limits stay on (with buckets
// no run empties), as in production. For each store it sends `--calls` requests with the
// publishable key from `--concurrency` keep-alive clients, and reports per call: the server's CPU
// time (user + system from /proc, minus what the idle server used over as long), the Redis commands
// by name and the database queries (counted in the server by lib/count-queries.mjs, every pg or
// PGlite query; background work subtracted the same way), and the Cache-Control the answer carries
// (what spares the server a browser's repeated calls). Then times the computation alone
// (`availabilityOf`) in this process. Prints one JSON line per store and a table.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { cpuSeconds, kill, machine, percentile, sleep, spawnPinned } from './lib/proc.mjs';
import { startRedis } from './lib/redis-servers.mjs';
import { importBundled } from './lib/bundle.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: o } = parseArgs({
  options: {
    store: { type: 'string', default: 'both' },
    calls: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '8' },
    hours: { type: 'string', default: 'open' },
    'idle-seconds': { type: 'string', default: '5' },
    postgres: {
      type: 'string',
      default: process.env.DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    },
  },
});
const CALLS = Number(o.calls);
const CONCURRENCY = Number(o.concurrency);
const IDLE_MS = Number(o['idle-seconds']) * 1000;
const KEY = `ck_pub_bench_${randomBytes(12).toString('hex')}`;
const TENANT = 'acme';

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

function hoursYaml() {
  const all = '[mon, tue, wed, thu, fri, sat, sun]';
  if (o.hours === 'none') return [];
  // closed: open one hour a week, so nearly every call also places nextOpenAt.
  const range = o.hours === 'closed' ? '{ days: [sun], from: "03:00", to: "04:00" }' : `{ days: ${all}, from: "00:00", to: "24:00" }`;
  return [`    businessHours: { timeZone: Europe/Paris, weekly: [${range}] }`];
}

function configYaml({ port, redisUrl, schema }) {
  const big = '{ rate: 1000000, burst: 1000000 }';
  return [
    `server: { host: 127.0.0.1, port: ${port}, shutdownTimeoutMs: 2000 }`,
    'admin: { enabled: false }',
    'demo: { enabled: false }',
    "log: { level: 'warn', format: json }",
    `auth: { jwtSecret: ${randomBytes(24).toString('hex')} }`,
    `limits: { httpPerIp: ${big}, httpPerKey: ${big} }`,
    ...(redisUrl ? [`redis: { url: "${redisUrl}" }`, `database: { url: "${o.postgres}", schema: ${schema}, autoMigrate: true }`] : []),
    'tenants:',
    `  - id: ${TENANT}`,
    `    apiKeys: [{ key: ${KEY} }]`,
    "    allowedOrigins: ['*']",
    ...hoursYaml(),
    '    awayMessage: "We are away right now: leave your email and we will answer."',
    '    expectedReplySeconds: 3600',
    '',
  ].join('\n');
}

/**
 * Every command Redis runs while attached, by name: those a client sent (round trips, pipelined or
 * not) apart from those a Lua script ran inside one (MONITOR marks them "lua"). The Redis server is
 * the benchmark's own, so every client command is chatd's.
 */
function monitorRedis(redisUrl) {
  const sent = {};
  const inScripts = {};
  if (!redisUrl) return Promise.resolve({ stop: async () => ({ sent, inScripts }) });
  const { port } = new URL(redisUrl);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1');
    let buf = '';
    let started = false;
    s.on('error', reject);
    s.on('connect', () => s.write('*1\r\n$7\r\nMONITOR\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (!started) {
          started = line === '+OK';
          if (started)
            resolve({
              stop: () =>
                new Promise((done) => {
                  s.destroy();
                  done({ sent, inScripts });
                }),
            });
          continue;
        }
        const m = /^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line);
        if (!m) continue;
        const into = m[1] === 'lua' ? inScripts : sent;
        const cmd = m[2].toLowerCase();
        into[cmd] = (into[cmd] ?? 0) + 1;
      }
    });
  });
}

async function dbQueries(pid, file) {
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 100; i++) {
    await sleep(20);
    try {
      const c = JSON.parse(readFileSync(file, 'utf8'));
      rmSync(file);
      return c.pg + c.pglite;
    } catch {
      // not written yet
    }
  }
  throw new Error('the server did not report its query counts');
}

/** Runs `during` and returns what the server did meanwhile: wall time, CPU, Redis commands, queries. */
async function window(child, countsFile, redisUrl, during) {
  const db0 = await dbQueries(child.pid, countsFile);
  const monitor = await monitorRedis(redisUrl);
  const at = performance.now();
  const cpu = cpuSeconds(child.pid);
  const result = await during();
  const ms = performance.now() - at;
  const cpuUsed = cpuSeconds(child.pid) - cpu;
  await sleep(100); // the last replies' MONITOR lines
  const redis = await monitor.stop();
  return { ms, cpu: cpuUsed, redis, db: (await dbQueries(child.pid, countsFile)) - db0, result };
}

async function hammer(url, calls) {
  const latencies = [];
  const statuses = {};
  const cacheControl = new Set();
  let next = 0;
  const worker = async () => {
    while (next < calls) {
      next++;
      const t = performance.now();
      const r = await fetch(url, { headers: { authorization: `Bearer ${KEY}` } });
      await r.arrayBuffer();
      latencies.push(performance.now() - t);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      cacheControl.add(r.headers.get('cache-control'));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  latencies.sort((x, y) => x - y);
  return { statuses, cacheControl: [...cacheControl], p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

async function measure(store) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-bench-avail-'));
  const schema = `bench_avail_${process.pid}_${randomBytes(3).toString('hex')}`;
  const redis = store === 'redis' ? await startRedis({ cpu: 1 }) : undefined;
  const redisUrl = redis?.urls[0];
  const port = await freePort();
  writeFileSync(path.join(dir, 'chat-server.yaml'), configYaml({ port, redisUrl, schema }));
  const countsFile = path.join(dir, 'counts.json');
  const child = spawnPinned(
    0,
    ['--import', path.join(here, 'lib/count-queries.mjs'), path.join(root, 'bin/chatd'), 'serve', '--role', 'all'],
    {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, CHATD_BENCH_COUNTS: countsFile },
    },
  );
  child.stdout.resume();
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`chatd exited with ${child.exitCode}`);
      const up = await fetch(`${base}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (up) break;
      if (i > 1200) throw new Error('chatd not ready within 120 s');
      await sleep(100);
    }
    const url = `${base}/api/chat/availability?tenantId=${TENANT}`;
    const sample = await fetch(url, { headers: { authorization: `Bearer ${KEY}` } });
    const answer = await sample.json();
    await hammer(url, Math.min(2000, CALLS)); // warm-up: JIT, connections, caches
    await sleep(1000);
    const idle = await window(child, countsFile, redisUrl, () => sleep(IDLE_MS));
    const busy = await window(child, countsFile, redisUrl, () => hammer(url, CALLS));
    // Background work (presence heartbeats, sweeps, pollers) at the idle rate over the busy window.
    const scale = busy.ms / idle.ms;
    const perCall = (busyN, idleN) => Math.max(0, busyN - idleN * scale) / CALLS;
    const redisPerCall = (kind) => {
      const out = {};
      for (const [k, v] of Object.entries(busy.redis[kind])) {
        const n = perCall(v, idle.redis[kind][k] ?? 0);
        if (n >= 0.0005) out[k] = Number(n.toFixed(3));
      }
      return out;
    };
    const sent = redisPerCall('sent');
    return {
      store,
      hours: o.hours,
      calls: CALLS,
      concurrency: CONCURRENCY,
      answer,
      ...busy.result,
      reqPerSec: Math.round(CALLS / (busy.ms / 1000)),
      serverCpuUsPerCall: Math.round(perCall(busy.cpu, idle.cpu) * 1e6),
      idleServerCpuPerSec: Number((idle.cpu / (idle.ms / 1000)).toFixed(4)),
      redisRoundTripsPerCall: Number(
        Object.values(sent)
          .reduce((a, b) => a + b, 0)
          .toFixed(3),
      ),
      redisCommandsSentPerCall: sent,
      redisCommandsInScriptsPerCall: redisPerCall('inScripts'),
      dbQueriesPerCall: Number(perCall(busy.db, idle.db).toFixed(4)),
      dbQueriesDuringCalls: busy.db,
      dbQueriesIdle: idle.db,
    };
  } finally {
    await kill(child);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
    if (store === 'redis') {
      const c = new pg.Client({ connectionString: o.postgres });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    }
  }
}

/** The computation alone (`availabilityOf`, what every call runs after its one read), in process. */
async function computation() {
  const { availabilitySettings, availabilityOf } = await importBundled(
    path.join(root, 'src/chat/availability.ts'),
    path.join(root, 'node_modules', '.cache', 'chatd-bench', `availability-${process.pid}.mjs`),
    { target: 'node20' },
  );
  const all = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
  const cases = {
    none: {},
    open: { businessHours: { timeZone: 'Europe/Paris', weekly: [{ days: all, from: '00:00', to: '24:00' }], exceptions: [] } },
    closed: { businessHours: { timeZone: 'Europe/Paris', weekly: [{ days: ['sun'], from: '03:00', to: '04:00' }], exceptions: [] } },
  };
  const out = {};
  for (const [name, t] of Object.entries(cases)) {
    const settings = availabilitySettings({ ...t, awayMessage: 'away', expectedReplySeconds: 60 });
    const n = name === 'none' ? 2_000_000 : 100_000;
    let sink = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sink += availabilityOf(settings, i & 1, Date.now()).available ? 1 : 0;
    out[name] = Number((((performance.now() - t0) * 1000) / n).toFixed(3));
    if (sink < 0) console.log(sink);
  }
  return out;
}

const stores = o.store === 'both' ? ['embedded', 'redis'] : [o.store];
const loadBefore = os.loadavg();
const results = [];
for (const store of stores) {
  const r = await measure(store);
  results.push(r);
  console.log(JSON.stringify(r));
}
const computed = await computation();
console.log(JSON.stringify({ computationUsPerCall: computed }));
const m = machine();
console.log(
  `\n${m.cpus}× ${m.cpuModel}, node ${m.node}; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} after`,
);
console.log('| store | server CPU / call | Redis round trips / call | DB queries / call | req/s (client-bound) | Cache-Control |');
console.log('|---|---|---|---|---|---|');
const list = (x) =>
  Object.entries(x)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
for (const r of results) {
  const inside = list(r.redisCommandsInScriptsPerCall);
  const redis = `${r.redisRoundTripsPerCall}${r.redisRoundTripsPerCall ? ` (${list(r.redisCommandsSentPerCall)}${inside ? `; inside the scripts: ${inside}` : ''})` : ''}`;
  console.log(
    `| ${r.store} | ${r.serverCpuUsPerCall} µs | ${redis} | ${r.dbQueriesPerCall} | ${r.reqPerSec} | ${r.cacheControl.join(' ')} |`,
  );
}
