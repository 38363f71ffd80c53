// The steps every proxied gateway request shares (api-routes.ts, socketio-routes.ts): watching for
// the client going away, reading the body within a limit, and answering a failure.
import { ChatdError, toChatdError } from '../../errors.js';
import { readBody } from '../../http/router.js';
import { UpstreamFailure, type IncomingRequest } from '../../cluster/http-proxy.js';
import { writeError, type CorsHeaders } from '../../cluster/respond.js';
import type { HttpResponse } from '../../uws.js';

export interface RequestWatch {
  /** `done` once answered, or once the client went away (then nothing more is written). */
  readonly state: { done: boolean };
  /** Aborted when the client goes away: cancels the upstream call. */
  readonly signal: AbortSignal;
}

/** Watches a request for the client going away (uWS wants onAborted set before any await). */
export function watchRequest(res: HttpResponse): RequestWatch {
  const state = { done: false };
  const abort = new AbortController();
  res.onAborted(() => {
    state.done = true;
    abort.abort();
  });
  return { state, signal: abort.signal };
}

/**
 * Runs `run` with the request's body: undefined without reading when `hasBody` is false, else the
 * body read up to `limitBytes`. A larger body, declared (Content-Length) or sent, goes to `fail` as
 * 413 payload_too_large; so does anything `run` throws.
 */
export function withBody(
  res: HttpResponse,
  inc: IncomingRequest,
  hasBody: boolean,
  limitBytes: number,
  run: (body: Buffer | undefined) => Promise<void>,
  fail: (err: unknown) => void,
): void {
  if (!hasBody) {
    run(undefined).catch(fail);
    return;
  }
  const tooLarge = () => fail(new ChatdError('payload_too_large', `Request body exceeds ${limitBytes} bytes`));
  const declared = Number(inc.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) {
    tooLarge();
    return;
  }
  readBody(res, limitBytes, (body) => void run(body).catch(fail), tooLarge);
}

/**
 * Answers a failed request with its error (an internal one is logged first through `logInternal`);
 * nothing when the upstream call was aborted because the client went away. Returns the status
 * written, or undefined when nothing was.
 */
export function refuse(
  res: HttpResponse,
  state: { done: boolean },
  inc: IncomingRequest,
  cors: CorsHeaders,
  err: unknown,
  logInternal: (err: unknown) => void,
): number | undefined {
  if (err instanceof UpstreamFailure && err.kind === 'aborted') return undefined;
  const e = toChatdError(err);
  if (e.code === 'internal') logInternal(err);
  writeError(res, state, e, inc, cors);
  return e.status;
}
