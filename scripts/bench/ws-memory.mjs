// Memory per idle authenticated Socket.IO connection on chatd (budget: <= 1 KB of JS heap).
//
//   node scripts/bench/ws-memory.mjs [--n 10000] [--redis redis://…] [--postgres postgres://…]
//   node scripts/bench/ws-memory.mjs --target protocol [--n 10000]   (the protocol layer alone)
//
// Starts chatd (--role all; embedded defaults unless --redis/--postgres) in a process with
// --expose-gc, opens a baseline of connections, then N in total from this process (visitor tokens
// minted here with the shared secret, each bound to its own session; websocket transport), and
// reports (heap and RSS at N - at baseline) / (N - baseline) after full GCs. The baseline keeps
// one-time costs (code, JIT, the tenant's state) out of the per-connection figure.
import { fork } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { visitorToken } from './lib/token.mjs';
import WebSocket from 'ws';
import { rssBytes, sleep, waitForLine } from './lib/proc.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: o } = parseArgs({
  options: {
    target: { type: 'string', default: 'chatd' },
    n: { type: 'string', default: '10000' },
    base: { type: 'string', default: '1000' },
    redis: { type: 'string' },
    postgres: { type: 'string' },
  },
});
const N = Number(o.n);
const BASE = Number(o.base);
const JWT_SECRET = 'bench-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const API_KEY = 'ck_pub_benchbenchbenchbench0001';

let port = await new Promise((resolve) => {
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
    `limits: { connectPerIp: ${unlimited}, handshakePerIp: ${unlimited}, pendingPerIp: 1000000, maxPendingConnections: 1000000, connectPerKey: ${unlimited}, httpPerIp: ${unlimited}, httpPerKey: ${unlimited} }`,
    ...(o.postgres ? [`database: { url: "${o.postgres}", autoMigrate: true, schema: bench_mem_${port} }`] : []),
    ...(o.redis ? [`redis: { url: "${o.redis}", prefix: "bench:mem:${port}:" }`] : []),
  ].join('\n') + '\n',
);

const protocolOnly = o.target === 'protocol';
const server = protocolOnly
  ? fork(path.join(here, 'lib/protocol-server.mjs'), [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  : fork(path.join(here, 'lib/heap-server.mjs'), ['serve', '--role', 'all'], {
      cwd: dir,
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
if (protocolOnly) port = Number((await waitForLine(server, /LISTENING (\d+)/, 60_000))[1]);
server.stdout.resume();
for (let i = 0; i < 600 && !protocolOnly; i++) {
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
const secret = new TextEncoder().encode(JWT_SECRET);
const clients = [];
let failures = 0;
const failuresBy = {};

/** One idle client: CONNECT with a visitor token bound to its own session, then answer pings. */
async function openOne(i) {
  const sessionId = `mem-${port}-${i}`;
  const token = o.target === 'protocol' ? 'good' : await visitorToken(secret, 'bench', sessionId);
  const auth = { apiKey: API_KEY, token, sessionId, fingerprint: `fp${i}` };
  return new Promise((resolve, reject) => {
    // 127.0.0.x source addresses: ephemeral ports per address pair are finite.
    const ws = new WebSocket(url, { perMessageDeflate: false, localAddress: `127.0.0.${1 + Math.floor(i / 10000)}` });
    let done = false;
    const fail = (why) => {
      if (done) return;
      done = true;
      ws.terminate();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail('timeout'), 60_000);
    ws.on('message', (data) => {
      const f = data.toString();
      if (f === '2') return ws.send('3');
      if (f.startsWith('0')) return ws.send(`40${JSON.stringify(auth)}`);
      if (f.startsWith('40')) {
        done = true;
        clearTimeout(timer);
        resolve(ws);
      } else if (f.startsWith('44')) fail(`connect_error ${f.slice(2, 200)}`);
    });
    ws.on('error', (err) => fail(`error ${err.message}`));
    ws.on('close', (code) => fail(`closed ${code}`));
  });
}

async function open(count) {
  let next = clients.length;
  const end = next + count;
  const worker = async () => {
    while (next < end) {
      const i = next++;
      try {
        clients.push(await openOne(i));
      } catch (err) {
        failures++;
        const k = err.message.replace(/\d{4}/g, '#');
        failuresBy[k] = (failuresBy[k] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: 100 }, worker));
}

try {
  await open(BASE);
  await sleep(1000);
  const h0 = await heap();
  const r0 = rssBytes(server.pid);
  await open(N - BASE);
  await sleep(3000);
  const h1 = await heap();
  const r1 = rssBytes(server.pid);
  const added = clients.length - BASE;
  const result = {
    connections: clients.length,
    failures,
    failuresBy,
    target: o.target,
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
  for (const c of clients) c.terminate();
  server.kill('SIGTERM');
  process.exit(0);
}
