import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { UpstreamFailure } from './http-proxy.js';
import { connectUpstream, sendableCode } from './ws-pipe.js';

describe('connectUpstream', () => {
  it('does not open an upstream for a client that already went away (signal aborted before the call)', async () => {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    try {
      const err = await connectUpstream(`ws://127.0.0.1:${port}/socket.io/`, {}, [], {
        timeoutMs: 2000,
        signal: AbortSignal.abort(),
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UpstreamFailure);
      expect((err as UpstreamFailure).kind).toBe('aborted');
      expect(connections).toBe(0);
    } finally {
      server.close();
    }
  });
});

describe('sendableCode', () => {
  it('replaces codes that may not be sent in a close frame', () => {
    expect(sendableCode(1006, 1001)).toBe(1001);
    expect(sendableCode(1005, 1000)).toBe(1000);
    expect(sendableCode(undefined, 1001)).toBe(1001);
    expect(sendableCode(1013, 1001)).toBe(1013);
    expect(sendableCode(4001, 1001)).toBe(4001);
  });
});
