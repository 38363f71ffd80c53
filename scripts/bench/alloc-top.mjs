// Where a chatd process allocates during a load generator's measured window: V8's sampling heap
// profiler (objects collected by scavenges and full GCs included) through the inspector, summed by
// allocating function. One `chatd serve --role all` on the in-process store, clients from loadgen.mjs.
//   node scripts/bench/alloc-top.mjs [--top 25] [--interval 512] -- <loadgen args…>
//   e.g. node scripts/bench/alloc-top.mjs -- --mode latency --event typing --subs 100 --rate 600 --seconds 3
// Prints bytes per function (self), the total, and the total per event sent (RESULT `sent`).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: o, positionals: loadArgs } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '25' }, interval: { type: 'string', default: '512' }, 'node-flags': { type: 'string' } },
});
const JWT_SECRET = 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const API_KEY = 'ck_pub_benchbenchbenchbench0001';
const unlimited = '{ rate: 1000000, burst: 1000000 }';
const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const port = await freePort();
const inspectPort = await freePort();
const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-alloc-'));
writeFileSync(
  path.join(dir, 'chat-server.yaml'),
  [
    `server: { host: 127.0.0.1, port: ${port}, shutdownTimeoutMs: 2000 }`,
    'admin: { enabled: false }',
    "log: { level: 'warn', format: json }",
    `auth: { jwtSecret: ${JWT_SECRET}, gatewayApiKey: ${API_KEY} }`,
    `limits: { connectPerIp: ${unlimited}, handshakePerIp: ${unlimited}, pendingPerIp: 1000000, maxPendingConnections: 1000000, connectPerKey: ${unlimited}, httpPerIp: ${unlimited}, httpPerKey: ${unlimited}, messagesPerSocket: ${unlimited} }`,
    `database: { url: "${process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'}", autoMigrate: true, schema: alloc_${process.pid} }`,
    '',
  ].join('\n'),
);
const flags = o['node-flags'] ? o['node-flags'].split(/\s+/).filter(Boolean) : [];
const server = spawn(
  process.execPath,
  [...flags, `--inspect=127.0.0.1:${inspectPort}`, path.join(root, 'bin/chatd'), 'serve', '--role', 'all'],
  {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    stdio: ['ignore', 'ignore', 'ignore'],
  },
);
try {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) break;
    } catch {
      /* not up yet */
    }
    if (i > 300) throw new Error('chatd not ready');
    await sleep(100);
  }
  const [{ webSocketDebuggerUrl }] = await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json();
  const cdp = new WebSocket(webSocketDebuggerUrl);
  await new Promise((resolve, reject) => cdp.once('open', resolve).once('error', reject));
  let nextId = 1;
  const pending = new Map();
  cdp.on('message', (raw) => {
    const m = JSON.parse(raw.toString());
    if (m.id && pending.has(m.id)) {
      pending.get(m.id)(m);
      pending.delete(m.id);
    }
  });
  const call = (method, params = {}) =>
    new Promise((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      cdp.send(JSON.stringify({ id, method, params }));
    });
  await call('HeapProfiler.enable');

  const gen = spawn(
    process.execPath,
    [
      path.join(here, 'loadgen.mjs'),
      '--url',
      `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`,
      '--apiKey',
      API_KEY,
      ...loadArgs,
    ],
    { env: { ...process.env, JWT_SECRET }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  let started;
  let profile;
  const done = new Promise((resolve) => {
    gen.stdout.on('data', async (chunk) => {
      out += chunk.toString();
      if (!started && out.includes('WINDOW start')) {
        started = call('HeapProfiler.startSampling', {
          samplingInterval: Number(o.interval),
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true,
        });
      }
      if (started && !profile && out.includes('WINDOW end')) {
        await started;
        profile = (await call('HeapProfiler.stopSampling')).result.profile;
      }
      const m = /RESULT (.*)\n/.exec(out);
      if (m && profile) resolve(JSON.parse(m[1]));
    });
  });
  const result = await done;
  gen.kill();
  cdp.close();

  const self = new Map();
  let total = 0;
  const walk = (n) => {
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const events = result.sent;
  process.stdout.write(
    `allocated in the window: ${(total / 2 ** 20).toFixed(2)} MB; ${events} events sent; ${Math.round(total / events)} bytes per event\n`,
  );
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(o.top))) {
    process.stdout.write(`${String(Math.round(v / events)).padStart(7)} B/event  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}\n`);
  }
} finally {
  server.kill('SIGTERM');
}
