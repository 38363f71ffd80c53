// Memory per idle authenticated Socket.IO connection on chatd (issue 5's budget: <= 1 KB of JS heap).
//
//   node scripts/bench/ws-memory.mjs [--n 10000] [--redis redis://…] [--postgres postgres://…]
//
// Starts chatd (--role all; embedded defaults unless --redis/--postgres) in a process with
// --expose-gc, opens a baseline of connections, then N in total from load-generator processes
// (scripts/bench/loadgen.mjs idle: visitor tokens with a session each, websocket transport), and
// reports (heap and RSS at N - at baseline) / (N - baseline) after full GCs. The baseline keeps
// one-time costs (code, JIT, the tenant's state) out of the per-connection figure.
import { fork } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { kill, rssBytes, sleep, spawnPinned, waitForLine } from './lib/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: o } = parseArgs({
  options: { n: { type: 'string', default: '10000' }, base: { type: 'string', default: '1000' }, redis: { type: 'string' }, postgres: { type: 'string' } },
});
const N = Number(o.n);
const BASE = Number(o.base);
const JWT_SECRET = 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const API_KEY = 'ck_pub_benchbenchbenchbench0001';
const PER_PROCESS = 5000;

const port = await new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port: p } = s.address();
    s.close(() => resolve(p));
  });
});
const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-mem-'));
const unlimited = '{ rate: 1000000, burst: 1000000 }';
writeFileSync(
  path.join(dir, 'chat-server.yaml'),
  [
    `server: { host: 127.0.0.1, port: ${port}, shutdownTimeoutMs: 2000 }`,
    'admin: { enabled: false }',
    "log: { level: 'warn', format: json }",
    `auth: { jwtSecret: ${JWT_SECRET}, gatewayApiKey: ${API_KEY} }`,
    `limits: { connectPerIp: ${unlimited}, connectPerKey: ${unlimited}, httpPerIp: ${unlimited}, httpPerKey: ${unlimited} }`,
    ...(o.postgres ? [`database: { url: "${o.postgres}", autoMigrate: true, schema: bench_mem_${port} }`] : []),
    ...(o.redis ? [`redis: { url: "${o.redis}", prefix: "bench:mem:${port}:" }`] : []),
  ].join('\n') + '\n',
);

const server = fork(path.join(here, 'lib/heap-server.mjs'), ['serve', '--role', 'all'], { cwd: dir, execArgv: ['--expose-gc'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
server.stdout.resume();
for (let i = 0; i < 600; i++) {
  try {
    if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) break;
  } catch {
    /* not up yet */
  }
  await sleep(100);
}
const heap = () =>
  new Promise((resolve) => {
    server.once('message', (m) => resolve(m.heap));
    server.send('heap');
  });
const url = `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`;
const gens = [];
async function open(count, srcBase) {
  for (let left = count; left > 0; ) {
    const n = Math.min(PER_PROCESS, left);
    const child = spawnPinned(1, [path.join(here, 'loadgen.mjs'), '--mode', 'idle', '--url', url, '--n', String(n), '--srcBase', String(srcBase + gens.length), '--apiKey', API_KEY], {
      env: { ...process.env, JWT_SECRET },
    });
    gens.push(child);
    const m = await waitForLine(child, /READY (\d+) failed=(\d+)/, 600_000);
    if (Number(m[2]) > 0) throw new Error(`${m[2]} connections failed`);
    left -= n;
  }
}

try {
  await open(BASE, 1);
  await sleep(1000);
  const h0 = await heap();
  const r0 = rssBytes(server.pid);
  await open(N - BASE, 1);
  await sleep(3000);
  const h1 = await heap();
  const r1 = rssBytes(server.pid);
  const added = N - BASE;
  const result = {
    connections: N,
    store: o.redis ? 'redis' : 'memory',
    database: o.postgres ? 'postgres' : 'pglite',
    heapBytesPerConnection: Math.round((h1.heapUsed - h0.heapUsed) / added),
    externalBytesPerConnection: Math.round((h1.external - h0.external) / added),
    rssBytesPerConnection: Math.round((r1 - r0) / added),
    heapUsedMB: Math.round(h1.heapUsed / 1048576),
    rssMB: Math.round(r1 / 1048576),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await Promise.all(gens.map(kill));
  server.kill('SIGTERM');
}
