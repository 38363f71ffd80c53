// The gateway's own answers (refusals and upstream errors), written by http/reply.ts as the router
// writes its own: JSON from the error catalogue, the request id, and CORS headers so a browser can
// read them.
import type { ChatdError } from '../errors.js';
import { isClose, writeJsonReply, type HeaderValues } from '../http/reply.js';
import { EIO_ERR } from '../protocol/eio-errors.js';
import type { HttpResponse } from '../uws.js';
import type { IncomingRequest } from './http-proxy.js';
import type { UpstreamRefusal } from './ws-pipe.js';

export type CorsHeaders = (origin: string | undefined) => Record<string, string>;

/**
 * A JSON answer the gateway writes itself to `inc`, with its CORS headers, the request id and
 * `Connection: close` when asked; `state.done` (set when answered or aborted) makes it a no-op.
 */
export function writeJson(
  res: HttpResponse,
  state: { done: boolean },
  status: number,
  body: unknown,
  inc: IncomingRequest,
  cors: CorsHeaders,
  headers?: HeaderValues,
): void {
  if (state.done) return;
  state.done = true;
  writeJsonReply(
    res,
    {
      status,
      headers: { ...headers, ...cors(inc.headers.origin || undefined) },
      close: isClose(inc.headers.connection),
      requestId: inc.requestId,
    },
    body,
  );
}

export function writeError(res: HttpResponse, state: { done: boolean }, err: ChatdError, inc: IncomingRequest, cors: CorsHeaders): void {
  writeJson(res, state, err.status, err.toJSON(), inc, cors, err.headers);
}

/**
 * Engine.IO's own answer to a sid nobody owns (`{"code":1,"message":"Session ID unknown"}`, 400):
 * socket.io-client then starts a new session from scratch, which recovery makes seamless.
 */
export function writeUnknownSid(res: HttpResponse, state: { done: boolean }, inc: IncomingRequest, cors: CorsHeaders): void {
  writeJson(res, state, 400, EIO_ERR.unknownSid, inc, cors);
}

/** Relays an upstream's refusal of an upgrade (e.g. 400 unknown sid, 403 origin) as it was. */
export function writeRefusal(
  res: HttpResponse,
  state: { done: boolean },
  refusal: UpstreamRefusal,
  inc: IncomingRequest,
  cors: CorsHeaders,
): void {
  const type = refusal.headers['content-type'] ?? 'application/json';
  let body: unknown;
  try {
    body = type.startsWith('application/json') ? JSON.parse(refusal.body.toString('utf8') || 'null') : refusal.body.toString('utf8');
  } catch {
    body = refusal.body.toString('utf8');
  }
  const retryAfter = refusal.headers['retry-after'];
  writeJson(res, state, refusal.status, body, inc, cors, retryAfter ? { 'Retry-After': retryAfter } : undefined);
}
