// A plain L4 load balancer on loopback for end-to-end tests (no stickiness: the test picks the
// backend of each TCP connection), and a raw websocket upgrade that reports how it was answered.
import net, { type AddressInfo } from 'node:net';
import WebSocket from 'ws';

export interface Connection {
  readonly backend: number | undefined;
  /** The request line of the connection's first request. */
  requestLine: string;
}

/**
 * A plain L4 load balancer on loopback: each TCP connection goes, byte for byte, to the backend
 * `route` picks for it (undefined: the connection is refused), and is recorded with its first
 * request line. No stickiness: connections of one client may go to different backends.
 */
export async function startBalancer(backends: readonly number[]) {
  const connections: Connection[] = [];
  const open = new Set<net.Socket>();
  let route: (n: number) => number | undefined = () => 0;
  const server = net.createServer((client) => {
    const backend = route(connections.length);
    const rec: Connection = { backend, requestLine: '' };
    connections.push(rec);
    if (backend === undefined) {
      client.destroy();
      return;
    }
    const upstream = net.connect(backends[backend]!, '127.0.0.1');
    open.add(client).add(upstream);
    client.once('data', (d: Buffer) => (rec.requestLine = d.toString('latin1').split('\r\n')[0]!));
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections,
    /** From the next connection on: the first one to `first`, every later one to `rest`. */
    plan(first: number, rest: number) {
      const start = connections.length;
      route = (n) => (n === start ? first : rest);
    },
    refuse() {
      route = () => undefined;
    },
    /** Drops every open connection, as a balancer restart would. */
    cut() {
      for (const s of open) s.destroy();
    },
    close() {
      for (const s of open) s.destroy();
      server.close();
    },
  };
}

/** A raw websocket upgrade: 'open' (101), or the HTTP refusal's status and JSON body. */
export function upgrade(url: string): Promise<{ status: number; body: Record<string, unknown> } | 'open'> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => {
      ws.terminate();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || 'null') as Record<string, unknown> });
      });
    });
    ws.on('error', (err) => reject(err));
  });
}
