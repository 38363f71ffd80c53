// The gateway's own answers (refusals and upstream errors), written the way the router writes
// them: JSON from the error catalogue, the request id, and CORS headers so a browser can read them.
import type { ChatdError } from '../../errors.js';
import { connectionClose, isClose, statusLine } from '../../http/router.js';
import type { HttpResponse } from '../../uws.js';
import type { IncomingRequest } from './http-proxy.js';

export type CorsHeaders = (origin: string | undefined) => Record<string, string>;

/** A response the gateway answers itself; `state.done` (set when answered or aborted) makes it a no-op. */
export function writeJson(
  res: HttpResponse,
  state: { done: boolean },
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>>,
): void {
  if (state.done) return;
  state.done = true;
  res.cork(() => {
    res.writeStatus(statusLine(status));
    res.writeHeader('Content-Type', 'application/json');
    for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
    res.end(JSON.stringify(body));
  });
}

export function writeError(res: HttpResponse, state: { done: boolean }, err: ChatdError, inc: IncomingRequest, cors: CorsHeaders): void {
  writeJson(res, state, err.status, err.toJSON(), {
    ...err.headers,
    ...cors(inc.headers.origin || undefined),
    ...connectionClose(isClose(inc.headers.connection)),
    'X-Request-Id': inc.requestId,
  });
}

/**
 * Engine.IO's own answer to a sid nobody owns (`{"code":1,"message":"Session ID unknown"}`, 400):
 * socket.io-client then starts a new session from scratch, which recovery makes seamless.
 */
export function writeUnknownSid(res: HttpResponse, state: { done: boolean }, inc: IncomingRequest, cors: CorsHeaders): void {
  writeJson(res, state, 400, { code: 1, message: 'Session ID unknown' }, {
    ...cors(inc.headers.origin || undefined),
    ...connectionClose(isClose(inc.headers.connection)),
    'X-Request-Id': inc.requestId,
  });
}
