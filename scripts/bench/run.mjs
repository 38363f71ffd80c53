// `npm run bench -- <scenario|all> [--targets …] [--runs 3] [--quick] [--profile DIR] [--trace-gc DIR]
//  [--node-flags="…"] [--inflight 8,64,256]`
// --trace-gc writes each chatd process's `--trace-gc` lines to DIR/<process>-<pid>.gc.log (count them
// in the measured window with `scripts/bench/gc-count.mjs`); --node-flags adds V8/node flags to every
// chatd process (e.g. `--max-semi-space-size=32`, to compare against bin/chatd's defaults).
//
// Starts each server under test and the load generators as separate processes on 127.0.0.1
// (servers pinned to CPU 0, load generators to CPU 1 when taskset exists; every child's open-file
// limit raised to its hard limit with prlimit and reported), runs the scenario `--runs` times per
// target, and writes a Markdown table and a JSON file (machine, versions, medians, min–max, server
// CPU per operation, load average before/after every run) under bench/results/. Every run has a
// deadline; a scenario stops starting runs after 10 minutes (ingest: 30; multinode: 2 per run).
//
// Targets: `uws` (raw uWebSockets.js, native pub/sub, publish deferred to setImmediate: the ceiling),
// `socketio` (socket.io@4, same JWT check, same rooms, websocket transport; redis-adapter with two
// nodes; the same INSERT for stored messages), `chatd` (one chatd node, clients connect to it
// directly), `chatd-gw` (the same node behind a `chatd serve --role gateway` process: the gateway
// hop), `chatd-edge` (co-located: a `chatd serve --role gateway,ws` process serving sockets on its one
// listener, with an `api` process as its upstreams.api; clients connect only to the gateway,ws
// listener; both on Redis), `floor` (ingest only: one-row INSERT + one XADD per message, no server), `chatd-cluster`
// (multinode: the ws nodes on a Redis Cluster of three masters instead of one Redis),
// `chatd-pglite` (ingest: chatd on its embedded default, PGlite in its data folder, with Redis) and
// `floor-pglite` (ingest: the floor's INSERT + XADD on a PGlite opened the way chatd opens it).
//
// ingest: every target at each `--inflight` level (default 8,64,256 requests in flight), one row each.
//
// multinode: `--nodes 2,4,8` ws node processes (default 2); each run starts a Redis of its own (one
// redis-server, or a cluster of `--shards` masters for chatd-cluster: default 3, a comma list runs
// chatd-cluster once per shard count, labelled `chatd-cluster@<nodes>x<shards>`) so its CPU time per
// published event and per Redis node can be read. Its budget is 2 minutes per run (not 10 in all).
import { parseArgs } from 'node:util';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { childFdLimit, cpuSeconds, kill, machine, median, rssBytes, sleep, spawnPinned, waitForLine } from './lib/proc.mjs';
import { startRedis } from './lib/redis-servers.mjs';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: o, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    targets: { type: 'string' },
    runs: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    profile: { type: 'string' },
    'trace-gc': { type: 'string' },
    'node-flags': { type: 'string' },
    nodes: { type: 'string', default: '2' },
    shards: { type: 'string', default: '3' },
    inflight: { type: 'string', default: '8,64,256' },
    redis: { type: 'string', default: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    postgres: { type: 'string', default: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
  },
});
const runs = Number(o.runs);
const quick = o.quick;
const JWT_SECRET = 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const API_KEY = 'ck_pub_benchbenchbenchbench0001';
const SCENARIO_BUDGET_MS = 10 * 60_000;
const RUN_DEADLINE_MS = 180_000;

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const withDeadline = (p, ms, what) =>
  Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms).unref())]);

async function waitReady(port, child, what) {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) return;
    } catch {
      /* not up yet */
    }
    await sleep(100);
  }
  throw new Error(`${what} not ready on :${port} after 60 s`);
}

const unlimited = '{ rate: 1000000, burst: 1000000 }';
/** Writes a chatd config into a fresh folder; returns the folder. */
function chatdConfig({ port, role, durable, upstreams, tag, redis, pglite, behindGateway }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-bench-'));
  // A node behind the gateway trusts it (loopback) for its edge link and client IPs.
  const trust = behindGateway ? ", trustedProxies: ['127.0.0.1']" : '';
  const lines = [
    `server: { host: 127.0.0.1, port: ${port}, shutdownTimeoutMs: 2000${trust} }`,
    ...(role === 'ws' || role === 'api' ? [`roles: { ${role}: { host: 127.0.0.1, port: ${port} } }`] : []),
    'admin: { enabled: false }',
    "log: { level: 'warn', format: json }",
    `auth: { jwtSecret: ${JWT_SECRET}, gatewayApiKey: ${API_KEY} }`,
    `limits: { connectPerIp: ${unlimited}, handshakePerIp: ${unlimited}, pendingPerIp: 1000000, maxPendingConnections: 1000000, connectPerKey: ${unlimited}, httpPerIp: ${unlimited}, httpPerKey: ${unlimited}, messagesPerSocket: ${unlimited} }`,
    // Always the shared PostgreSQL (the embedded one is slow to start and not what a ws node runs);
    // Redis for the durable path (a stored message is INSERTed and XADDed) and for two nodes.
    // chatd-pglite: no database.url, so the embedded default (PGlite in <dataDir>/data, this folder).
    ...(role === 'gateway' || pglite ? [] : [`database: { url: "${o.postgres}", autoMigrate: true, schema: ${tag} }`]),
    ...(redis?.cluster
      ? [`redis: { cluster: { nodes: [${redis.urls.map((u) => `"${u}"`).join(', ')}] }, prefix: "${tag}:" }`]
      : durable
        ? [`redis: { url: "${redis?.urls[0] ?? o.redis}", prefix: "${tag}:" }`]
        : []),
    ...(upstreams
      ? [`upstreams: { api: [${upstreams.api.join(', ')}], ws: [${upstreams.ws.join(', ')}], healthCheckIntervalMs: 500 }`]
      : []),
  ];
  writeFileSync(path.join(dir, 'chat-server.yaml'), `${lines.join('\n')}\n`);
  return dir;
}

function spawnChatd(role, dir) {
  const nodeArgs = o.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(o.profile)}`] : [];
  if (o['trace-gc']) nodeArgs.push('--trace-gc');
  if (o['node-flags']) nodeArgs.push(...o['node-flags'].split(/\s+/).filter(Boolean));
  const child = spawnPinned(0, [...nodeArgs, path.join(root, 'bin/chatd'), 'serve', '--role', role], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    cwd: dir,
  });
  if (o['trace-gc']) {
    // --trace-gc prints on stdout: keep it, one file per process.
    mkdirSync(o['trace-gc'], { recursive: true });
    child.stdout.pipe(createWriteStream(path.join(o['trace-gc'], `${role.replace(/,/g, '+')}-${child.pid}.gc.log`)));
  } else child.stdout.resume();
  return child;
}

const url = (port) => `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`;

/**
 * Starts a target; resolves { procs: [{ name, child }], urls: [ws url per node], http, cleanup }.
 * `nodes` = 2 starts two nodes sharing Redis; `durable` gives the baselines PostgreSQL (their
 * `message` INSERTs before it broadcasts) and chatd Redis next to PostgreSQL (its production path).
 * Single-node, non-durable chatd runs with the in-process store, like the in-process baselines.
 */
async function startTarget(target, { nodes = 1, durable = false, redis } = {}) {
  const tag = `bench_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const procs = [];
  const urls = [];
  /** Config folders (chatd-pglite keeps its database in one): removed at cleanup. */
  const dirs = [];
  const startedAt = Date.now();
  let http;
  const baseEnv = { ...process.env, JWT_SECRET };
  if (durable) baseEnv.DATABASE_URL = o.postgres;
  baseEnv.BENCH_TABLE = tag;
  if (nodes > 1) Object.assign(baseEnv, { REDIS_URL: redis?.urls[0] ?? o.redis, REDIS_PREFIX: tag });
  switch (target) {
    case 'uws':
    case 'socketio': {
      if (target === 'uws' && nodes > 1) throw new Error('uws has no cross-node pub/sub');
      for (let i = 0; i < nodes; i++) {
        // Port 0: the server picks a free port and prints it (no window for another process to take it).
        const child = spawnPinned(0, [path.join(here, `servers/${target === 'uws' ? 'uws-raw' : 'socketio'}.mjs`)], {
          env: { ...baseEnv, PORT: '0' },
        });
        const port = Number((await waitForLine(child, /LISTENING (\d+)/, 60_000))[1]);
        child.stdout.resume();
        procs.push({ name: `${target}${i}`, child });
        urls.push(url(port));
      }
      break;
    }
    case 'chatd':
    case 'chatd-pglite':
    case 'chatd-cluster':
    case 'chatd-gw': {
      const multi = nodes > 1;
      const role = multi ? 'ws' : 'all';
      const nodePorts = [];
      for (let i = 0; i < nodes; i++) {
        const port = await freePort();
        const dir = chatdConfig({
          port,
          role,
          durable: durable || multi,
          tag,
          redis,
          pglite: target === 'chatd-pglite',
          behindGateway: target === 'chatd-gw',
        });
        dirs.push(dir);
        const child = spawnChatd(role, dir);
        procs.push({ name: `chatd-${role}${i}`, child });
        await waitReady(port, child, `chatd ${role}`);
        nodePorts.push(port);
      }
      if (target !== 'chatd-gw') {
        urls.push(...nodePorts.map(url));
        http = `http://127.0.0.1:${nodePorts[0]}`;
      } else {
        const port = await freePort();
        const up = nodePorts.map((p) => `"http://127.0.0.1:${p}"`);
        const child = spawnChatd('gateway', chatdConfig({ port, role: 'gateway', upstreams: { api: multi ? [] : up, ws: up }, tag }));
        procs.push({ name: 'gateway', child });
        await waitReady(port, child, 'chatd gateway');
        for (let i = 0; i < nodes; i++) urls.push(url(port));
        http = `http://127.0.0.1:${port}`;
      }
      break;
    }
    case 'chatd-edge': {
      // The api process first (it migrates the schema), then the edge with it as upstreams.api. Both
      // run on the store `chatd` runs on in the same scenario, so the ratio is the co-location's cost
      // and not the store's: Redis on the durable path (a message stored by the api process reaches
      // the edge's sockets over the bus), the in-process store otherwise (sockets only: the api
      // process is idle there).
      if (nodes > 1) throw new Error('chatd-edge runs one edge node');
      const apiPort = await freePort();
      const api = spawnChatd('api', chatdConfig({ port: apiPort, role: 'api', durable, tag, redis, behindGateway: true }));
      procs.push({ name: 'api', child: api });
      await waitReady(apiPort, api, 'chatd api');
      const port = await freePort();
      const up = { api: [`"http://127.0.0.1:${apiPort}"`], ws: [] };
      const edge = spawnChatd('gateway,ws', chatdConfig({ port, role: 'gateway,ws', durable, upstreams: up, tag, redis }));
      // The edge first: the memory scenario measures the first process that is not a bare gateway.
      procs.unshift({ name: 'chatd-edge', child: edge });
      await waitReady(port, edge, 'chatd gateway,ws');
      urls.push(url(port));
      http = `http://127.0.0.1:${port}`;
      break;
    }
    case 'floor':
    case 'floor-pglite':
      break;
    default:
      throw new Error(`unknown target ${target}`);
  }
  const cleanup = async () => {
    await Promise.all(procs.map((p) => kill(p.child, o.profile ? 180_000 : 5000)));
    if (durable || nodes > 1 || target !== 'uws') await dropTag(tag);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  };
  return { procs, urls, http, tag, cleanup, startedAt, redisPids: redis?.pids ?? [] };
}

/** Removes what a run left in the shared PostgreSQL and Redis (its schema, table and key prefix). */
async function dropTag(tag) {
  try {
    const pg = require('pg');
    const c = new pg.Client({ connectionString: o.postgres });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${tag} CASCADE`);
    await c.query(`DROP TABLE IF EXISTS ${tag}`);
    await c.end();
  } catch (err) {
    process.stderr.write(`cleanup (postgres) failed: ${err.message}\n`);
  }
  try {
    const { default: Redis } = await import('ioredis');
    const r = new Redis(o.redis, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${tag}*`, 'COUNT', 1000);
      if (keys.length) await r.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    r.disconnect();
  } catch (err) {
    process.stderr.write(`cleanup (redis) failed: ${err.message}\n`);
  }
}

/**
 * Runs a load generator pinned to CPU 1; resolves its RESULT JSON. With `srv`, the servers' CPU time
 * is read at the generator's WINDOW start/end marks (setup — connecting subscribers, warm-up — is
 * left out of the per-operation figure), and the window's offset from the servers' start is kept
 * (for `profile-top.mjs --from-ms/--to-ms`).
 */
async function loadgen(args, cpu = 1, srv = undefined) {
  const child = spawnPinned(cpu, [path.join(here, 'loadgen.mjs'), ...args, '--apiKey', API_KEY], { env: { ...process.env, JWT_SECRET } });
  const window = {};
  if (srv) {
    child.stdout.on('data', (chunk) => {
      const text = chunk.toString();
      if (text.includes('WINDOW start')) {
        window.cpuStart = cpuOf(srv);
        window.redisStart = srv.redisPids.map(cpuSeconds);
        window.fromMs = Date.now() - srv.startedAt;
      }
      if (text.includes('WINDOW end')) {
        window.cpuSeconds = cpuOf(srv) - window.cpuStart;
        window.redisCpuSeconds = srv.redisPids.map((pid, i) => cpuSeconds(pid) - window.redisStart[i]);
        window.toMs = Date.now() - srv.startedAt;
      }
    });
  }
  try {
    const m = await waitForLine(child, /RESULT (.*)\n/, RUN_DEADLINE_MS);
    const r = JSON.parse(m[1]);
    if (window.cpuSeconds !== undefined)
      r.window = { cpuSeconds: window.cpuSeconds, redisCpuSeconds: window.redisCpuSeconds, fromMs: window.fromMs, toMs: window.toMs };
    return r;
  } finally {
    await kill(child);
  }
}

const cpuOf = (srv) => srv.procs.reduce((s, p) => s + cpuSeconds(p.child.pid), 0);
const load = () => os.loadavg().map((x) => Number(x.toFixed(2)));

/** Starts the target, runs fn, records server CPU, fd limits and the load average around it. */
async function measure(target, opts, fn) {
  const loadBefore = load();
  const srv = await startTarget(target, opts);
  try {
    await sleep(300);
    const fdLimits = Object.fromEntries(srv.procs.map((p) => [p.name, childFdLimit(p.child.pid)]));
    const cpu0 = cpuOf(srv);
    const result = await withDeadline(fn(srv), RUN_DEADLINE_MS, `${target} run`);
    result.serverCpuSeconds = cpuOf(srv) - cpu0;
    result.fdLimits = fdLimits;
    result.loadBefore = loadBefore;
    result.loadAfter = load();
    return result;
  } finally {
    await srv.cleanup();
  }
}

/** Server CPU seconds in the measured window (the whole run when the generator marked none). */
const winCpu = (r) => r.window?.cpuSeconds ?? r.serverCpuSeconds;
const ratio = (a, b) => (a !== undefined && b !== undefined ? a / b : undefined);
/** One target of the issue, checked on this run's medians: `chatd ≥ 3× socketio: 3.41 — met`. */
const goal = (what, value, bound, op) => {
  if (value === undefined || !Number.isFinite(value)) return `${what}: not measured`;
  const ok = op === 'le' ? value <= bound : op === 'lt' ? value < bound : value >= bound;
  return `${what}: ${value.toFixed(2)} — ${ok ? 'met' : 'NOT met'}`;
};
const secs = (full) => String(quick ? 3 : full);
/** ingest's in-flight levels (`--inflight 8,64,256`). */
const inflightLevels = () => o.inflight.split(',').map((n) => String(Number(n)));
/**
 * Each memory load generator binds its own 127.0.0.x source address, a fresh one per generator
 * across all runs: the sockets a killed generator leaves in TIME_WAIT would otherwise make the next
 * run's binds scan a crowded port range.
 */
let sourceAddresses = 0;
const nextSourceAddress = () => 1 + (sourceAddresses++ % 250);

const SCENARIOS = {
  /** (1) Memory per idle authenticated connection at 5k, 10k, 15k (one server, three steps). */
  memory: {
    targets: ['uws', 'socketio', 'chatd', 'chatd-gw', 'chatd-edge'],
    goals: (m) => [
      goal('chatd ≤ 3.5 KB/conn', m.chatd, 3.5, 'le'),
      goal('chatd ≤ 0.25× socketio', ratio(m.chatd, m.socketio), 0.25, 'le'),
      // Co-located ≥ 0.9× direct: at most 1/0.9 of its memory per client.
      goal('chatd-edge ≤ 1.11× chatd (≥ 0.9× direct)', ratio(m['chatd-edge'], m.chatd), 1 / 0.9, 'le'),
      goal('chatd-gw gateway ≤ 4 KB/conn', m['chatd-gw:gateway'], 4, 'le'),
    ],
    async run(target) {
      const steps = quick ? [1000, 2000] : [5000, 10000, 15000];
      const perProcess = 5000; // ≤ 20,000 fds per process here; 5,000 each leaves room
      return measure(target, {}, async (srv) => {
        const gwProc = srv.procs.find((p) => p.name === 'gateway');
        const node = srv.procs.find((p) => p.name !== 'gateway');
        await sleep(500);
        const before = rssBytes(node.child.pid);
        const gwBefore = gwProc ? rssBytes(gwProc.child.pid) : 0;
        const gens = [];
        const perStep = {};
        let open = 0;
        let failed = 0;
        for (const n of steps) {
          while (open < n) {
            const count = Math.min(perProcess, n - open);
            const child = spawnPinned(
              1,
              [
                path.join(here, 'loadgen.mjs'),
                '--mode',
                'idle',
                '--url',
                srv.urls[0],
                '--n',
                String(count),
                '--srcBase',
                String(nextSourceAddress()),
                '--apiKey',
                API_KEY,
              ],
              {
                env: { ...process.env, JWT_SECRET },
              },
            );
            gens.push(child);
            const m = await waitForLine(child, /READY (\d+) failed=(\d+)/, RUN_DEADLINE_MS);
            open += count;
            failed += Number(m[2]);
          }
          await sleep(2000);
          const rss = rssBytes(node.child.pid);
          perStep[n] = { rss, kbPerConn: (rss - before) / (n - failed) / 1024 };
          if (gwProc) perStep[n].gatewayKbPerConn = (rssBytes(gwProc.child.pid) - gwBefore) / (n - failed) / 1024;
        }
        await Promise.all(gens.map(kill));
        const largest = Math.max(...Object.keys(perStep).map(Number));
        return {
          connections: largest,
          failed,
          rssBefore: before,
          perStep,
          value: perStep[largest].kbPerConn,
          ...(gwProc ? { gatewayKbPerConn: perStep[largest].gatewayKbPerConn } : {}),
          unit: `KB RSS/conn at ${largest}`,
        };
      });
    },
  },
  /** (2) Accept rate with JWT verification, 200 in flight. */
  accept: {
    targets: ['uws', 'socketio', 'chatd', 'chatd-gw', 'chatd-edge'],
    goals: (m) => [
      goal('chatd ≥ 3× socketio', ratio(m.chatd, m.socketio), 3, 'ge'),
      goal('chatd-edge ≥ 0.9× chatd', ratio(m['chatd-edge'], m.chatd), 0.9, 'ge'),
      goal('chatd-gw ≥ 2× socketio', ratio(m['chatd-gw'], m.socketio), 2, 'ge'),
    ],
    async run(target) {
      const n = quick ? 1000 : 5000;
      const r = await measure(target, {}, (srv) =>
        loadgen(['--mode', 'accept', '--url', srv.urls[0], '--n', String(n), '--inflight', '200'], 1, srv),
      );
      return { ...r, value: r.perSecond, unit: 'conn/s', cpuPerOpUs: (winCpu(r) / r.connected) * 1e6, higherIsBetter: true };
    },
  },
  /** (3) Fan-out of `typing` (not stored) to N subscribers of one conversation, 32 in flight. */
  fanout: {
    targets: ['uws', 'socketio', 'chatd', 'chatd-gw', 'chatd-edge'],
    goals: (m) => [
      goal('chatd ≥ 10× socketio', ratio(m.chatd, m.socketio), 10, 'ge'),
      goal('chatd ≥ 0.7× uws', ratio(m.chatd, m.uws), 0.7, 'ge'),
      goal('chatd-edge ≥ 0.9× chatd', ratio(m['chatd-edge'], m.chatd), 0.9, 'ge'),
      goal('chatd-gw ≥ 0.5× chatd', ratio(m['chatd-gw'], m.chatd), 0.5, 'ge'),
    ],
    async run(target) {
      const subs = quick ? 200 : 1000;
      const r = await measure(target, {}, (srv) =>
        loadgen(['--mode', 'fanout', '--url', srv.urls[0], '--subs', String(subs), '--inflight', '32', '--seconds', secs(5)], 1, srv),
      );
      return { ...r, value: r.perSecond, unit: 'deliveries/s', cpuPerOpUs: (winCpu(r) / r.delivered) * 1e6, higherIsBetter: true };
    },
  },
  /** (4a) Latency of `typing` at 600/s to a room of 100: p50/p99/p99.9. */
  'latency-typing': {
    targets: ['uws', 'socketio', 'chatd', 'chatd-gw', 'chatd-edge'],
    goals: (m) => [
      goal('chatd p99 ≤ 1.2× uws', ratio(m.chatd, m.uws), 1.2, 'le'),
      goal('chatd p99 < socketio', ratio(m.chatd, m.socketio), 1, 'lt'),
      goal('chatd-gw p99 ≤ 2× chatd', ratio(m['chatd-gw'], m.chatd), 2, 'le'),
    ],
    async run(target) {
      const r = await measure(target, {}, (srv) =>
        loadgen(
          ['--mode', 'latency', '--event', 'typing', '--url', srv.urls[0], '--subs', '100', '--rate', '600', '--seconds', secs(5)],
          1,
          srv,
        ),
      );
      return { ...r, value: r.p99, unit: 'ms p99', cpuPerOpUs: (winCpu(r) / Math.max(1, r.samples)) * 1e6 };
    },
  },
  /** (4b) Latency of a stored `message` (INSERT committed, acknowledged, delivered), 200/s, room of 100. */
  'latency-message': {
    targets: ['uws', 'socketio', 'chatd', 'chatd-gw'],
    goals: (m) => [goal('chatd p99 ≤ socketio (INSERT) p99', ratio(m.chatd, m.socketio), 1, 'le')],
    async run(target) {
      const r = await measure(target, { durable: true }, (srv) =>
        loadgen(
          ['--mode', 'latency', '--event', 'message', '--url', srv.urls[0], '--subs', '100', '--rate', '200', '--seconds', secs(5)],
          1,
          srv,
        ),
      );
      return { ...r, value: r.p99, unit: 'ms p99', cpuPerOpUs: (winCpu(r) / Math.max(1, r.samples)) * 1e6 };
    },
  },
  /**
   * (5) Ingest: POST /webchat/message at each `--inflight` level (8, 64, 256), against one-row INSERT +
   * one XADD per message (the floor) on the same PostgreSQL and pool size; and chatd on its embedded
   * default (PGlite) against the same floor on a PGlite.
   */
  ingest: {
    targets: ['floor', 'chatd', 'chatd-gw', 'chatd-edge', 'floor-pglite', 'chatd-pglite'],
    expand: (targets) => inflightLevels().flatMap((n) => targets.map((t) => `${t}@${n}`)),
    budgetMs: 30 * 60_000,
    goals: (m) =>
      inflightLevels().flatMap((n) => [
        goal(`chatd ≥ 1× floor at ${n} in flight`, ratio(m[`chatd@${n}`], m[`floor@${n}`]), 1, 'ge'),
        goal(`chatd-pglite ≥ 1× floor-pglite at ${n} in flight`, ratio(m[`chatd-pglite@${n}`], m[`floor-pglite@${n}`]), 1, 'ge'),
        goal(`chatd-edge ≥ 0.9× chatd at ${n} in flight`, ratio(m[`chatd-edge@${n}`], m[`chatd@${n}`]), 0.9, 'ge'),
      ]),
    async run(label) {
      const [target, concurrency] = label.split('@');
      const seconds = secs(5);
      const floor = target === 'floor' || target === 'floor-pglite';
      const r = await measure(target, { durable: true }, (srv) => {
        if (!floor) return loadgen(['--mode', 'ingest', '--http', srv.http, '--concurrency', concurrency, '--seconds', seconds], 1, srv);
        // The floor is the server here: on the servers' CPU.
        const db =
          target === 'floor-pglite'
            ? ['--pglite', path.join(mkdtempSync(path.join(os.tmpdir(), 'chatd-bench-floor-')), 'data')]
            : ['--postgres', o.postgres, '--pool', '10'];
        return loadgen(
          ['--mode', 'floor', ...db, '--redis', o.redis, '--table', srv.tag, '--concurrency', concurrency, '--seconds', seconds],
          0,
        ).finally(() => {
          if (target === 'floor-pglite') rmSync(path.dirname(db[1]), { recursive: true, force: true });
        });
      });
      const cpu = floor ? r.selfCpuSeconds : winCpu(r);
      return { ...r, value: r.perSecond, unit: 'messages/s', cpuPerOpUs: (cpu / Math.max(1, r.ok)) * 1e6, higherIsBetter: true };
    },
  },
  /**
   * (6) ws nodes over Redis (`--nodes 2,4,8`): a publisher per conversation on node 1, subscribers of
   * 8 conversations spread over the other nodes (fan-out), then `typing` latency across nodes; one
   * Redis vs a Redis Cluster of `--shards` masters (sharded pub/sub), each a Redis of the run's own,
   * with its CPU time per published event: per Redis node, in all, and in all per ws node (every ws
   * node holds subscribers of the tenant, so each event is written once to each node's connection).
   */
  multinode: {
    targets: ['socketio', 'chatd', 'chatd-gw', 'chatd-cluster'],
    expand: (targets) =>
      o.nodes
        .split(',')
        .flatMap((n) => targets.flatMap((t) => (t === 'chatd-cluster' ? shardCounts().map((m) => `${t}@${n}x${m}`) : [`${t}@${n}`]))),
    budgetPerRunMs: 120_000,
    /** The scale-out table (docs/benchmarks.md#redis-cluster): medians of each label's runs. */
    summary(results) {
      const rows = Object.entries(results)
        .filter(([, r]) => r.median !== undefined)
        .map(([t, r]) => {
          const med = (f) => f2(median(r.samples.map(f)));
          const s0 = r.samples[0];
          const perRedis = s0.redisCpuPerEventUs.map((_, i) => med((s) => s.redisCpuPerEventUs[i])).join(' / ');
          const redis = t.startsWith('chatd-cluster') ? `cluster, ${s0.redisNodes} masters` : 'one Redis';
          return `| ${s0.wsNodes} | ${t.split('@')[0]} | ${redis} | ${f2(r.median)} | ${f2(r.cpuPerOpUs)} | ${med((s) => s.latency.p50)} / ${med((s) => s.latency.p99)} | ${perRedis} | ${med((s) => s.redisCpuPerEventTotalUs)} | ${med((s) => s.redisCpuPerEventPerWsNodeUs)} | ${med((s) => s.fanout.sent)} |`;
        });
      return [
        '',
        'Scale-out (medians; Redis CPU µs per published event, idle CPU subtracted):',
        '',
        '| ws nodes | target | Redis | deliveries/s | chatd CPU µs/delivery | typing p50 / p99 ms | per Redis node | in all | in all per ws node | events published |',
        '|---|---|---|---|---|---|---|---|---|---|',
        ...rows,
      ];
    },
    async run(label) {
      const [target, spec] = label.split('@');
      const [nodes, shards = 0] = spec.split('x').map(Number);
      const redis = await startRedis({ masters: shards });
      try {
        const r = await measure(target, { nodes, redis }, async (srv) => {
          // Redis's own background work (a cluster's gossip, cron) over 2 idle seconds, subtracted below.
          const idle0 = srv.redisPids.map(cpuSeconds);
          await sleep(2000);
          const idlePerSecond = srv.redisPids.map((pid, i) => (cpuSeconds(pid) - idle0[i]) / 2);
          const subUrls = (srv.urls.length > 1 ? srv.urls.slice(1) : srv.urls).join(',');
          const f = await loadgen(
            ['--mode', 'fanout', '--url', subUrls, '--pubUrl', srv.urls[0], '--subs', quick ? '200' : '1000', '--rooms', '8',
              '--inflight', '32', '--seconds', secs(5)], // prettier-ignore
            1,
            srv,
          );
          const l = await loadgen(
            ['--mode', 'latency', '--event', 'typing', '--url', subUrls, '--pubUrl', srv.urls[0], '--subs', '100', '--rate', '600',
              '--seconds', secs(5)], // prettier-ignore
            1,
            srv,
          );
          return {
            fanout: f,
            latency: l,
            idlePerSecond,
            value: f.perSecond,
            unit: 'deliveries/s',
            delivered: f.delivered,
            window: f.window,
            higherIsBetter: true,
          };
        });
        const redisCpu = r.fanout.window?.redisCpuSeconds ?? [];
        const perEventUs = redisCpu.map(
          (c, i) => (Math.max(0, c - r.idlePerSecond[i] * r.fanout.seconds) / Math.max(1, r.fanout.sent)) * 1e6,
        );
        const totalUs = perEventUs.reduce((a, b) => a + b, 0);
        const l = r.latency;
        return {
          ...r,
          wsNodes: nodes,
          redisNodes: redis.pids.length,
          cpuPerOpUs: (winCpu(r) / r.delivered) * 1e6,
          redisCpuPerEventUs: perEventUs,
          redisCpuPerEventTotalUs: totalUs,
          redisCpuPerEventPerWsNodeUs: totalUs / nodes,
          extra:
            `${nodes} ws nodes, ${shards ? `cluster of ${shards} masters` : 'one Redis'}; typing p50/p99/p99.9 ` +
            `${l.p50.toFixed(2)}/${l.p99.toFixed(2)}/${l.p999.toFixed(2)} ms; Redis CPU µs per published event ` +
            `(idle CPU subtracted), per Redis node: ${perEventUs.map((x) => x.toFixed(1)).join(' / ')}; ` +
            `in all ${totalUs.toFixed(1)}, per ws node ${(totalUs / nodes).toFixed(2)}; events published ${r.fanout.sent}`,
        };
      } finally {
        await redis.stop();
      }
    },
  },
};

/** multinode's cluster sizes (`--shards 3`, or a list): masters of chatd-cluster's Redis Cluster. */
function shardCounts() {
  const counts = o.shards.split(',').map(Number);
  for (const m of counts)
    if (!Number.isInteger(m) || m < 3) throw new Error(`--shards: ${m} is not a master count of 3 or more (redis-cli --cluster create)`);
  return counts;
}

const pkg = (name) => {
  try {
    return JSON.parse(readFileSync(path.join(root, name === '.' ? 'package.json' : `node_modules/${name}/package.json`), 'utf8')).version;
  } catch {
    return 'n/a';
  }
};

async function runScenario(scenario) {
  const def = SCENARIOS[scenario];
  const chosen = o.targets ? o.targets.split(',').filter((t) => def.targets.includes(t)) : def.targets;
  const targets = def.expand ? def.expand(chosen) : chosen;
  const started = Date.now();
  const budgetMs = def.budgetMs ?? (def.budgetPerRunMs ? def.budgetPerRunMs * targets.length * runs : SCENARIO_BUDGET_MS);
  const results = {};
  for (const target of targets) {
    const samples = [];
    const errors = [];
    for (let i = 0; i < runs; i++) {
      if (Date.now() - started > budgetMs) {
        errors.push(`scenario budget (${budgetMs / 60_000} min) spent: run skipped`);
        break;
      }
      process.stderr.write(`${scenario} ${target} run ${i + 1}/${runs}… `);
      try {
        const r = await def.run(target);
        process.stderr.write(`${r.value.toFixed(2)} ${r.unit} (load ${r.loadBefore[0]}→${r.loadAfter[0]})\n`);
        samples.push(r);
      } catch (err) {
        process.stderr.write(`failed: ${err.message}\n`);
        errors.push(err.message);
      }
    }
    if (samples.length === 0) {
      results[target] = { errors };
      continue;
    }
    const values = samples.map((s) => s.value);
    const med = (f) => median(samples.map(f).filter((x) => Number.isFinite(x)));
    results[target] = {
      median: median(values),
      min: Math.min(...values),
      max: Math.max(...values),
      unit: samples[0].unit,
      higherIsBetter: !!samples[0].higherIsBetter,
      cpuPerOpUs: med((s) => s.cpuPerOpUs ?? NaN),
      p50: med((s) => s.p50 ?? NaN),
      p999: med((s) => s.p999 ?? NaN),
      loadBefore: samples.map((s) => s.loadBefore[0]),
      loadAfter: samples.map((s) => s.loadAfter[0]),
      runs: samples.length,
      errors,
      samples,
    };
  }
  const report = {
    scenario,
    date: new Date().toISOString(),
    machine: machine(),
    versions: {
      chatd: pkg('.'),
      'socket.io': pkg('socket.io'),
      '@socket.io/redis-adapter': pkg('@socket.io/redis-adapter'),
      'uWebSockets.js': pkg('uWebSockets.js'),
      pg: pkg('pg'),
      ioredis: pkg('ioredis'),
    },
    runsPerTarget: runs,
    quick,
    results,
  };
  const medians = Object.fromEntries(
    Object.entries(results)
      .filter(([, r]) => r.median !== undefined)
      .flatMap(([t, r]) => {
        const gw = r.samples.map((x) => x.gatewayKbPerConn).filter(Number.isFinite);
        return gw.length
          ? [
              [t, r.median],
              [`${t}:gateway`, median(gw)],
            ]
          : [[t, r.median]];
      }),
  );
  report.goals = def.goals ? def.goals(medians) : [];
  report.summary = def.summary ? def.summary(results) : [];
  writeReport(report);
  return report;
}

const f2 = (x) => (Number.isFinite(x) ? (Math.abs(x) >= 1000 ? Math.round(x).toLocaleString('en-US') : x.toFixed(2)) : '–');

function writeReport(report) {
  const { scenario, results } = report;
  const rows = Object.entries(results).map(([t, r]) => {
    if (!r.median && r.median !== 0) return `| ${t} | failed: ${r.errors.join('; ').slice(0, 120)} | | | | |`;
    const lat = Number.isFinite(r.p50) ? ` (p50 ${f2(r.p50)}, p99.9 ${f2(r.p999)})` : '';
    const extra = r.samples[0].extra ? ` ${r.samples.map((s) => s.extra).join('; ')}` : '';
    const mem = r.samples[0].perStep
      ? ` (${Object.entries(r.samples[0].perStep)
          .map(
            ([n, s]) =>
              `${n}: ${median(r.samples.map((x) => x.perStep[n]?.kbPerConn ?? NaN).filter(Number.isFinite)).toFixed(2)}${s.gatewayKbPerConn !== undefined ? ` + gw ${s.gatewayKbPerConn.toFixed(2)}` : ''}`,
          )
          .join(', ')})`
      : '';
    return `| ${t} | ${f2(r.median)} ${r.unit}${lat}${mem}${extra} | ${f2(r.min)}–${f2(r.max)} | ${f2(r.cpuPerOpUs)} | ${r.runs}${r.errors.length ? ` (${r.errors.length} failed)` : ''} | ${r.loadBefore.join('/')} → ${r.loadAfter.join('/')} |`;
  });
  const ratios = [];
  const base = results['chatd'];
  if (base?.median !== undefined) {
    for (const [t, r] of Object.entries(results)) {
      if (t === 'chatd' || r.median === undefined) continue;
      ratios.push(`chatd / ${t}: ${(base.median / r.median).toFixed(2)}×`);
    }
  }
  const gw = results['chatd-gw'];
  if (base?.median !== undefined && gw?.median !== undefined)
    ratios.push(
      `gateway hop: chatd-gw / chatd = ${(gw.median / base.median).toFixed(2)}×, server CPU/op ${f2(gw.cpuPerOpUs)} vs ${f2(base.cpuPerOpUs)} µs`,
    );
  const edge = results['chatd-edge'];
  if (base?.median !== undefined && edge?.median !== undefined)
    ratios.push(
      `co-located edge: chatd-edge / chatd = ${(edge.median / base.median).toFixed(2)}×, server CPU/op ${f2(edge.cpuPerOpUs)} vs ${f2(base.cpuPerOpUs)} µs`,
    );
  const m = report.machine;
  const md = [
    `### ${scenario} (${report.date}, medians of ${report.runsPerTarget}${report.quick ? ', --quick' : ''})`,
    '',
    `${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, ${m.node}, ${m.kernel}; taskset ${m.taskset ? 'yes (servers CPU 0, load generators CPU 1)' : 'no'}; fd limit ${m.fdLimit.soft}/${m.fdLimit.hard}`,
    '',
    '| target | median | min–max | server CPU µs/op | runs | load avg (1 min) before → after each run |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    ...ratios.map((r) => `- ${r}`),
    ...report.goals.map((g) => `- target ${g}`),
    ...report.summary,
  ].join('\n');
  mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  // A run of some targets only gets its own files instead of overwriting the full run's.
  const name = o.targets ? `${scenario}-${o.targets.replace(/,/g, '+')}` : scenario;
  writeFileSync(path.join(root, `bench/results/${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(path.join(root, `bench/results/${name}.md`), `${md}\n`);
  process.stdout.write(`${md}\n\n`);
}

const scenario = positionals[0];
const list = scenario === 'all' ? Object.keys(SCENARIOS) : [scenario];
if (!list.every((s) => SCENARIOS[s])) {
  process.stderr.write(
    `usage: npm run bench -- <${[...Object.keys(SCENARIOS), 'all'].join('|')}> [--targets a,b] [--runs 3] [--quick] [--profile DIR] [--nodes 2,4,8] [--shards 3]\n`,
  );
  process.exit(2);
}
const reports = [];
for (const s of list) reports.push(await runScenario(s));
if (scenario === 'all') {
  const parts = list.map((s) =>
    readFileSync(path.join(root, `bench/results/${o.targets ? `${s}-${o.targets.replace(/,/g, '+')}` : s}.md`), 'utf8'),
  );
  writeFileSync(path.join(root, 'bench/results/summary.md'), `${parts.join('\n')}`);
}
process.exit(0);
