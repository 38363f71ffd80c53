// Upstream stand-ins for the gateway's routing tests: small real servers on loopback that behave
// like chatd's api and ws nodes where routing is concerned (`/readyz` with X-Chatd-Node, a
// draining 503, Engine.IO sids `<nodeId>.<random>`). The ws stand-in is a real Socket.IO server,
// so socket.io-client speaks its whole protocol (polling, upgrade, websocket) through the gateway.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';

export interface ApiHit {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export interface ApiStandIn {
  readonly name: string;
  readonly url: string;
  readonly hits: ApiHit[];
  ready: boolean;
  close(): Promise<void>;
}

/** An api node stand-in: echoes each request as JSON; `/api/chat/slow` never answers. */
export async function startApiStandIn(name: string): Promise<ApiStandIn> {
  const hits: ApiHit[] = [];
  const state = { ready: true };
  const server = http.createServer((req, res) => {
    if (req.url === '/readyz') {
      res.writeHead(state.ready ? 200 : 503, { 'content-type': 'application/json', 'x-chatd-node': name });
      res.end(JSON.stringify({ status: state.ready ? 'ready' : 'draining' }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      hits.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      if (req.url === '/api/chat/slow') return; // held until the gateway times out
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(
        JSON.stringify({
          upstream: name,
          method: req.method,
          url: req.url,
          body,
          xff: req.headers['x-forwarded-for'],
          requestId: req.headers['x-request-id'],
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    hits,
    get ready() {
      return state.ready;
    },
    set ready(v: boolean) {
      state.ready = v;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface WsStandIn {
  readonly nodeId: string;
  readonly url: string;
  readonly io: Server;
  /** Engine.IO requests seen, by transport and whether they carried a sid. */
  readonly requests: { transport: string; sid: string | null; method: string }[];
  close(): Promise<void>;
}

/**
 * A ws node stand-in: a Socket.IO server whose sids name the node. Events: `whoami` (ack: nodeId),
 * `echo` (ack: the payload).
 */
export async function startWsStandIn(nodeId: string): Promise<WsStandIn> {
  const requests: WsStandIn['requests'] = [];
  const server = http.createServer((req, res) => {
    if (req.url === '/readyz') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-chatd-node': nodeId });
      res.end('{"status":"ready"}');
      return;
    }
    if (!req.url?.startsWith('/socket.io/')) {
      res.writeHead(404);
      res.end();
    }
  });
  const record = (req: http.IncomingMessage) => {
    if (!req.url?.startsWith('/socket.io/')) return;
    const q = new URL(req.url, 'http://x').searchParams;
    requests.push({ transport: q.get('transport') ?? '', sid: q.get('sid'), method: req.method ?? '' });
  };
  server.prependListener('request', record);
  server.prependListener('upgrade', record);
  const io = new Server(server, { pingInterval: 2000, pingTimeout: 4000 });
  io.engine.generateId = () => `${nodeId}.${randomBytes(16).toString('base64url').slice(0, 22)}`;
  io.on('connection', (socket) => {
    socket.on('whoami', (cb: (n: string) => void) => cb(nodeId));
    socket.on('echo', (payload: unknown, cb: (p: unknown) => void) => cb(payload));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    nodeId,
    url: `http://127.0.0.1:${port}`,
    io,
    requests,
    close: () =>
      new Promise<void>((r) => {
        void io.close();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
