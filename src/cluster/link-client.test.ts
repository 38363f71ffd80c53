// The gateway's end of the edge link against a plain `ws` server at LINK_PATH: the link's own
// websocket pings keep a link whose node answers them, and cut one whose node answers nothing (a
// node that hangs, a network that drops silently), closing its clients with 1001 "upstream gone".
// Client heartbeats never travel over the link (the gateway pings its clients), so these pings are
// what finds a silent link.
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { DISCONNECT } from '../errors.js';
import { loadUws } from '../uws.js';
import { EdgeLink } from './link-client.js';
import { LINK_PATH } from './link-codec.js';
import type { Upstream } from './upstreams.js';

let server: WebSocketServer | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function nodeStandIn(autoPong: boolean) {
  const wss = (server = new WebSocketServer({ host: '127.0.0.1', port: 0, path: LINK_PATH, autoPong }));
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const seen = { pings: 0 };
  wss.on('connection', (ws) => ws.on('ping', () => seen.pings++));
  const { port } = wss.address() as AddressInfo;
  const upstream = { url: `http://127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}`, basePath: '' } as Upstream;
  return { seen, upstream };
}

function openLink(upstream: Upstream, onClose: () => void) {
  return new EdgeLink({
    upstream,
    app: loadUws().App(),
    logger: pino({ level: 'silent' }),
    tag: '0|',
    connectTimeoutMs: 5000,
    maxBufferedBytes: 1 << 20,
    pingMs: 20,
    onClose,
  });
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe('edge link liveness (gateway side)', () => {
  it('keeps a link whose node answers its pings', async () => {
    const { seen, upstream } = await nodeStandIn(true);
    let closed = false;
    const link = openLink(upstream, () => (closed = true));
    await link.opened;
    await until(() => seen.pings >= 5);
    expect(closed).toBe(false);
    expect(link.isOpen).toBe(true);
    link.close();
  });

  it('cuts a link whose node answers nothing, closing its clients with 1001 "upstream gone"', async () => {
    const { seen, upstream } = await nodeStandIn(false);
    let closed = false;
    const link = openLink(upstream, () => (closed = true));
    await link.opened;
    const client = link.add();
    await until(() => closed);
    // Cut at the first ping left unanswered, not later.
    expect(seen.pings).toBeLessThanOrEqual(1);
    expect(link.isOpen).toBe(false);
    expect(client.closed).toBe(true);
    expect(client.early).toEqual([{ close: DISCONNECT.upstreamGone.code, reason: DISCONNECT.upstreamGone.reason }]);
  });
});
