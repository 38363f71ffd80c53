import { describe, expect, it } from 'vitest';
import { upstreamHeaders, type IncomingRequest } from './http-proxy.js';
import { sendableCode } from './ws-pipe.js';

const inc = (headers: Record<string, string>, peerTrusted = false): IncomingRequest => ({
  method: 'POST',
  path: '/webchat/message',
  query: '',
  headers,
  peer: '10.1.2.3',
  peerTrusted,
  requestId: 'rid-1',
});

describe('upstreamHeaders', () => {
  it('drops hop-by-hop headers (and those named in Connection), keeps end-to-end ones, adds forwarding headers', () => {
    const h = upstreamHeaders(
      inc({
        host: 'chat.example',
        connection: 'keep-alive, x-hop',
        'keep-alive': 'timeout=5',
        'x-hop': 'drop me',
        'transfer-encoding': 'chunked',
        'content-length': '12',
        'proxy-authorization': 'Basic x',
        authorization: 'Bearer abc',
        'content-type': 'application/json',
        origin: 'https://shop.example',
        'sec-websocket-key': 'k',
      }),
    );
    expect(h).toEqual({
      authorization: 'Bearer abc',
      'content-type': 'application/json',
      origin: 'https://shop.example',
      'x-forwarded-for': '10.1.2.3',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'chat.example',
      'x-request-id': 'rid-1',
    });
  });

  it('appends the peer to X-Forwarded-For; keeps proto and host only from a trusted proxy', () => {
    const outer = {
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'chat.example',
      host: 'internal:3000',
    };
    const h = upstreamHeaders(inc(outer, true));
    expect(h['x-forwarded-for']).toBe('203.0.113.9, 10.1.2.3');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-host']).toBe('chat.example');
    // From an untrusted peer, its proto/host claims are replaced (X-Forwarded-For is appended to:
    // the next hop walks it from the right, through trusted proxies only).
    const spoofed = upstreamHeaders(inc(outer, false));
    expect(spoofed['x-forwarded-for']).toBe('203.0.113.9, 10.1.2.3');
    expect(spoofed['x-forwarded-proto']).toBe('http');
    expect(spoofed['x-forwarded-host']).toBe('internal:3000');
  });
});

describe('sendableCode', () => {
  it('never sends a reserved close code', () => {
    expect(sendableCode(1000, 1001)).toBe(1000);
    expect(sendableCode(4008, 1001)).toBe(4008);
    expect(sendableCode(1006, 1001)).toBe(1001);
    expect(sendableCode(1005, 1000)).toBe(1000);
    expect(sendableCode(undefined, 1000)).toBe(1000);
  });
});
