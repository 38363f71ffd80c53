#!/usr/bin/env node
// Soak: a bounded run of mixed traffic against one `chatd serve --role all` process, with reconnect
// storms and connection churn, sampling the server's RSS, heap and event-loop lag (from its admin
// /metrics) over time, so a leak or a stall shows as a trend. Not part of CI.
//
//   npm run soak                                   # 10 minutes
//   node scripts/soak/run.mjs --minutes 2 --visitors 40 --sample 10
//   REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npm run soak
//
// Without REDIS_URL/DATABASE_URL it runs on the embedded defaults (memory store, PGlite). With them it
// uses a unique key prefix and schema, dropped at the end. It also checks delivery: every message a
// visitor got an ack for must reach that visitor's socket exactly once (recovered across the storms);
// the exit code is non-zero if any is lost or duplicated.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { io } from 'socket.io-client';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: o } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    visitors: { type: 'string', default: '50' },
    sample: { type: 'string', default: '15' }, // seconds between samples
    storm: { type: 'string', default: '60' }, // seconds between reconnect storms
    rate: { type: 'string', default: '1' }, // messages per visitor per second
  },
});
const MINUTES = Math.min(Number(o.minutes), 120);
const VISITORS = Math.min(Number(o.visitors), 2000);
const SAMPLE_MS = Number(o.sample) * 1000;
const STORM_MS = Number(o.storm) * 1000;
const PAUSE_MS = 1000 / Number(o.rate);
const PUB = 'ck_pub_soak_0123456789abcdef0123';
const SEC = 'ck_sec_soak_0123456789abcdef0123';
const TENANT = 'soak';
const JWT_SECRET = `soak-${randomBytes(16).toString('hex')}`;
const ADMIN = `adm-${randomBytes(16).toString('hex')}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (b) => (b / 1048576).toFixed(1);

// ------------------------------------------------------------------ the server
const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-soak-'));
const schema = `soak_${randomBytes(4).toString('hex')}`;
const config = {
  nodeId: 'soak',
  server: { host: '127.0.0.1', port: 0 },
  admin: { port: 0, token: ADMIN },
  log: { level: 'info', format: 'json' },
  tenants: [{ id: TENANT, apiKeys: [{ key: PUB }, { key: SEC }], allowedOrigins: ['*'] }],
  limits: {
    httpPerIp: { rate: 100000, burst: 100000 },
    httpPerKey: { rate: 100000, burst: 100000 },
    connectPerIp: { rate: 100000, burst: 100000 },
    handshakePerIp: { rate: 100000, burst: 100000 },
    pendingPerIp: 100000,
    maxPendingConnections: 100000,
    connectPerKey: { rate: 100000, burst: 100000 },
  },
  ...(process.env.REDIS_URL ? { redis: { url: process.env.REDIS_URL, prefix: `soak:${randomBytes(4).toString('hex')}:` } } : {}),
  ...(process.env.DATABASE_URL ? { database: { url: process.env.DATABASE_URL, schema, autoMigrate: true } } : {}),
};
writeFileSync(path.join(dir, 'chat-server.yaml'), JSON.stringify(config, null, 2));
const child = spawn(process.execPath, [path.join(root, 'bin/chatd'), 'serve', '--role', 'all'], {
  cwd: dir,
  env: { PATH: process.env.PATH, HOME: process.env.HOME, JWT_SECRET },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let errors = 0;
const ports = {};
let stdoutBuf = '';
child.stdout.setEncoding('utf8').on('data', (chunk) => {
  stdoutBuf += chunk;
  const lines = stdoutBuf.split('\n');
  stdoutBuf = lines.pop();
  for (const line of lines) {
    try {
      const rec = JSON.parse(line);
      if (rec.listener && rec.url) ports[rec.listener] = Number(new URL(rec.url).port);
      if (rec.level >= 50) {
        errors++;
        if (errors <= 5) console.error(`server error: ${line.slice(0, 400)}`);
      }
    } catch {
      /* not JSON */
    }
  }
});
child.stderr.setEncoding('utf8').on('data', (c) => process.stderr.write(c));
let exited = false;
child.on('exit', (code) => {
  exited = true;
  if (!stopping) {
    console.error(`chatd exited unexpectedly with ${code}`);
    process.exitCode = 2;
  }
});
let stopping = false;

const deadline = Date.now() + 180_000;
while (!(ports.public && ports.admin)) {
  if (exited || Date.now() > deadline) throw new Error('chatd did not start');
  await sleep(100);
}
const base = `http://127.0.0.1:${ports.public}`;
const admin = `http://127.0.0.1:${ports.admin}`;
while (
  (await fetch(`${base}/readyz`)
    .then((r) => r.status)
    .catch(() => 0)) !== 200
) {
  if (Date.now() > deadline) throw new Error('chatd did not become ready');
  await sleep(250);
}

async function post(p, cred, body) {
  const r = await fetch(`${base}${p}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${cred}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}

// ------------------------------------------------------------------ the clients
const visitors = [];
const totals = { acked: 0, refused: 0, failed: 0, storms: 0, churned: 0, reconnects: 0, recoveredFalse: 0 };
async function addVisitor(i) {
  const sessionId = `soak-${i}`;
  const fingerprint = `fp-${i}`;
  const t = await post('/api/chat/anonymous-token', PUB, { tenantId: TENANT, sessionId, fingerprint });
  if (t.status !== 200) throw new Error(`token: ${t.status} ${JSON.stringify(t.body)}`);
  const socket = io(base, {
    auth: { apiKey: PUB, token: t.body.token, sessionId, fingerprint },
    transports: i % 3 === 0 ? ['polling', 'websocket'] : ['websocket'],
    reconnectionDelay: 200,
    reconnectionDelayMax: 3000,
  });
  const v = { sessionId, fingerprint, token: t.body.token, socket, acked: new Set(), got: new Map(), dup: 0, reset: 0 };
  socket.on('meta_message_created', (p) => {
    const id = p.message.id;
    if (v.got.has(id)) v.dup++;
    v.got.set(id, true);
  });
  let first = true;
  socket.on('connect', () => {
    if (!first) {
      totals.reconnects++;
      // Not recovered: what was owed before is refetched over HTTP by a real widget; stop owing it.
      if (!socket.recovered) {
        totals.recoveredFalse++;
        v.reset++;
        v.acked.clear();
        v.got.clear();
      }
    }
    first = false;
  });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', (e) => !socket.active && reject(e));
  });
  visitors.push(v);
  return v;
}

let running = true;
async function sendLoop(v, i) {
  let n = 0;
  await sleep((i * PAUSE_MS) / VISITORS); // spread the load
  while (running) {
    const body = {
      text: `soak ${n} ${v.sessionId}`,
      tenantId: TENANT,
      sessionId: v.sessionId,
      fingerprint: v.fingerprint,
      clientMessageId: `${v.sessionId}-${n}`,
    };
    try {
      if (n % 2 === 0 && v.socket.connected) {
        const ack = await v.socket.timeout(30_000).emitWithAck('message', body);
        if (ack.success) {
          totals.acked++;
          v.acked.add(ack.messageId);
        } else totals.refused++;
      } else {
        const r = await post('/webchat/message', v.token, body);
        if (r.status === 200) {
          totals.acked++;
          v.acked.add(r.body.messageId);
        } else totals.refused++;
      }
    } catch {
      totals.failed++;
    }
    n++;
    await sleep(PAUSE_MS);
  }
}

async function metrics() {
  const text = await fetch(`${admin}/metrics`).then((r) => r.text());
  // The sum over the metric's label sets (NaN when absent).
  const get = (name) => {
    const all = [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'gm'))];
    return all.length ? all.reduce((n, m) => n + Number(m[1]), 0) : NaN;
  };
  return {
    rss: get('chatd_process_resident_memory_bytes'),
    heap: get('chatd_nodejs_heap_size_used_bytes'),
    lagP99: get('chatd_nodejs_eventloop_lag_p99_seconds'),
    lagMax: get('chatd_nodejs_eventloop_lag_max_seconds'),
    sockets: get('chatd_socket_connections'),
  };
}

console.log(
  `soak: ${MINUTES} min, ${VISITORS} visitors at ${o.rate} msg/s each, a reconnect storm every ${o.storm} s; ${process.env.DATABASE_URL ? 'Redis + PostgreSQL' : 'embedded defaults'}; server ${base}`,
);
for (let i = 0; i < VISITORS; i++) await addVisitor(i);
const agentToken = (await post('/api/chat/agent-token', SEC, { tenantId: TENANT, userId: 'soak-agent' })).body.token;
const agent = io(base, { auth: { token: agentToken }, transports: ['websocket'] });
let agentGot = 0;
agent.on('meta_message_created', () => agentGot++);
const loops = visitors.map((v, i) => sendLoop(v, i));

const samples = [];
const t0 = Date.now();
const end = t0 + MINUTES * 60_000;
let nextStorm = t0 + STORM_MS;
const header = `${'t(s)'.padStart(6)} ${'rss MB'.padStart(8)} ${'heap MB'.padStart(8)} ${'lag p99 ms'.padStart(10)} ${'lag max ms'.padStart(10)} ${'sockets'.padStart(8)} ${'acked'.padStart(8)} ${'reconnects'.padStart(10)}`;
console.log(header);
while (Date.now() < end && !exited) {
  await sleep(Math.min(SAMPLE_MS, Math.max(0, end - Date.now())));
  if (Date.now() >= nextStorm) {
    // Reconnect storm: every visitor's transport drops at once; they come back and recover.
    totals.storms++;
    for (const v of visitors) v.socket.io.engine?.close();
    // Churn: short-lived sockets that connect and leave (presence online/offline, stream attach/release).
    const churn = await Promise.allSettled(
      Array.from({ length: Math.min(100, VISITORS) }, async (_, k) => {
        const s = io(base, { auth: { token: agentToken }, transports: ['websocket'], reconnection: false, forceNew: true });
        await new Promise((r) => (s.once('connect', r), s.once('connect_error', r)));
        s.close();
        return k;
      }),
    );
    totals.churned += churn.length;
    nextStorm += STORM_MS;
  }
  const m = await metrics().catch(() => undefined);
  if (!m) continue;
  const s = { t: Math.round((Date.now() - t0) / 1000), ...m, acked: totals.acked, reconnects: totals.reconnects };
  samples.push(s);
  console.log(
    `${String(s.t).padStart(6)} ${mb(s.rss).padStart(8)} ${mb(s.heap).padStart(8)} ${(s.lagP99 * 1000).toFixed(1).padStart(10)} ${(s.lagMax * 1000).toFixed(1).padStart(10)} ${String(s.sockets).padStart(8)} ${String(s.acked).padStart(8)} ${String(s.reconnects).padStart(10)}`,
  );
}

// ------------------------------------------------------------------ wind down and check
running = false;
await Promise.all(loops);
const settleBy = Date.now() + 60_000;
const missing = () => visitors.reduce((n, v) => n + [...v.acked].filter((id) => !v.got.has(id)).length, 0);
while (missing() > 0 && Date.now() < settleBy) await sleep(250);
const lost = missing();
const dups = visitors.reduce((n, v) => n + v.dup, 0);
for (const v of visitors) v.socket.close();
agent.close();

const warm = samples.filter((s) => s.t >= Math.min(60, (MINUTES * 60) / 4));
const first = warm[0] ?? samples[0];
const last = samples[samples.length - 1];
const max = (k) => Math.max(...samples.map((s) => s[k]));
const summary = {
  minutes: MINUTES,
  visitors: VISITORS,
  acked: totals.acked,
  refused: totals.refused,
  failed: totals.failed,
  agentReceived: agentGot,
  storms: totals.storms,
  churnedSockets: totals.churned,
  reconnects: totals.reconnects,
  notRecovered: totals.recoveredFalse,
  lost,
  duplicated: dups,
  serverErrors: errors,
  rssMB: { afterWarmup: Number(mb(first?.rss ?? NaN)), last: Number(mb(last?.rss ?? NaN)), max: Number(mb(max('rss'))) },
  heapMB: { afterWarmup: Number(mb(first?.heap ?? NaN)), last: Number(mb(last?.heap ?? NaN)), max: Number(mb(max('heap'))) },
  eventLoopLagMs: { p99Max: Number((max('lagP99') * 1000).toFixed(1)), max: Number((max('lagMax') * 1000).toFixed(1)) },
};
console.log(JSON.stringify(summary, null, 2));
stopping = true;
child.kill('SIGTERM');
await new Promise((r) => (exited ? r() : child.once('exit', r)));
if (process.env.DATABASE_URL) {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  await c.query(`drop schema if exists "${schema}" cascade`);
  await c.end();
}
rmSync(dir, { recursive: true, force: true });
if (lost > 0 || dups > 0 || errors > 0) process.exitCode = 1;
process.exit();
