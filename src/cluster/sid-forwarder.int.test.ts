// ws nodes forwarding a polling request or a websocket upgrade for a sid they do not own to its
// owner: two real uWS servers in this process, each with a forwarder, found through the engine's
// node registry (whose contract runs in the store contract suite).
import { mkdtemp } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { loadUws, type us_listen_socket, type WebSocket as UwsSocket } from '../uws.js';
import { eventually } from '../../test/helpers/eventually.js';
import { hasRedis, REDIS_URL, uniquePrefix } from '../../test/helpers/services.js';
import { createStore } from '../store/index.js';
import { MemoryNodeRegistry } from '../store/memory/memory-node-registry.js';
import type { NodeRegistry, Store } from '../store/ports.js';
import { createSidForwarder, FORWARDED_HEADER, type SidForwarder } from './sid-forwarder.js';
import type { PipeSocketData } from './ws-pipe.js';

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const redisUp = await hasRedis();

async function configWith(raw: Record<string, unknown>): Promise<Config> {
  const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-fwd-'));
  // The nodes below listen on loopback, so that is the address they advertise.
  const { config } = await loadConfig({ cwd, env: {}, overrides: (r) => Object.assign(r, { roles: { ws: { host: '127.0.0.1' } } }, raw) });
  return config;
}

interface WsNode {
  readonly nodeId: string;
  readonly port: number;
  readonly forwarder: SidForwarder;
  readonly seen: { method: string; body: string; xff: string; forwardedBy: string }[];
  /** The upgrades this node accepted as its own. */
  readonly upgrades: { query: string; xff: string; forwardedBy: string; origin: string }[];
  close(): Promise<void>;
}

/** A stand-in's own websockets: they answer `<node> open`, then echo `<node> echo <text>`. */
interface OwnSocket {
  readonly own: string;
}

/** A ws node stand-in on uWS: the forwarder first, then "its own handling" (an echo naming the node). */
async function startNode(config: Config, nodeId: string, registry: NodeRegistry): Promise<WsNode> {
  const uws = loadUws();
  const app = uws.App();
  let port = 0;
  const seen: WsNode['seen'] = [];
  const upgrades: WsNode['upgrades'] = [];
  const forwarder = createSidForwarder({ config, nodeId, logger, roles: ['ws'], port: () => port, registry: async () => registry });
  const piped = (ws: UwsSocket<OwnSocket | PipeSocketData>): ws is UwsSocket<PipeSocketData> => 'pipe' in ws.getUserData();
  app.ws<OwnSocket | PipeSocketData>('/socket.io/*', {
    upgrade: (res, req, context) => {
      if (forwarder.upgrade(res, req, context)) return;
      upgrades.push({
        query: req.getQuery() ?? '',
        xff: req.getHeader('x-forwarded-for'),
        forwardedBy: req.getHeader(FORWARDED_HEADER),
        origin: req.getHeader('origin'),
      });
      res.upgrade<OwnSocket>(
        { own: nodeId },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => (piped(ws) ? forwarder.sockets.open(ws) : void ws.send(`${nodeId} open`)),
    message: (ws, msg, isBinary) =>
      piped(ws) ? forwarder.sockets.message(ws, msg, isBinary) : void ws.send(`${nodeId} echo ${Buffer.from(msg).toString()}`),
    drain: (ws) => (piped(ws) ? forwarder.sockets.drain(ws) : undefined),
    close: (ws, code) => (piped(ws) ? forwarder.sockets.close(ws, code) : undefined),
  });
  app.any('/socket.io/*', (res, req) => {
    if (forwarder.request(res, req)) return;
    let aborted = false;
    res.onAborted(() => (aborted = true));
    const method = req.getMethod().toUpperCase();
    const xff = req.getHeader('x-forwarded-for');
    const forwardedBy = req.getHeader(FORWARDED_HEADER);
    const chunks: Buffer[] = [];
    res.onData((ab, last) => {
      chunks.push(Buffer.from(new Uint8Array(ab)));
      if (!last) return;
      const body = Buffer.concat(chunks).toString();
      seen.push({ method, body, xff, forwardedBy });
      if (!aborted) res.cork(() => res.writeHeader('content-type', 'text/plain').end(`${nodeId} answered ${method} ${body}`));
    });
  });
  const socket = await new Promise<us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen failed')))),
  );
  port = uws.us_socket_local_port(socket);
  forwarder.start();
  return {
    nodeId,
    port,
    forwarder,
    seen,
    upgrades,
    async close() {
      await forwarder.close();
      uws.us_listen_socket_close(socket);
    },
  };
}

function forwardingSuite(
  name: string,
  setup: () => Promise<{ config: Config; registries: [NodeRegistry, NodeRegistry]; close?: () => Promise<void> }>,
) {
  describe(`sid forwarding between ws nodes: ${name}`, () => {
    let a: WsNode;
    let b: WsNode;
    let closeSetup: (() => Promise<void>) | undefined;
    let registries: [NodeRegistry, NodeRegistry];
    beforeAll(async () => {
      const { config, registries: regs, close } = await setup();
      registries = regs;
      closeSetup = close;
      a = await startNode(config, 'fwd-a', regs[0]);
      b = await startNode(config, 'fwd-b', regs[1]);
      // Both advertised (start() advertises at once; the port is known by then).
      if (name === 'redis') {
        const probe = await createStore(config, logger, 'probe');
        await eventually(() => probe.nodes.lookup('fwd-b'), 'fwd-b advertised in Redis');
        await probe.close();
      }
    });
    afterAll(async () => {
      await Promise.all([a?.close(), b?.close()]);
      await closeSetup?.();
    });

    const sidOf = (node: string) => `${node}.abcdefghijklmnopqrstuv`;

    it('a long-poll GET and POST for a sid of another node are answered by the owner', async () => {
      const get = await fetch(`http://127.0.0.1:${a.port}/socket.io/?EIO=4&transport=polling&sid=${sidOf('fwd-b')}`, {
        headers: { 'x-forwarded-for': '203.0.113.7' },
      });
      expect(get.status).toBe(200);
      expect(await get.text()).toBe('fwd-b answered GET ');
      const post = await fetch(`http://127.0.0.1:${a.port}/socket.io/?EIO=4&transport=polling&sid=${sidOf('fwd-b')}`, {
        method: 'POST',
        body: '42["message",{"text":"hi"}]',
      });
      expect(await post.text()).toBe('fwd-b answered POST 42["message",{"text":"hi"}]');
      const last = b.seen.at(-1)!;
      expect(last.forwardedBy).toBe('fwd-a');
      expect(a.seen).toHaveLength(0);
      expect(b.seen[0]!.xff).toBe('203.0.113.7, 127.0.0.1');
    });

    it('its own sids, sid-less handshakes and unknown nodes are not forwarded', async () => {
      const own = await fetch(`http://127.0.0.1:${b.port}/socket.io/?EIO=4&transport=polling&sid=${sidOf('fwd-b')}`);
      expect(await own.text()).toBe('fwd-b answered GET ');
      const handshake = await fetch(`http://127.0.0.1:${a.port}/socket.io/?EIO=4&transport=polling`);
      expect(await handshake.text()).toBe('fwd-a answered GET ');
      const unknown = await fetch(`http://127.0.0.1:${a.port}/socket.io/?EIO=4&transport=polling&sid=${sidOf('ghost')}`);
      expect(unknown.status).toBe(400);
      expect(await unknown.json()).toEqual({ code: 1, message: 'Session ID unknown' });
      // A request forwarded once is never forwarded again (no loops between confused nodes).
      const looped = await fetch(`http://127.0.0.1:${a.port}/socket.io/?EIO=4&transport=polling&sid=${sidOf('fwd-b')}`, {
        headers: { [FORWARDED_HEADER]: 'fwd-x' },
      });
      expect(looped.status).toBe(400);
    });

    /** A websocket to `port`: its first frame, a frame after sending `hi`, and how it ended. */
    const websocket = (port: number, sid: string, headers: Record<string, string> = {}) =>
      new Promise<{ socket: WebSocket; frames: string[] } | { status: number; body: string }>((resolve, reject) => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket&sid=${sid}`, { headers });
        const frames: string[] = [];
        socket.on('message', (d) => {
          frames.push(String(d));
          if (frames.length === 1) socket.send('hi');
          if (frames.length === 2) resolve({ socket, frames });
        });
        socket.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        socket.on('error', reject);
      });

    it('a websocket upgrade for a sid of another node is piped to the owner, with the client IP and Origin', async () => {
      const r = await websocket(a.port, sidOf('fwd-b'), { 'x-forwarded-for': '203.0.113.9', origin: 'https://shop.example' });
      if (!('socket' in r)) throw new Error(`refused: ${r.status} ${r.body}`);
      expect(r.frames).toEqual(['fwd-b open', 'fwd-b echo hi']);
      expect(a.upgrades).toHaveLength(0);
      expect(b.upgrades.at(-1)).toEqual({
        query: `EIO=4&transport=websocket&sid=${sidOf('fwd-b')}`,
        xff: '203.0.113.9, 127.0.0.1',
        forwardedBy: 'fwd-a',
        origin: 'https://shop.example',
      });
      expect(a.forwarder.piped()).toBe(1);
      const closed = new Promise((done) => r.socket.once('close', done));
      r.socket.close();
      await closed;
      await eventually(() => a.forwarder.piped() === 0, 'the pipe released');
    });

    it('an upgrade for an unknown node, or already forwarded once, gets Engine.IO unknown sid', async () => {
      const unknown = await websocket(a.port, sidOf('ghost'));
      expect(unknown).toEqual({ status: 400, body: JSON.stringify({ code: 1, message: 'Session ID unknown' }) });
      // Already forwarded once: answered here, never sent on (no loops between confused nodes).
      const before = b.upgrades.length;
      const looped = await websocket(a.port, sidOf('fwd-b'), { [FORWARDED_HEADER]: 'fwd-x' });
      expect(looped).toMatchObject({ status: 400 });
      expect(b.upgrades).toHaveLength(before);
    });

    it('a sid of a node advertised where nothing listens any more (killed before its entry expired) gets unknown sid', async () => {
      const dead = net.createServer();
      await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
      const deadPort = (dead.address() as AddressInfo).port;
      await new Promise((r) => dead.close(r));
      await registries[0].advertise('fwd-dead', `http://127.0.0.1:${deadPort}`, 60_000);
      if (registries[1] !== registries[0]) await registries[1].advertise('fwd-dead', `http://127.0.0.1:${deadPort}`, 60_000);
      const poll = await fetch(`http://127.0.0.1:${a.port}/socket.io/?EIO=4&transport=polling&sid=${sidOf('fwd-dead')}`);
      expect(poll.status).toBe(400);
      expect(await poll.json()).toEqual({ code: 1, message: 'Session ID unknown' });
      expect(await websocket(a.port, sidOf('fwd-dead'))).toEqual({
        status: 400,
        body: JSON.stringify({ code: 1, message: 'Session ID unknown' }),
      });
    });

    it('draining closes the open pipes with 1001 and refuses new ones with 503', async () => {
      const r = await websocket(a.port, sidOf('fwd-b'));
      if (!('socket' in r)) throw new Error(`refused: ${r.status} ${r.body}`);
      const code = new Promise<number>((done) => r.socket.once('close', done));
      a.forwarder.drain();
      expect(await code).toBe(1001);
      expect(await websocket(a.port, sidOf('fwd-b'))).toMatchObject({ status: 503 });
    });
  });
}

// One process: both nodes share one in-memory registry.
forwardingSuite('memory', async () => {
  const shared = new MemoryNodeRegistry();
  return { config: await configWith({}), registries: [shared, shared] };
});

describe.skipIf(!redisUp)('redis', () => {
  // Each node with its own engine, as two processes would be.
  forwardingSuite('redis', async () => {
    const config = await configWith({ redis: { url: REDIS_URL, prefix: uniquePrefix('fwd') } });
    const stores: Store[] = [await createStore(config, logger, 'fwd-a'), await createStore(config, logger, 'fwd-b')];
    return {
      config,
      registries: [stores[0]!.nodes, stores[1]!.nodes],
      close: async () => void (await Promise.all(stores.map((st) => st.close()))),
    };
  });
});
