// ws nodes forwarding a polling request for a sid they do not own to its owner: two real uWS
// servers in this process, each with a forwarder, found through the engine's node registry (whose
// contract runs in the store contract suite).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { loadUws, type us_listen_socket } from '../uws.js';
import { eventually } from '../../test/helpers/eventually.js';
import { hasRedis, REDIS_URL, uniquePrefix } from '../../test/helpers/services.js';
import { createStore } from '../store/index.js';
import { MemoryNodeRegistry } from '../store/memory/memory-node-registry.js';
import type { NodeRegistry, Store } from '../store/ports.js';
import { createSidForwarder, FORWARDED_HEADER, type SidForwarder } from './sid-forwarder.js';

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
  close(): Promise<void>;
}

/** A ws node stand-in on uWS: the forwarder first, then "its own handling" (an echo naming the node). */
async function startNode(config: Config, nodeId: string, registry: NodeRegistry): Promise<WsNode> {
  const uws = loadUws();
  const app = uws.App();
  let port = 0;
  const seen: WsNode['seen'] = [];
  const forwarder = createSidForwarder({ config, nodeId, logger, roles: ['ws'], port: () => port, registry: async () => registry });
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
    beforeAll(async () => {
      const { config, registries, close } = await setup();
      closeSetup = close;
      a = await startNode(config, 'fwd-a', registries[0]);
      b = await startNode(config, 'fwd-b', registries[1]);
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
