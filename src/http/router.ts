// The one place where uWebSockets.js's HTTP rules are followed: read everything from `req` before
// any await, register onAborted first, answer every request (a catch-all gives 404/405), limit
// bodies, speak JSON errors from the catalogue, count and time every request. Answers are written
// by reply.ts (one cork, the request id, `Connection: close` echoed).
import type { Logger } from 'pino';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws.js';
import { ChatdError, toChatdError } from '../errors.js';
import { httpDuration, httpRequests } from '../observability/metrics.js';
import type { ClientIpResolver } from './client-ip.js';
import { isClose, REQUEST_ID_HEADER, requestIdOf, writeReply } from './reply.js';

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

const UWS_METHOD = { GET: 'get', POST: 'post', PUT: 'put', PATCH: 'patch', DELETE: 'del', OPTIONS: 'options' } as const;

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
      const requestId = requestIdOf(req.getHeader('x-request-id'));
      const origin = req.getHeader('origin') || undefined;
      const close = isClose(req.getHeader('connection'));
      res.onAborted(() => undefined);
      writeReply(
        res,
        { status: err.status, contentType: 'application/json', headers: { ...err.headers, ...this.corsHeaders(origin) }, close, requestId },
        JSON.stringify(err.toJSON()),
      );
      httpRequests.inc({ role: this.opts.role, route: 'unmatched', status: String(err.status) });
    });
  }

  private preflight(res: HttpResponse, req: HttpRequest): void {
    const origin = req.getHeader('origin') || undefined;
    const close = isClose(req.getHeader('connection'));
    const headers: Record<string, string> = this.corsHeaders(origin);
    if (headers['Access-Control-Allow-Origin']) {
      headers['Access-Control-Allow-Methods'] = [...(this.routes.get(req.getUrl()) ?? [])].join(', ');
      headers['Access-Control-Allow-Headers'] = this.opts.corsHeaders ?? `Authorization, Content-Type, ${REQUEST_ID_HEADER}`;
      headers['Access-Control-Max-Age'] = String(this.opts.cors?.maxAgeSeconds ?? 600);
    }
    res.onAborted(() => undefined);
    writeReply(res, { status: 204, headers, close });
  }

  corsHeaders(origin: string | undefined): Record<string, string> {
    if (!origin || !this.opts.cors?.allowOrigin(origin)) return {};
    return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin', 'Access-Control-Expose-Headers': `${REQUEST_ID_HEADER}, Retry-After` };
  }

  private handle(res: HttpResponse, req: HttpRequest, method: Method, route: string, handler: Handler, opts: RouteOptions): void {
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
    const requestId = requestIdOf(headers['x-request-id']);
    const ip = this.opts.clientIp(res, headers);
    const origin = headers.origin || undefined;
    const close = isClose(headers.connection);
    const log = this.opts.logger.child({ reqId: requestId });

    const finish = (reply: Reply) => {
      if (aborted) return;
      const status = reply.status ?? 200;
      const body = reply.raw ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
      const contentType = reply.raw !== undefined ? reply.contentType : 'application/json';
      writeReply(res, { status, contentType, headers: { ...reply.headers, ...this.corsHeaders(origin) }, close, requestId }, body);
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
      readBody(
        res,
        limit,
        (buf) => run(buf),
        () => fail(new ChatdError('payload_too_large', `Request body exceeds ${limit} bytes`)),
      );
    } else {
      run(undefined);
    }
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
