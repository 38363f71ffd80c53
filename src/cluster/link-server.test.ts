// The ws node's end of the edge link, driven with raw link records (link-codec.ts) from a `ws`
// client: refused to untrusted peers; a client opened over the link gets the Engine.IO open packet,
// CONNECT, its room subscriptions (`sub`) and room frames once per link (`pub`); a close record
// ends its session; a dropped link ends every session of it.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { peerAddress } from '../http/client-ip.js';
import { SocketServer } from '../protocol/server.js';
import type { WsData } from '../protocol/session.js';
import type { DisconnectReason } from '../protocol/types.js';
import { loadUws, type us_listen_socket } from '../uws.js';
import { FLAG_BINARY, LINK_PATH, LinkWriter, OP, readClose, readPub, readRecords } from './link-codec.js';
import { mountLinkServer } from './link-server.js';
import { openAdmission } from '../protocol/harness.js';

interface Rec {
  op: number;
  cid: number;
  text: string;
  binary: boolean;
  topic?: string;
}

async function startNode(trusted: boolean, beat = { pingIntervalMs: 60_000, pingTimeoutMs: 60_000 }) {
  const uws = loadUws();
  const app = uws.App();
  const logger = pino({ level: 'silent' });
  const disconnects: DisconnectReason[] = [];
  const links = mountLinkServer<WsData<object>>({ app, trusted: () => trusted, logger });
  const server = new SocketServer<object>({
    app,
    path: '/socket.io/',
    nodeId: 'n1',
    ...beat,
    maxPayload: 1e6,
    sendBufferBytes: 1 << 20,
    maxConnections: 100,
    ...openAdmission(),
    eventRate: { rate: 1e6, burst: 1e6 },
    clientIp: (res) => peerAddress(res),
    logger,
    fanout: links.fanout,
    hooks: {
      authenticate: async (info) => ({ context: { ip: info.ip } }),
      onConnect: (socket) => socket.join('room'),
      onEvent: (socket, event, args, ack) => ack?.(event, ...args),
      onDisconnect: (_s, reason) => void disconnects.push(reason),
    },
  });
  links.attach(server.link);
  const listen = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (t) => (t ? resolve(t) : reject(new Error('listen failed')))),
  );
  const port = uws.us_socket_local_port(listen);
  return {
    port,
    server,
    links,
    disconnects,
    close() {
      server.close();
      uws.us_listen_socket_close(listen);
      (app as { close?: () => void }).close?.();
    },
  };
}

/** A raw link client: sends records, collects the node's. */
async function linkTo(port: number) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${LINK_PATH}`, { perMessageDeflate: false });
  const got: Rec[] = [];
  ws.on('message', (data: Buffer) =>
    readRecords(data, (op, flags, cid, payload) => {
      if (op === OP.pub) {
        const { topic, frame } = readPub(payload);
        got.push({ op, cid, topic, text: frame.toString('utf8'), binary: (flags & FLAG_BINARY) !== 0 });
      } else if (op === OP.close) {
        const { code, reason } = readClose(payload);
        got.push({ op, cid, text: `${code} ${reason}`, binary: false });
      } else got.push({ op, cid, text: payload.toString('utf8'), binary: (flags & FLAG_BINARY) !== 0 });
    }),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const send = (fill: (w: LinkWriter) => void) => {
    const w = new LinkWriter();
    fill(w);
    ws.send(w.take());
  };
  return { ws, got, send };
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

let node: Awaited<ReturnType<typeof startNode>> | undefined;
afterEach(() => {
  node?.close();
  node = undefined;
});

describe('edge link server', () => {
  it('refuses a link from a peer that is not a trusted proxy', async () => {
    node = await startNode(false);
    const ws = new WebSocket(`ws://127.0.0.1:${node.port}${LINK_PATH}`);
    ws.on('error', () => undefined);
    const status = await new Promise<number>((resolve) =>
      ws.once('unexpected-response', (req, res) => {
        req.destroy();
        resolve(res.statusCode ?? 0);
      }),
    );
    expect(status).toBe(403);
  });

  it('runs a client as an Engine.IO session: open packet, CONNECT, sub, one pub per link, ack; close ends it', async () => {
    node = await startNode(true);
    const link = await linkTo(node.port);
    const hs = { query: 'EIO=4&transport=websocket', headers: { origin: 'https://a.example' }, ip: '203.0.113.9' };
    link.send((w) => {
      w.record(OP.open, 0, 7, JSON.stringify(hs));
      w.record(OP.open, 0, 8, JSON.stringify({ ...hs, query: 'EIO=3&transport=websocket' }));
    });
    await until(() => link.got.some((r) => r.op === OP.frame && r.cid === 7) && link.got.some((r) => r.cid === 8));
    expect(link.got.find((r) => r.cid === 8)).toMatchObject({ op: OP.refuse });
    expect(JSON.parse(link.got.find((r) => r.cid === 8)!.text)).toMatchObject({ status: 400 });
    const seven = () => link.got.filter((r) => r.cid === 7);
    expect(seven()[0]!.op).toBe(OP.accept);
    expect(seven().find((r) => r.op === OP.frame)!.text).toMatch(/^0\{"sid":"n1\./);
    // The heartbeat is the gateway's: no subscription to the node's ping topic.
    expect(seven().some((r) => r.op === OP.sub)).toBe(false);

    link.send((w) => w.record(OP.frame, 0, 7, '40{}'));
    await until(() => seven().some((r) => r.text.startsWith('40{')));
    await until(() => seven().some((r) => r.op === OP.sub && r.text === 'room'));
    const s = [...node.server.sockets()][0]!;
    expect((s.context as { ip: string }).ip).toBe('203.0.113.9');
    expect(node.server.roomSize('room')).toBe(1);

    node.server.publish('room', 'news', [1]);
    node.server.publish('elsewhere', 'news', [2]);
    await until(() => link.got.some((r) => r.op === OP.pub));
    const pubs = link.got.filter((r) => r.op === OP.pub);
    expect(pubs).toEqual([{ op: OP.pub, cid: 0, topic: 'room', text: '42["news",1]', binary: false }]);

    link.send((w) => w.record(OP.frame, 0, 7, '421["echo","hi"]'));
    await until(() => seven().some((r) => r.text === '431["echo","hi"]'));

    link.send((w) => w.close(7, 1000, ''));
    await until(() => node!.disconnects.length === 1);
    expect(node.disconnects).toEqual(['transport close']);
    expect(node.server.roomSize('room')).toBe(0);
    expect(node.links.clients()).toBe(0);
    link.ws.close();
  });

  it('a dropped link ends every session it carried; a session the node closes sends a close record', async () => {
    node = await startNode(true);
    const link = await linkTo(node.port);
    const hs = JSON.stringify({ query: 'EIO=4&transport=websocket', headers: {}, ip: '203.0.113.10' });
    link.send((w) => {
      for (const cid of [1, 2, 3]) {
        w.record(OP.open, 0, cid, hs);
        w.record(OP.frame, 0, cid, '40{}');
      }
    });
    await until(() => node!.server.size === 3 && [...node!.server.sockets()].every((s) => s.connected));
    const first = [...node.server.sockets()][0]!;
    first.close();
    await until(() => link.got.some((r) => r.op === OP.close));
    expect(link.got.find((r) => r.op === OP.close)!.text).toBe('1000 server close');
    link.ws.terminate();
    await until(() => node!.disconnects.length === 3);
    expect(node.disconnects.slice(1)).toEqual(['transport error', 'transport error']);
    expect(node.links.links()).toBe(0);
  });

  it('pings and sweeps its own websockets but not link clients; a gateway\'s "ping timeout" close ends the session so', async () => {
    node = await startNode(true, { pingIntervalMs: 50, pingTimeoutMs: 50 });
    const link = await linkTo(node.port);
    link.send((w) => {
      w.record(OP.open, 0, 1, JSON.stringify({ query: 'EIO=4&transport=websocket', headers: {}, ip: '203.0.113.11' }));
      w.record(OP.frame, 0, 1, '40{}');
    });
    await until(() => node!.server.size === 1 && [...node!.server.sockets()][0]!.connected);
    // A direct websocket opened after the link client, answering no ping either.
    const direct = new WebSocket(`ws://127.0.0.1:${node.port}/socket.io/?EIO=4&transport=websocket`);
    const pings: string[] = [];
    direct.on('message', (d: Buffer) => {
      const t = d.toString('utf8');
      if (t === '2') pings.push(t);
      else if (t.startsWith('0{')) direct.send('40{}');
    });
    const closed = new Promise<string>((r) => direct.once('close', (_code, reason) => r(reason.toString('utf8'))));
    expect(await closed).toBe('ping timeout');
    expect(pings.length).toBeGreaterThan(0);
    expect(node.disconnects).toEqual(['ping timeout']);
    // The older link client was neither pinged (no ping pub, no frame `2`) nor swept.
    expect(link.got.some((r) => r.op === OP.pub || r.text === '2' || r.op === OP.close)).toBe(false);
    expect(node.links.clients()).toBe(1);
    // Its gateway closes it for silence: the session ends as the node's own sweep would end it.
    link.send((w) => w.close(1, 1000, 'ping timeout'));
    await until(() => node!.disconnects.length === 2);
    expect(node.disconnects).toEqual(['ping timeout', 'ping timeout']);
    expect(node.links.clients()).toBe(0);
    link.ws.close();
  });
});
