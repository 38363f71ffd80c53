// Upstream stand-ins for the gateway's routing tests: small real servers on loopback that behave
// like chatd's api and ws nodes where routing is concerned (`/readyz` with X-Chatd-Node, a
// draining 503, Engine.IO sids `<nodeId>.<random>`). The ws stand-in is chatd's protocol layer with
// its edge-link server, so socket.io-client speaks its whole protocol (polling, upgrade, websocket)
// through the gateway, websockets over the link.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { mountLinkServer } from '../../src/cluster/link-server.js';
import { peerAddress } from '../../src/http/client-ip.js';
import { SocketServer } from '../../src/protocol/server.js';
import type { WsData } from '../../src/protocol/session.js';
import type { DisconnectReason } from '../../src/protocol/types.js';
import { loadUws, type us_listen_socket } from '../../src/uws.js';
import { openAdmission } from '../../src/protocol/harness.js';

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
  /** Engine.IO requests seen: polling over HTTP, websockets as edge-link handshakes. */
  readonly requests: { transport: string; sid: string | null; method: string }[];
  /** Sessions that ended, with the reason the node saw. */
  readonly disconnects: DisconnectReason[];
  /** Text frames the node received over edge links, with their session's sid, in order. */
  readonly linkFrames: { sid: string; text: string }[];
  /** As on SIGTERM: every session closed with 1001, then the edge links. */
  drain(): void;
  close(): Promise<void>;
}

/**
 * A ws node stand-in built on chatd's own protocol layer and edge-link server (no store, no
 * database): any CONNECT is accepted; sids name the node. Events: `whoami` (ack: nodeId), `echo`
 * (ack: the payload), `flood` (n frames of `size` bytes to this socket, unpaced), `replay` (the same,
 * paced by Socket.whenWritable).
 */
export async function startWsStandIn(nodeId: string): Promise<WsStandIn> {
  const requests: WsStandIn['requests'] = [];
  const disconnects: DisconnectReason[] = [];
  const linkFrames: WsStandIn['linkFrames'] = [];
  const uws = loadUws();
  const app = uws.App();
  const logger = pino({ level: 'silent' });
  const record = (query: string, method: string) => {
    const q = new URLSearchParams(query);
    requests.push({ transport: q.get('transport') ?? '', sid: q.get('sid'), method });
  };
  const links = mountLinkServer<WsData<object>>({ app, trusted: () => true, logger });
  const server = new SocketServer<object>({
    app,
    path: '/socket.io/',
    nodeId,
    pingIntervalMs: 2000,
    pingTimeoutMs: 4000,
    maxPayload: 1e6,
    sendBufferBytes: 1 << 20,
    maxConnections: 10_000,
    ...openAdmission(),
    eventRate: { rate: 1e6, burst: 1e6 },
    clientIp: (res) => peerAddress(res),
    cors: { allowOrigin: () => true, maxAgeSeconds: 60 },
    logger,
    fanout: links.fanout,
    // Not forwarding anything: the hook only sees every polling request first (to record it).
    forward: {
      request(_res, req) {
        record(req.getQuery() ?? '', req.getMethod().toUpperCase());
        return false;
      },
      upgrade: () => false,
      sockets: { open() {}, message() {}, drain() {}, close() {} },
    },
    hooks: {
      authenticate: async () => ({ context: {} }),
      onConnect: () => undefined,
      onEvent(socket, event, args, ack) {
        if (event === 'whoami') ack?.(nodeId);
        else if (event === 'echo') ack?.(...args);
        else if (event === 'flood') {
          const [n, size] = args as [number, number];
          for (let i = 0; i < n; i++) socket.emit('item', i, 'x'.repeat(size));
          ack?.(true);
        } else if (event === 'replay') {
          // Paced by the client's send buffer, as the ws role paces a recovery replay.
          const [n, size] = args as [number, number];
          void (async () => {
            for (let i = 0; i < n && !socket.closed; i++) {
              await socket.whenWritable();
              socket.emit('item', i, 'x'.repeat(size));
            }
          })();
        }
      },
      onDisconnect: (_socket, reason) => void disconnects.push(reason),
    },
  });
  const link = server.link;
  links.attach({
    ...link,
    handshake(req) {
      record(req.query, 'GET');
      return link.handshake(req);
    },
    message(ws, data, isBinary) {
      if (!isBinary) linkFrames.push({ sid: ws.getUserData().s.id, text: data.toString('utf8') });
      link.message(ws, data, isBinary);
    },
  });
  app.get('/readyz', (res) => {
    res.cork(() => res.writeStatus('200 OK').writeHeader('x-chatd-node', nodeId).end('{"status":"ready"}'));
  });
  const listen = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (t) => (t ? resolve(t) : reject(new Error('listen failed')))),
  );
  const port = uws.us_socket_local_port(listen);
  return {
    nodeId,
    url: `http://127.0.0.1:${port}`,
    requests,
    disconnects,
    linkFrames,
    drain() {
      server.drain();
      links.drain();
    },
    async close() {
      uws.us_listen_socket_close(listen);
      // As a node that dies: every connection drops.
      (app as { close?: () => void }).close?.();
      server.close();
    },
  };
}
