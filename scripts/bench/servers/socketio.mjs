// Baseline: a socket.io@4 server doing the same job as chatd — the same JWT check (HS256, jose),
// the same conversation rooms, websocket transport; `@socket.io/redis-adapter` when REDIS_URL is set
// (multi-node); with DATABASE_URL, `message` INSERTs into PostgreSQL before it broadcasts and acks.
// Prints `LISTENING <port>`.
import http from 'node:http';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { Server } from 'socket.io';
import { jwtVerify } from 'jose';

const require = createRequire(import.meta.url);
const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const port = Number(process.env.PORT ?? 0);
const table = process.env.BENCH_TABLE ?? 'bench_messages';
const pool = process.env.DATABASE_URL ? new (require('pg').Pool)({ connectionString: process.env.DATABASE_URL, max: 16 }) : undefined;

const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], serveClient: false, maxHttpBufferSize: 64 * 1024 });

if (process.env.REDIS_URL) {
  const { createAdapter } = await import('@socket.io/redis-adapter');
  const { default: Redis } = await import('ioredis');
  const pub = new Redis(process.env.REDIS_URL);
  const sub = pub.duplicate();
  io.adapter(createAdapter(pub, sub, { key: process.env.REDIS_PREFIX ?? 'bench-sio' }));
}

io.use((socket, next) => {
  jwtVerify(socket.handshake.auth?.token ?? '', secret, { algorithms: ['HS256'], issuer: 'chatd', audience: 'chatd' }).then(
    ({ payload }) => {
      socket.data.room = `t:${payload.tid}:c:${payload.sid}`;
      next();
    },
    () => next(new Error('Invalid token')),
  );
});

io.on('connection', (socket) => {
  const room = socket.data.room;
  socket.join(room);
  socket.on('typing', (payload) => {
    socket.to(room).emit('typing', { sessionId: room, sender: { type: 'visitor' }, isTyping: payload?.isTyping ?? true, ts: payload?.ts });
  });
  socket.on('message', async (payload, ack) => {
    const id = randomBytes(16).toString('hex');
    if (pool) await pool.query(`INSERT INTO ${table} (id, room, text) VALUES ($1, $2, $3)`, [id, room, payload.text]);
    io.to(room).emit('meta_message_created', { message: { id, text: payload.text, ts: payload.ts } });
    if (typeof ack === 'function') ack({ success: true, messageId: id });
  });
});

if (pool)
  await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (id text primary key, room text, text text, created_at timestamptz default now())`);
server.listen(port, '127.0.0.1', () => process.stdout.write(`LISTENING ${server.address().port}\n`));
