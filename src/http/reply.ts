// The one writer of the HTTP answers chatd composes itself: the router's, the Socket.IO layer's
// (polling bodies, Engine.IO errors, preflights) and the gateway's (its own refusals and the answers
// it relays from upstreams). Each answer is written whole inside one `res.cork` (uWS sends it in one
// syscall, and outside a uWS callback an uncorked write is a warning and several packets), says
// `Connection: close` when the request did, and carries the request id when the writer has one.
import { randomUUID } from 'node:crypto';
import type { HttpResponse } from '../uws.js';

/** The request-id header: read from the request (when well-formed), echoed, passed upstream. */
export const REQUEST_ID_HEADER = 'X-Request-Id';
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request id of a request: the client's `X-Request-Id` when it is a safe token (it goes into
 * logs and upstream requests), else a new UUID.
 */
export function requestIdOf(given: string | undefined): string {
  return given && REQUEST_ID.test(given) ? given : randomUUID();
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  502: '502 Bad Gateway',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

/** uWS wants the whole status line (`404 Not Found`); an unlisted status still gets one. */
export const statusLine = (status: number): string => STATUS_TEXT[status] ?? `${status} Status`;

/** Whether a request's Connection header asks to close the connection after the response. */
export function isClose(connection: string | undefined): boolean {
  return connection !== undefined && connection !== '' && /(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
}

/** Header values as a writer gets them; arrays (an upstream's Set-Cookie) become one line each. */
export type HeaderValues = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Everything of an answer but its body. */
export interface ReplyHead {
  readonly status: number;
  readonly contentType?: string | undefined;
  /** Written in order, before `Connection` and the request id; undefined values are skipped. */
  readonly headers?: HeaderValues | undefined;
  /**
   * The request asked to close (see isClose): the answer says `Connection: close` (RFC 9112 §9.6).
   * uWS closes such a connection after the response but writes the header only when it closes on
   * its own initiative; a keep-alive pool that was not told (node-fetch 3 on Node ≥ 19 sends
   * `Connection: close` and keeps the socket) reuses the dead socket and its next request fails
   * with "socket hang up".
   */
  readonly close: boolean;
  /** Echoed as X-Request-Id (the Socket.IO layer's answers have none). */
  readonly requestId?: string | undefined;
}

/** Writes a whole answer in one cork: status, Content-Type, headers, Connection, request id, body. */
export function writeReply(res: HttpResponse, head: ReplyHead, body: string | Buffer = ''): void {
  res.cork(() => {
    res.writeStatus(statusLine(head.status));
    if (head.contentType) res.writeHeader('Content-Type', head.contentType);
    const headers = head.headers;
    if (headers) {
      for (const k in headers) {
        const v = headers[k];
        if (v === undefined) continue;
        if (typeof v === 'string') res.writeHeader(k, v);
        else for (const one of v) res.writeHeader(k, one);
      }
    }
    if (head.close) res.writeHeader('Connection', 'close');
    if (head.requestId !== undefined) res.writeHeader(REQUEST_ID_HEADER, head.requestId);
    res.end(body);
  });
}

/** writeReply with a JSON body (`application/json`). */
export function writeJsonReply(res: HttpResponse, head: Omit<ReplyHead, 'contentType'>, body: unknown): void {
  writeReply(res, { ...head, contentType: 'application/json' }, JSON.stringify(body));
}
