// Forwards one HTTP request from uWebSockets.js to an upstream over a pooled keep-alive connection
// (undici), and writes the answer back. Used by the gateway (api routes, Socket.IO long-polling)
// and by ws nodes forwarding a polling request for a sid they do not own (sid-forwarder.ts).
//
// Retries: a request that never reached the upstream (connection refused or timed out while
// connecting) is retried on the next upstream whatever its method; one whose connection broke
// afterwards only when it is idempotent — a POST that may have been processed is never sent twice.
import { errors as undiciErrors } from 'undici';
import { ChatdError } from '../errors.js';
import { isClose, requestIdOf, writeReply, type HeaderValues } from '../http/reply.js';
import { isIPv6 } from 'node:net';
import { peerAddress, trustedProxyList } from '../http/client-ip.js';
import type { HttpRequest, HttpResponse } from '../uws.js';
import type { Upstream, UpstreamGroup } from './upstreams.js';

/** Everything the proxy needs from a uWS request, read before any await (uWS invalidates `req`). */
export interface IncomingRequest {
  /** Upper case. */
  readonly method: string;
  readonly path: string;
  /** The raw query string, without `?` ('' when none). */
  readonly query: string;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The TCP peer (appended to X-Forwarded-For). */
  readonly peer: string;
  /** Whether the peer is a trusted proxy (`server.trustedProxies`): only then are its X-Forwarded-Proto/Host kept. */
  readonly peerTrusted: boolean;
  readonly requestId: string;
}

/** Whether a peer address is a trusted proxy. */
export type PeerTrust = (ip: string) => boolean;

/** The PeerTrust of `server.trustedProxies`. */
export function peerTrust(trustedProxies: readonly string[]): PeerTrust {
  if (trustedProxies.length === 0) return () => false;
  const list = trustedProxyList(trustedProxies);
  return (ip) => list.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
}

/** Reads a uWS request into an IncomingRequest. Call synchronously in the handler. */
export function readIncoming(res: HttpResponse, req: HttpRequest, trusted: PeerTrust = () => false): IncomingRequest {
  const headers: Record<string, string> = {};
  req.forEach((k, v) => {
    headers[k] = v;
  });
  const peer = peerAddress(res);
  return {
    method: req.getMethod().toUpperCase(),
    path: req.getUrl(),
    query: req.getQuery() ?? '',
    headers,
    peer,
    peerTrusted: trusted(peer),
    requestId: requestIdOf(headers['x-request-id']),
  };
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy sets itself. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
  'http2-settings',
]);

/** Response headers not copied back: hop-by-hop ones and those uWS writes itself. */
const SKIP_RESPONSE = new Set([...HOP_BY_HOP, 'date', 'uwebsockets', 'x-request-id']);

/** The headers sent upstream: the client's end-to-end headers plus forwarding headers. */
export function upstreamHeaders(inc: IncomingRequest, extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  const listed = new Set((inc.headers.connection ?? '').split(',').map((h) => h.trim().toLowerCase()));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(inc.headers)) {
    if (HOP_BY_HOP.has(k) || listed.has(k) || k.startsWith('sec-websocket-')) continue;
    out[k] = v;
  }
  const xff = inc.headers['x-forwarded-for'];
  out['x-forwarded-for'] = xff ? `${xff}, ${inc.peer}` : inc.peer;
  // From anyone but a trusted proxy these are claims about itself: replaced, not passed on.
  const outer = (name: string) => (inc.peerTrusted ? inc.headers[name] : undefined);
  out['x-forwarded-proto'] = outer('x-forwarded-proto') ?? 'http';
  const host = outer('x-forwarded-host') ?? inc.headers.host;
  if (host) out['x-forwarded-host'] = host;
  else delete out['x-forwarded-host'];
  out['x-request-id'] = inc.requestId;
  return { ...out, ...extra };
}

export interface UpstreamAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

/** How a single attempt failed: decides retry and the client's error. */
export class UpstreamFailure extends Error {
  constructor(
    readonly kind: 'connect' | 'broken' | 'timeout' | 'too_large' | 'aborted',
    message: string,
    opts: { cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'UpstreamFailure';
  }
}

function classify(err: unknown): UpstreamFailure {
  if (err instanceof UpstreamFailure) return err;
  const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code;
  const message = e.message ?? String(err);
  if (e.name === 'AbortError' || err instanceof undiciErrors.RequestAbortedError)
    return new UpstreamFailure('aborted', message, { cause: err });
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new UpstreamFailure('timeout', message, { cause: err });
  if (
    code === 'ECONNREFUSED' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'EHOSTUNREACH' ||
    code === 'ENETUNREACH' ||
    code === 'ENOTFOUND' ||
    code === 'EAI_AGAIN'
  ) {
    return new UpstreamFailure('connect', message, { cause: err });
  }
  return new UpstreamFailure('broken', message, { cause: err });
}

export interface SendOptions {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Largest upstream answer accepted (a bigger one is a 502). */
  readonly maxResponseBytes?: number;
  readonly extraHeaders?: Readonly<Record<string, string>>;
}

/** One attempt: sends `inc` (with `body`) to `target` and buffers the answer. */
export async function sendUpstream(
  target: Upstream,
  inc: IncomingRequest,
  body: Buffer | undefined,
  opts: SendOptions,
): Promise<UpstreamAnswer> {
  const max = opts.maxResponseBytes ?? 32 << 20;
  try {
    const r = await target.pool.request({
      method: inc.method as 'GET',
      path: `${target.basePath}${inc.path}${inc.query ? `?${inc.query}` : ''}`,
      headers: upstreamHeaders(inc, opts.extraHeaders),
      body: body && body.length > 0 ? body : inc.method === 'GET' || inc.method === 'HEAD' ? null : '',
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const declared = Number(r.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      r.body.destroy();
      throw new UpstreamFailure('too_large', `upstream answer of ${declared} bytes exceeds ${max}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of r.body) {
      size += (chunk as Buffer).length;
      if (size > max) {
        r.body.destroy();
        throw new UpstreamFailure('too_large', `upstream answer exceeds ${max} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return { status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks, size) };
  } catch (err) {
    throw classify(err);
  }
}

export interface ForwardOptions extends SendOptions {
  /** Idempotent requests are retried on another upstream after a broken connection too. */
  readonly idempotent: boolean;
  /** Upstreams tried at most. */
  readonly maxAttempts?: number;
}

/**
 * Sends to upstreams chosen by `pick` until one answers, under the retry rule above. Throws a
 * ChatdError: 502 `upstream_unavailable` (none healthy, or every attempt failed), 504
 * `upstream_timeout`.
 */
export async function forward(
  group: UpstreamGroup,
  pick: (tried: ReadonlySet<Upstream>) => Upstream | undefined,
  inc: IncomingRequest,
  body: Buffer | undefined,
  opts: ForwardOptions,
): Promise<{ answer: UpstreamAnswer; upstream: Upstream }> {
  const tried = new Set<Upstream>();
  const max = opts.maxAttempts ?? 3;
  let last: UpstreamFailure | undefined;
  while (tried.size < max) {
    const u = pick(tried);
    if (!u) break;
    tried.add(u);
    try {
      return { answer: await sendUpstream(u, inc, body, opts), upstream: u };
    } catch (err) {
      const f = err as UpstreamFailure;
      last = f;
      if (f.kind === 'aborted') throw f;
      if (f.kind === 'timeout') throw new ChatdError('upstream_timeout', undefined, { cause: f });
      if (f.kind === 'too_large') throw new ChatdError('upstream_unavailable', 'Upstream answer too large', { cause: f });
      if (f.kind === 'connect' || f.kind === 'broken') group.markDown(u, f.message);
      if (f.kind === 'connect' || opts.idempotent) continue;
      break;
    }
  }
  throw new ChatdError('upstream_unavailable', undefined, last ? { cause: last } : {});
}

/**
 * Writes an upstream answer to the client (http/reply.ts): its end-to-end headers, then this
 * request's id and `Connection: close` when the client asked for it (the upstream's own
 * `Connection` is hop-by-hop and its request id is replaced by ours, which is the same).
 */
export function writeAnswer(res: HttpResponse, answer: UpstreamAnswer, inc: Pick<IncomingRequest, 'headers' | 'requestId'>): void {
  const headers: Record<string, string | string[] | undefined> = {};
  for (const k in answer.headers) if (!SKIP_RESPONSE.has(k)) headers[k] = answer.headers[k];
  writeReply(
    res,
    { status: answer.status, headers: headers as HeaderValues, close: isClose(inc.headers.connection), requestId: inc.requestId },
    answer.body,
  );
}
