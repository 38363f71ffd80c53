// The one place where uWebSockets.js's HTTP rules are followed: read everything from `req` before
// any await, register onAborted first, write inside res.cork, answer every request (a catch-all
// gives 404/405), limit bodies, speak JSON errors from the catalogue, echo a request id, answer
// `Connection: close` with `Connection: close`, count and time every request.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws.js';
import { ChatdError, toChatdError } from '../errors.js';
import { httpDuration, httpRequests } from '../observability/metrics.js';
import type { ClientIpResolver } from './client-ip.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';

export interface Req {
  readonly method: Method;
  readonly path: string;
  readonly query: URLSearchParams;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly ip: string;
  readonly requestId: string;
  readonly origin: string | undefined;
  /** The parsed JSON body (routes with `json: true`), else undefined. */
  readonly body: unknown;
  readonly rawBody: Buffer | undefined;
  readonly log: Logger;
}

export interface Reply {
  readonly status?: number;
  /** Serialized as JSON unless `raw` is given. */
  readonly body?: unknown;
  readonly raw?: string | Buffer;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export type Handler = (req: Req) => Promise<Reply> | Reply;

/**
 * Runs before the handler of every route whose path starts with `prefix` (after the body is read):
 * throw a ChatdError to refuse the request. `--role all` uses it to keep the gateway's checks
 * (credential shape, rate limits) in process, with no network hop.
 */
export interface Guard {
  readonly prefix: string;
  check(req: Req): Promise<void> | void;
}

export interface RouteOptions {
  /** Read and parse a JSON body (415 unless application/json, 400 if malformed, 413 over the limit). */
  readonly json?: boolean;
  /** Read a raw body up to the limit. */
  readonly body?: boolean;
  readonly bodyLimit?: number;
}

/** Decides CORS for a request: the origin to echo, or undefined to send no CORS headers. */
export interface CorsPolicy {
  allowOrigin(origin: string): boolean;
  readonly maxAgeSeconds: number;
}

export interface RouterOptions {
  readonly role: string;
  readonly logger: Logger;
  readonly bodyLimit: number;
  readonly clientIp: ClientIpResolver;
  readonly cors?: CorsPolicy;
  /** Headers allowed in CORS preflights. */
  readonly corsHeaders?: string;
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
export const statusLine = (status: number) => STATUS_TEXT[status] ?? `${status} Status`;

const UWS_METHOD = { GET: 'get', POST: 'post', PUT: 'put', PATCH: 'patch', DELETE: 'del', OPTIONS: 'options' } as const;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Whether a request's Connection header asks to close the connection after the response. */
export function isClose(connection: string | undefined): boolean {
  return connection !== undefined && connection !== '' && /(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
}

/**
 * The header for the answer to a request that asked to close (RFC 9112 §9.6: the server should
 * say `close` in that response). uWS closes such a connection after the response but writes the
 * header only when it closes on its own initiative; a keep-alive pool that was not told (node-fetch
 * 3 on Node ≥ 19 sends `Connection: close` and keeps the socket) reuses the dead socket and the next
 * request fails with "socket hang up". Every writer of a response adds this: the router here, the
 * protocol layer, the gateway's own and proxied answers.
 */
export function connectionClose(close: boolean): Readonly<Record<string, string>> {
  return close ? CLOSE_HEADER : NO_HEADERS;
}
const CLOSE_HEADER = Object.freeze({ Connection: 'close' });
const NO_HEADERS = Object.freeze({});

export class HttpRouter {
  private readonly routes = new Map<string, Set<Method>>();
  private readonly guards: Guard[] = [];
  private readonly opts: RouterOptions;

  constructor(
    readonly app: TemplatedApp,
    opts: RouterOptions,
  ) {
    this.opts = opts;
  }

  get(path: string, handler: Handler, opts: RouteOptions = {}): this {
    return this.route('GET', path, handler, opts);
  }

  post(path: string, handler: Handler, opts: RouteOptions = { json: true }): this {
    return this.route('POST', path, handler, opts);
  }

  route(method: Method, path: string, handler: Handler, opts: RouteOptions = {}): this {
    const methods = this.routes.get(path) ?? new Set<Method>();
    if (methods.has(method)) throw new Error(`route ${method} ${path} registered twice`);
    methods.add(method);
    this.routes.set(path, methods);
    this.app[UWS_METHOD[method]](path, (res, req) => this.handle(res, req, method, path, handler, opts));
    return this;
  }

  /** Adds a guard (see Guard); applies to routes registered before and after. */
  addGuard(guard: Guard): this {
    this.guards.push(guard);
    return this;
  }

  /** Whether a path was registered (by any method): lets a raw handler tell 404 from 405. */
  has(path: string): boolean {
    return this.routes.has(path);
  }

  /**
   * Registers CORS preflights for every route and the catch-all (404 for an unknown path, 405 for a
   * known path with another method). Call once, after every route.
   */
  finalize(): void {
    for (const path of this.routes.keys()) {
      if (!this.routes.get(path)!.has('OPTIONS')) {
        this.app.options(path, (res, req) => this.preflight(res, req));
      }
    }
    this.app.any('/*', (res, req) => {
      const method = req.getMethod().toUpperCase() as Method;
      const path = req.getUrl();
      const known = this.routes.get(path);
      const err =
        known && !known.has(method)
          ? new ChatdError('method_not_allowed', `${method} is not allowed on ${path}`, {
              headers: { Allow: [...known].join(', ') },
            })
          : new ChatdError('not_found', `No route ${method} ${path}`);
      const requestId = this.requestIdOf(req);
      const origin = req.getHeader('origin') || undefined;
      const close = isClose(req.getHeader('connection'));
      res.onAborted(() => undefined);
      this.send(res, err.status, JSON.stringify(err.toJSON()), 'application/json', {
        ...err.headers,
        ...this.corsHeaders(origin),
        ...connectionClose(close),
        'X-Request-Id': requestId,
      });
      httpRequests.inc({ role: this.opts.role, route: 'unmatched', status: String(err.status) });
    });
  }

  private preflight(res: HttpResponse, req: HttpRequest): void {
    const origin = req.getHeader('origin') || undefined;
    const headers: Record<string, string> = { ...this.corsHeaders(origin), ...connectionClose(isClose(req.getHeader('connection'))) };
    if (headers['Access-Control-Allow-Origin']) {
      headers['Access-Control-Allow-Methods'] = [...(this.routes.get(req.getUrl()) ?? [])].join(', ');
      headers['Access-Control-Allow-Headers'] =
        this.opts.corsHeaders ?? 'Authorization, Content-Type, X-Request-Id';
      headers['Access-Control-Max-Age'] = String(this.opts.cors?.maxAgeSeconds ?? 600);
    }
    res.onAborted(() => undefined);
    this.send(res, 204, '', undefined, headers);
  }

  corsHeaders(origin: string | undefined): Record<string, string> {
    if (!origin || !this.opts.cors?.allowOrigin(origin)) return {};
    return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin', 'Access-Control-Expose-Headers': 'X-Request-Id, Retry-After' };
  }

  private requestIdOf(req: HttpRequest): string {
    const given = req.getHeader('x-request-id');
    return given && REQUEST_ID.test(given) ? given : randomUUID();
  }

  private handle(
    res: HttpResponse,
    req: HttpRequest,
    method: Method,
    route: string,
    handler: Handler,
    opts: RouteOptions,
  ): void {
    const started = process.hrtime.bigint();
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // Everything from req, now: it is invalid after this function returns.
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    const path = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const requestId = this.requestIdOf(req);
    const ip = this.opts.clientIp(res, headers);
    const origin = headers.origin || undefined;
    const close = isClose(headers.connection);
    const log = this.opts.logger.child({ reqId: requestId });

    const finish = (reply: Reply) => {
      if (aborted) return;
      const status = reply.status ?? 200;
      const body =
        reply.raw ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
      const contentType = reply.raw !== undefined ? reply.contentType : 'application/json';
      this.send(res, status, body, contentType, {
        ...reply.headers,
        ...this.corsHeaders(origin),
        ...connectionClose(close),
        'X-Request-Id': requestId,
      });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      httpRequests.inc({ role: this.opts.role, route, status: String(status) });
      httpDuration.observe({ role: this.opts.role, route }, seconds);
      const line = { method, path, status, ms: Math.round(seconds * 1e4) / 10, ip };
      if (status >= 500) log.warn(line, 'request failed');
      else log.debug(line, 'request');
    };
    const fail = (err: unknown) => {
      const e = toChatdError(err);
      if (e.code === 'internal') log.error({ err }, 'unhandled error');
      else if (e.status >= 500) log.warn({ err: e.cause ?? e }, e.message);
      finish({ status: e.status, body: e.toJSON(), ...(e.headers ? { headers: e.headers } : {}) });
    };

    const run = (rawBody: Buffer | undefined) => {
      let body: unknown;
      if (opts.json) {
        const type = (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type !== 'application/json') {
          return fail(new ChatdError('unsupported_media_type'));
        }
        try {
          body = JSON.parse(rawBody!.toString('utf8'));
        } catch (err) {
          return fail(new ChatdError('invalid_json', `Malformed JSON body: ${(err as Error).message}`));
        }
      }
      const request: Req = { method, path, query, headers, ip, requestId, origin, body, rawBody, log };
      const guards = this.guards.filter((g) => path.startsWith(g.prefix));
      const call = () => {
        const result = handler(request);
        if (result instanceof Promise) result.then(finish, fail);
        else finish(result);
      };
      try {
        if (guards.length === 0) call();
        else
          guards
            .reduce<Promise<void>>((p, g) => p.then(() => g.check(request)), Promise.resolve())
            .then(() => {
              try {
                call();
              } catch (err) {
                fail(err);
              }
            }, fail);
      } catch (err) {
        fail(err);
      }
    };

    if (opts.json || opts.body) {
      const limit = opts.bodyLimit ?? this.opts.bodyLimit;
      const declared = Number(headers['content-length']);
      if (Number.isFinite(declared) && declared > limit) {
        // Answer at once and close: no need to read a body we will refuse.
        fail(new ChatdError('payload_too_large', `Request body exceeds ${limit} bytes`));
        return;
      }
      readBody(res, limit, (buf) => run(buf), () => fail(new ChatdError('payload_too_large', `Request body exceeds ${limit} bytes`)));
    } else {
      run(undefined);
    }
  }

  /** Writes a whole response in one cork. */
  send(res: HttpResponse, status: number, body: string | Buffer, contentType: string | undefined, headers: Record<string, string>): void {
    res.cork(() => {
      res.writeStatus(statusLine(status));
      if (contentType) res.writeHeader('Content-Type', contentType);
      for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
      res.end(body);
    });
  }
}

/**
 * Reads a request body up to `limit` bytes. uWS detaches each chunk after the callback returns, so
 * chunks are copied. Over the limit, `onTooLarge` runs once and the rest is ignored.
 */
export function readBody(res: HttpResponse, limit: number, onBody: (body: Buffer) => void, onTooLarge: () => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  res.onData((ab, isLast) => {
    if (over) return;
    size += ab.byteLength;
    if (size > limit) {
      over = true;
      onTooLarge();
      return;
    }
    chunks.push(Buffer.from(new Uint8Array(ab)));
    if (isLast) onBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  });
}
