// The one HTTP writer: what every answer chatd composes carries, in one cork.
import { describe, expect, it } from 'vitest';
import type { HttpResponse } from '../uws.js';
import { isClose, requestIdOf, writeJsonReply, writeReply } from './reply.js';

function recorder() {
  const out: string[] = [];
  let corked = false;
  const res = {
    cork(fn: () => void) {
      corked = true;
      fn();
      corked = false;
      return res;
    },
    writeStatus(s: string) {
      out.push(`${corked ? '' : 'UNCORKED '}status ${s}`);
      return res;
    },
    writeHeader(k: string, v: string) {
      out.push(`${corked ? '' : 'UNCORKED '}${k}: ${v}`);
      return res;
    },
    end(body: string | Buffer) {
      out.push(`${corked ? '' : 'UNCORKED '}body ${String(body)}`);
      return res;
    },
  };
  return { res: res as unknown as HttpResponse, out };
}

describe('writeReply', () => {
  it('writes status, type, headers, Connection: close, the request id and the body inside one cork', () => {
    const { res, out } = recorder();
    writeReply(
      res,
      {
        status: 429,
        contentType: 'text/plain',
        headers: { 'Retry-After': '1', 'Set-Cookie': ['a=1', 'b=2'], Skip: undefined },
        close: true,
        requestId: 'r-1',
      },
      'slow',
    );
    expect(out).toEqual([
      'status 429 Too Many Requests',
      'Content-Type: text/plain',
      'Retry-After: 1',
      'Set-Cookie: a=1',
      'Set-Cookie: b=2',
      'Connection: close',
      'X-Request-Id: r-1',
      'body slow',
    ]);
  });

  it('says nothing of the connection unless asked, and no request id unless given', () => {
    const { res, out } = recorder();
    writeJsonReply(res, { status: 418, close: false }, { ok: false });
    expect(out).toEqual(['status 418 Status', 'Content-Type: application/json', 'body {"ok":false}']);
  });
});

describe('request id and Connection', () => {
  it('keeps a well-formed client request id and replaces anything else', () => {
    expect(requestIdOf('abc-1.2:3_x')).toBe('abc-1.2:3_x');
    expect(requestIdOf('has space')).toMatch(/^[0-9a-f-]{36}$/);
    expect(requestIdOf('x'.repeat(129))).toMatch(/^[0-9a-f-]{36}$/);
    expect(requestIdOf(undefined)).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('reads close among other Connection tokens', () => {
    expect(isClose('close')).toBe(true);
    expect(isClose('keep-alive, Close')).toBe(true);
    expect(isClose('keep-alive')).toBe(false);
    expect(isClose('closed')).toBe(false);
    expect(isClose(undefined)).toBe(false);
  });
});
