// Load generator process (pinned to its own CPU by run.mjs). Modes:
//   idle     --n N                      open N authenticated connections and hold them (prints READY)
//   accept   --n N --inflight K         open N connections, K in flight; reports conn/s
//   fanout   --subs N --inflight K --seconds S   one publisher, N subscribers of one conversation;
//            the publisher keeps ≤ K `typing` events outstanding (sent, not yet seen by a probe);
//            reports deliveries/s
//   latency  --subs N --rate R --seconds S --event typing|message   fixed-rate sends; reports
//            p50/p99/p99.9 of send → delivery at every subscriber (same process, same clock)
//            (fanout and latency: --pubUrl puts the publisher on another node than the subscribers;
//            --url may list several nodes, comma-separated: subscribers are spread over them;
//            fanout --rooms R: R conversations, one publisher each, subscribers spread over them)
//   ingest   --http URL --concurrency C --seconds S   POST /webchat/message, C in flight, each
//            worker its own conversation; reports messages/s and p50/p99/p99.9
//   floor    --postgres URL --redis URL --table T --concurrency C --pool P --seconds S   what one
//            stored message costs at least: a one-row INSERT (autocommit) then one XADD, C in flight;
//            with --pglite DIR instead of --postgres, the same on an embedded PGlite in DIR, opened
//            in this process with chatd's own settings (src/db/pglite.ts), as chatd embeds it
// Tokens are minted here with the shared JWT secret (HS256, iss/aud chatd), as chatd's api would.
import { parseArgs } from 'node:util';
import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EioClient } from './lib/eio-client.mjs';
import { connectFrame, rawSubscribe } from './lib/raw-subscriber.mjs';
import { visitorToken } from './lib/token.mjs';
import { percentile, sleep } from './lib/proc.mjs';

const { values: o } = parseArgs({
  options: {
    mode: { type: 'string' },
    url: { type: 'string' },
    pubUrl: { type: 'string' },
    http: { type: 'string' },
    concurrency: { type: 'string', default: '64' },
    postgres: { type: 'string' },
    pglite: { type: 'string' },
    redis: { type: 'string' },
    table: { type: 'string' },
    pool: { type: 'string', default: '10' },
    n: { type: 'string', default: '100' },
    subs: { type: 'string', default: '100' },
    inflight: { type: 'string', default: '32' },
    rate: { type: 'string', default: '600' },
    rooms: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '10' },
    event: { type: 'string', default: 'typing' },
    tenant: { type: 'string', default: 'bench' },
    session: { type: 'string' },
    apiKey: { type: 'string', default: '' },
    srcBase: { type: 'string' },
    payload: { type: 'string', default: '100' },
  },
});
const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const urls = (o.url ?? '').split(',');
const url = urls[0];
const text = 'x'.repeat(Number(o.payload));

const token = (sessionId) => visitorToken(secret, o.tenant, sessionId);

let srcIndex = 0;
/**
 * With --srcBase (memory: thousands of sockets held open), connections are spread over 127.0.0.x
 * source addresses, 10,000 each. Without it the kernel picks the source port at connect time: a
 * socket bound before connect must pick its port without knowing the destination, so earlier
 * runs' TIME_WAIT sockets make every bind scan the port range (measured: the accept rate fell
 * 1,580 → 317 → 171 conn/s over three back-to-back runs), while connect may reuse them on loopback
 * (net.ipv4.tcp_tw_reuse).
 */
const localAddress = () => (o.srcBase === undefined ? undefined : `127.0.0.${Number(o.srcBase) + (Math.floor(srcIndex++ / 10000) % 200)}`);

async function openClient(sessionId, fingerprint, at = url) {
  const auth = { apiKey: o.apiKey, token: await token(sessionId), sessionId, fingerprint };
  return new EioClient(at, auth, { localAddress: localAddress() }).connect();
}

/** A subscriber that only counts EVENT frames (see lib/raw-subscriber.mjs). */
async function openRawSubscriber(sessionId, fingerprint, onEvent, at = url) {
  const auth = { apiKey: o.apiKey, token: await token(sessionId), sessionId, fingerprint };
  return rawSubscribe(at, auth, { onEvent, localAddress: localAddress() });
}

/** Marks the measured window on stdout, so the runner reads the server's CPU time at its edges. */
const mark = (edge) => process.stdout.write(`WINDOW ${edge}\n`);
const out = (obj) => process.stdout.write(`RESULT ${JSON.stringify(obj)}\n`);
const fp = () => randomBytes(8).toString('hex');

async function openMany(n, inflight, sessionOf, onStart) {
  // Tokens are minted before the clock starts: the load generator must not be what is measured.
  const tokens = await Promise.all(Array.from({ length: n }, (_, i) => token(sessionOf(i))));
  const frames = tokens.map((t, i) => connectFrame({ apiKey: o.apiKey, token: t, sessionId: sessionOf(i), fingerprint: `fp${i}` }));
  const clients = [];
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      try {
        // Raw TCP clients: the `ws` package's client handshake costs the generator's core more than
        // raw uWS spends accepting (it capped every target near 1.7k conn/s).
        clients.push(await rawSubscribe(url, frames[i], { localAddress: localAddress() }));
      } catch {
        failed++;
      }
    }
  };
  onStart?.();
  await Promise.all(Array.from({ length: Math.min(inflight, n) }, worker));
  return { clients, failed };
}

switch (o.mode) {
  case 'idle': {
    const { clients, failed } = await openMany(Number(o.n), 100, (i) => `idle-${process.pid}-${i}`);
    process.stdout.write(`READY ${clients.length} failed=${failed}\n`);
    process.on('SIGTERM', () => process.exit(0));
    setInterval(() => undefined, 1 << 30);
    break;
  }
  case 'accept': {
    const n = Number(o.n);
    let started = 0;
    let cpu0;
    const { clients, failed } = await openMany(
      n,
      Number(o.inflight),
      (i) => `acc-${process.pid}-${i}`,
      () => {
        mark('start');
        started = performance.now();
        cpu0 = process.cpuUsage();
      },
    );
    mark('end');
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    // The generator's own CPU per connection: near 1 s per second means it, not the server, set the rate.
    const generatorCpuPerConnUs = (cpu.user + cpu.system) / Math.max(1, clients.length);
    out({
      connected: clients.length,
      failed,
      seconds,
      perSecond: clients.length / seconds,
      generatorCpuPerConnUs,
      generatorBusy: (cpu.user + cpu.system) / 1e6 / seconds,
    });
    clients.forEach((c) => c.close());
    process.exit(0);
    break;
  }
  case 'fanout':
  case 'latency': {
    const session = o.session ?? `room-${randomBytes(4).toString('hex')}`;
    const subsN = Number(o.subs);
    // Conversations (fanout only): subscriber idx follows room idx % R, on node idx % nodes.
    const roomsN = o.mode === 'fanout' ? Math.max(1, Number(o.rooms)) : 1;
    const rooms = Array.from({ length: roomsN }, (_, r) => (roomsN === 1 ? session : `${session}-${r}`));
    // fanout counts frames on raw subscribers; latency needs per-frame callbacks: both cheap.
    const subs = [];
    const handlers = [];
    for (let i = 0; i < subsN; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(50, subsN - i) }, (_, j) => {
          const idx = i + j;
          return openRawSubscriber(rooms[idx % roomsN], `fp${idx}`, () => handlers[idx]?.(), urls[idx % urls.length]);
        }),
      );
      subs.push(...batch);
    }
    const publishers = await Promise.all(rooms.map((room) => openClient(room, fp(), o.pubUrl ?? url)));
    const publisher = publishers[0];
    await sleep(300);
    const seconds = Number(o.seconds);
    if (o.mode === 'fanout') {
      let delivered = 0;
      let resume;
      // Per room: ≤ inflight/R events outstanding (sent, not yet seen by that room's probe).
      const perRoom = Math.max(1, Math.ceil(Number(o.inflight) / roomsN));
      const sentIn = new Array(roomsN).fill(0);
      const seenIn = new Array(roomsN).fill(0);
      let sent = 0;
      // Subscriber r (< R) is room r's probe that paces its publisher; the rest only count.
      for (let r = 0; r < roomsN; r++) {
        handlers[r] = () => {
          seenIn[r]++;
          if (resume && sentIn[r] - seenIn[r] < perRoom) {
            const go = resume;
            resume = undefined;
            go();
          }
        };
      }
      const deadline = performance.now() + seconds * 1000;
      const count = () => subs.reduce((n, c) => n + c.events, 0);
      const startDelivered = count();
      mark('start');
      const t0 = performance.now();
      let next = 0;
      while (performance.now() < deadline) {
        let r = -1;
        for (let k = 0; k < roomsN; k++) {
          const c = (next + k) % roomsN;
          if (sentIn[c] - seenIn[c] < perRoom && publishers[c].bufferedAmount() <= 1 << 20) {
            r = c;
            break;
          }
        }
        if (r < 0) {
          await new Promise((done) => {
            resume = done;
            setTimeout(done, 50);
          });
          continue;
        }
        next = r + 1;
        publishers[r].emit('typing', { isTyping: sentIn[r] % 2 === 0 });
        sentIn[r]++;
        sent++;
        if (sent % 64 === 0) await new Promise((done) => setImmediate(done));
      }
      const elapsed = (performance.now() - t0) / 1000;
      delivered = count() - startDelivered;
      mark('end');
      await sleep(500);
      out({ subs: subs.length, rooms: roomsN, sent, delivered, seconds: elapsed, perSecond: delivered / elapsed });
    } else {
      // Delivery is in order and exactly once, so the k-th event a subscriber sees is the k-th sent:
      // latency needs no timestamp in the payload (chatd relays only the fields it defines).
      const lat = [];
      const sendTimes = [];
      subs.forEach((_, idx) => {
        let k = 0;
        handlers[idx] = () => {
          const sentAt = sendTimes[k++];
          if (sentAt !== undefined) lat.push(performance.now() - sentAt);
        };
      });
      const rate = Number(o.rate);
      const total = Math.floor(rate * seconds);
      mark('start');
      const t0 = performance.now();
      let acked = 0;
      for (let i = 0; i < total; i++) {
        const due = t0 + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        const ts = performance.now();
        sendTimes.push(ts);
        if (o.event === 'message') {
          publisher.emitWithAck('message', { text, ts, clientMessageId: `m${i}` }).then(() => void acked++);
        } else publisher.emit('typing', { isTyping: i % 2 === 0, ts });
      }
      await sleep(1500);
      mark('end');
      lat.sort((a, b) => a - b);
      out({
        subs: subs.length,
        sent: total,
        acked,
        samples: lat.length,
        expected: total * subs.length,
        p50: percentile(lat, 50),
        p99: percentile(lat, 99),
        p999: percentile(lat, 99.9),
      });
    }
    subs.forEach((c) => c.close());
    publishers.forEach((c) => c.close());
    process.exit(0);
    break;
  }
  case 'ingest': {
    const { Pool } = await import('undici');
    const concurrency = Number(o.concurrency);
    const pool = new Pool(o.http, { connections: concurrency, pipelining: 1 });
    const sessions = Array.from({ length: concurrency }, (_, i) => `ing-${process.pid}-${i}`);
    const tokens = await Promise.all(sessions.map((s) => token(s)));
    const lat = [];
    let ok = 0;
    let failed = 0;
    const statuses = {};
    const post = async (i, k) => {
      const body = JSON.stringify({
        text,
        tenantId: o.tenant,
        sessionId: sessions[i],
        fingerprint: `fp${i}`,
        clientMessageId: `c${i}-${k}`,
      });
      const t = performance.now();
      const res = await pool.request({
        path: '/webchat/message',
        method: 'POST',
        headers: { authorization: `Bearer ${tokens[i]}`, 'content-type': 'application/json' },
        body,
      });
      await res.body.dump();
      if (res.statusCode === 200) {
        ok++;
        lat.push(performance.now() - t);
      } else {
        failed++;
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      }
    };
    // Warm-up (creates every conversation), then the measured window.
    await Promise.all(sessions.map((_, i) => post(i, 'w')));
    ok = 0;
    lat.length = 0;
    const seconds = Number(o.seconds);
    mark('start');
    const t0 = performance.now();
    const deadline = t0 + seconds * 1000;
    await Promise.all(
      sessions.map(async (_, i) => {
        for (let k = 0; performance.now() < deadline; k++) {
          try {
            await post(i, k);
          } catch {
            failed++;
          }
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    mark('end');
    lat.sort((a, b) => a - b);
    out({
      concurrency,
      ok,
      failed,
      statuses,
      seconds: elapsed,
      perSecond: ok / elapsed,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      p999: percentile(lat, 99.9),
    });
    await pool.close();
    process.exit(0);
    break;
  }
  case 'floor': {
    const { default: Redis } = await import('ioredis');
    const concurrency = Number(o.concurrency);
    const db = o.pglite
      ? await openPglite(o.pglite)
      : new (await import('pg')).default.Pool({ connectionString: o.postgres, max: Number(o.pool) });
    const redis = new Redis(o.redis);
    const table = o.table;
    await db.query(
      `CREATE TABLE IF NOT EXISTS ${table} (id text primary key, session_id text not null, text text not null, created_at timestamptz not null default now())`,
    );
    const lat = [];
    let ok = 0;
    const one = async (i, _k) => {
      const id = randomUUID();
      const t = performance.now();
      await db.query(`INSERT INTO ${table} (id, session_id, text) VALUES ($1, $2, $3)`, [id, `s${i}`, text]);
      await redis.xadd(`${table}:stream`, 'MAXLEN', '~', '100000', '*', 'id', id, 'session', `s${i}`, 'text', text);
      lat.push(performance.now() - t);
      ok++;
    };
    await Promise.all(Array.from({ length: concurrency }, (_, i) => one(i, 'w')));
    ok = 0;
    lat.length = 0;
    const cpu0 = process.cpuUsage();
    mark('start');
    const t0 = performance.now();
    const deadline = t0 + Number(o.seconds) * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async (_, i) => {
        for (let k = 0; performance.now() < deadline; k++) await one(i, k);
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    mark('end');
    lat.sort((a, b) => a - b);
    out({
      concurrency,
      pool: o.pglite ? 1 : Number(o.pool),
      ok,
      failed: 0,
      seconds: elapsed,
      perSecond: ok / elapsed,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      p999: percentile(lat, 99.9),
      selfCpuSeconds: (cpu.user + cpu.system) / 1e6,
    });
    await (o.pglite ? db.close() : db.end());
    redis.disconnect();
    process.exit(0);
    break;
  }
  default:
    process.stderr.write(`unknown mode ${o.mode}\n`);
    process.exit(2);
}

/**
 * PGlite as chatd opens it (createPglite: chatd's memory settings, initdb in a child process),
 * behind the two calls the floor makes of a pg Pool: query(text, params) and end().
 */
async function openPglite(dir) {
  const { fileURLToPath } = await import('node:url');
  const path = await import('node:path');
  const { importBundled } = await import('./lib/bundle.mjs');
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const { createPglite } = await importBundled(
    path.join(root, 'src/db/pglite.ts'),
    path.join(root, 'node_modules', '.cache', 'chatd-bench', `pglite-${process.pid}.mjs`),
    { target: 'node20' },
  );
  const pg = await createPglite(dir);
  return { query: (text, params) => pg.query(text, params), close: () => pg.close() };
}
