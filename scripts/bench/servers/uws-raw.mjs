// Baseline: raw uWebSockets.js with native pub/sub — the ceiling. It speaks just enough Engine.IO /
// Socket.IO framing for the shared load generator: open packet, CONNECT with a JWT checked like
// chatd's (HS256, jose), events to a room (publish deferred to setImmediate, as uWS batching needs),
// acks. With DATABASE_URL, `message` does the same INSERT as the socket.io baseline before it
// broadcasts. Prints `LISTENING <port>`.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { jwtVerify } from 'jose';

const require = createRequire(import.meta.url);
const uws = require('uWebSockets.js');
if (typeof uws.getParts !== 'function') throw new Error('uWebSockets.js fallback loaded: refusing to benchmark it');
const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const port = Number(process.env.PORT ?? 0);
const table = process.env.BENCH_TABLE ?? 'bench_messages';
const pool = process.env.DATABASE_URL ? new (require('pg').Pool)({ connectionString: process.env.DATABASE_URL, max: 16 }) : undefined;

const OPEN = (sid) => `0${JSON.stringify({ sid, upgrades: [], pingInterval: 25000, pingTimeout: 20000, maxPayload: 1000000 })}`;
let queue = [];
let scheduled = false;
const flush = () => {
  scheduled = false;
  const q = queue;
  queue = [];
  for (let i = 0; i < q.length; i += 2) app.publish(q[i], q[i + 1]);
};
const publish = (topic, frame) => {
  queue.push(topic, frame);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
};

const app = uws
  .App()
  .ws('/socket.io/', {
    maxPayloadLength: 64 * 1024,
    maxBackpressure: 1024 * 1024,
    closeOnBackpressureLimit: true,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    open: (ws) => {
      ws.getUserData().room = undefined;
      ws.send(OPEN(randomBytes(16).toString('base64url')));
    },
    message: (ws, ab) => {
      const frame = Buffer.from(ab).toString();
      const data = ws.getUserData();
      if (frame.startsWith('40')) {
        const auth = frame.length > 2 ? JSON.parse(frame.slice(2)) : {};
        jwtVerify(auth.token ?? '', secret, { algorithms: ['HS256'], issuer: 'chatd', audience: 'chatd' }).then(
          ({ payload }) => {
            if (data.closed) return;
            data.room = `t:${payload.tid}:c:${payload.sid}`;
            ws.cork(() => {
              ws.subscribe(data.room);
              ws.send(`40${JSON.stringify({ sid: randomBytes(8).toString('base64url') })}`);
            });
          },
          () => !data.closed && ws.send('44{"message":"Invalid token"}'),
        );
        return;
      }
      if (!data.room || !frame.startsWith('42')) return;
      const m = /^42(\d*)/.exec(frame);
      const ackId = m[1];
      const [event, payload] = JSON.parse(frame.slice(2 + ackId.length));
      if (event === 'typing') {
        publish(
          data.room,
          `42${JSON.stringify(['typing', { sessionId: data.room, sender: { type: 'visitor' }, isTyping: payload?.isTyping ?? true, ts: payload?.ts }])}`,
        );
      } else if (event === 'message') {
        const done = (id) => {
          if (data.closed) return;
          publish(data.room, `42${JSON.stringify(['meta_message_created', { message: { id, text: payload.text, ts: payload.ts } }])}`);
          if (ackId) ws.send(`43${ackId}${JSON.stringify([{ success: true, messageId: id }])}`);
        };
        const id = randomBytes(16).toString('hex');
        if (pool) {
          pool.query(`INSERT INTO ${table} (id, room, text) VALUES ($1, $2, $3)`, [id, data.room, payload.text]).then(
            () => done(id),
            () => undefined,
          );
        } else done(id);
      }
    },
    close: (ws) => {
      ws.getUserData().closed = true;
    },
  })
  .any('/*', (res) => res.writeStatus('404 Not Found').end());

if (pool)
  await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (id text primary key, room text, text text, created_at timestamptz default now())`);
app.listen('127.0.0.1', port, (token) => {
  if (!token) throw new Error('listen failed');
  process.stdout.write(`LISTENING ${uws.us_socket_local_port(token)}\n`);
});
