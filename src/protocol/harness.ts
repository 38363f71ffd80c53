// A small server built on the protocol layer alone, for its tests and benchmarks: token `good` is
// accepted, `bad` refused (final), `busy` refused (transient); events `echo` (acks its arguments),
// `join`/`leave` (rooms), `publish` (to a room, deferred), `ask` (the server emits with an ack and
// reports the client's answer), `replay` (recoverable events paced by backpressure).
import { pino } from 'pino';
import { ChatdError, DISCONNECT } from '../errors.js';
import { HttpRouter } from '../http/router.js';
import { peerAddress } from '../http/client-ip.js';
import { MemoryRateLimiter } from '../store/memory/memory-rate-limiter.js';
import { loadUws, type us_listen_socket } from '../uws.js';
import { SocketServer, type SocketServerOptions } from './server.js';
import type { ConnectInfo, DisconnectReason, Socket } from './types.js';

/**
 * Admission settings that refuse no test client: per-IP handshake buckets and pending caps no test
 * reaches (tests open many sessions from 127.0.0.1), a fresh in-memory limiter, a 30 s CONNECT timeout.
 */
export const openAdmission = () => ({
  handshakePerIp: { rate: 1e9, burst: 1e9 },
  handshakeLimiter: new MemoryRateLimiter(),
  pendingPerIp: 1e9,
  maxPending: 1e9,
  connectTimeoutMs: 30_000,
});

export interface HarnessContext {
  readonly user: string;
}

export interface Harness {
  readonly port: number;
  readonly url: string;
  readonly server: SocketServer<HarnessContext>;
  readonly connects: ConnectInfo[];
  readonly disconnects: { id: string; reason: DisconnectReason }[];
  readonly events: { event: string; args: unknown[] }[];
  readonly sockets: Map<string, Socket<HarnessContext>>;
  close(): Promise<void>;
}

export async function startHarness(
  over: Partial<Omit<SocketServerOptions<HarnessContext>, 'app' | 'hooks' | 'logger' | 'clientIp'>> = {},
  /** acceptAnyToken: any non-empty token is `good` (the memory benchmark's load generator sends JWTs). */
  opts: { acceptAnyToken?: boolean } = {},
): Promise<Harness> {
  const uws = loadUws();
  const app = uws.App();
  const connects: ConnectInfo[] = [];
  const disconnects: { id: string; reason: DisconnectReason }[] = [];
  const events: { event: string; args: unknown[] }[] = [];
  const sockets = new Map<string, Socket<HarnessContext>>();
  const logger = pino({ level: process.env.HARNESS_LOG ?? 'silent' });
  const server: SocketServer<HarnessContext> = new SocketServer<HarnessContext>({
    app,
    path: '/socket.io/',
    nodeId: 'harness',
    pingIntervalMs: 25000,
    pingTimeoutMs: 20000,
    maxPayload: 65536,
    sendBufferBytes: 1 << 20,
    maxConnections: 10000,
    // Generous unless a test says otherwise: most tests open many sessions from 127.0.0.1.
    ...openAdmission(),
    eventRate: { rate: 1000, burst: 2000 },
    clientIp: (res) => peerAddress(res),
    cors: { allowOrigin: () => true, maxAgeSeconds: 60 },
    logger,
    ...over,
    hooks: {
      async authenticate(info) {
        if (!opts.acceptAnyToken) connects.push(info);
        const token = opts.acceptAnyToken && typeof info.auth.token === 'string' && info.auth.token ? 'good' : info.auth.token;
        if (token === 'bad') throw new ChatdError('invalid_api_key');
        if (token === 'busy') throw new ChatdError('capacity');
        if (token !== 'good') throw new ChatdError('missing_credentials');
        await new Promise((r) => setImmediate(r));
        const user = typeof info.auth.user === 'string' ? info.auth.user : 'u';
        // Recovery: accept the pid the client sent back when it is "ours".
        const pid = info.recovery?.pid.startsWith(`pid-${user}`) ? info.recovery.pid : `pid-${user}-${Date.now()}`;
        return { context: { user }, pid };
      },
      onConnect(socket, info) {
        sockets.set(socket.id, socket);
        if (typeof info.auth.join === 'string') socket.join(info.auth.join);
        if (info.recovery?.pid.startsWith(`pid-${socket.context!.user}`)) {
          const from = Number(info.recovery.offset);
          socket.emit('recovering', from);
        }
      },
      onEvent(socket, event, args, ack) {
        events.push({ event, args });
        switch (event) {
          case 'echo':
            ack?.(...args);
            return;
          case 'join':
            socket.join(String(args[0]));
            ack?.(true);
            return;
          case 'leave':
            socket.leave(String(args[0]));
            ack?.(true);
            return;
          case 'publish': {
            const [room, ev, data, offset] = args as [string, string, unknown, string | undefined];
            server.publish(room, ev, [data], offset);
            ack?.(true);
            return;
          }
          case 'ask':
            socket.emitWithAck('question', args, (err, ...answer) => {
              socket.emit('answer', err ? { error: err.message } : answer);
            });
            return;
          case 'replay': {
            const [count, size] = args as [number, number];
            const pad = 'x'.repeat(size);
            void (async () => {
              for (let i = 1; i <= count && !socket.closed; i++) {
                await socket.whenWritable();
                socket.emit('item', { i, pad }, String(i));
              }
              ack?.(true);
            })();
            return;
          }
          case 'close':
            socket.close(DISCONNECT.serverClose);
            return;
          case 'kick':
            socket.disconnect();
            return;
          default:
            ack?.({ unknown: event });
        }
      },
      onDisconnect(socket, reason) {
        sockets.delete(socket.id);
        disconnects.push({ id: socket.id, reason });
      },
    },
  });
  const router = new HttpRouter(app, { role: 'harness', logger, bodyLimit: 65536, clientIp: (res) => peerAddress(res) });
  router.get('/hello', () => ({ body: { hello: true } }));
  router.finalize();
  const socket = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen failed')))),
  );
  const port = uws.us_socket_local_port(socket);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    server,
    connects,
    disconnects,
    events,
    sockets,
    async close() {
      server.close();
      uws.us_listen_socket_close(socket);
      (app as { close?: () => void }).close?.();
    },
  };
}
