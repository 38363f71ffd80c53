// The gateway's HTTP door to the api nodes: every request under /api/ and /webchat/ is rate
// limited per client IP, pre-checked (credentials.ts), limited per API key, and forwarded round
// robin to a healthy api upstream; the answer goes back as the upstream gave it.
import type { Logger } from 'pino';
import type { ApiKeyRegistry } from '../../auth/api-keys.js';
import { ChatdError } from '../../errors.js';
import type { ClientIpResolver } from '../../http/client-ip.js';
import { httpDuration, httpRequests } from '../../observability/metrics.js';
import type { HttpResponse, TemplatedApp } from '../../uws.js';
import { checkQueryCredentials, redactQuery } from '../../auth/bearer.js';
import { isProtected, namedTenant, precheck } from './credentials.js';
import { forward, readIncoming, writeAnswer, type IncomingRequest, type PeerTrust } from '../../cluster/http-proxy.js';
import type { GatewayLimits } from './rate-limits.js';
import type { CorsHeaders } from '../../cluster/respond.js';
import { refuse, watchRequest, withBody } from './proxied-request.js';
import type { UpstreamGroup } from '../../cluster/upstreams.js';

/** Methods safe to send twice (RFC 9110 §9.2.2): only these are retried after a broken connection. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
const NO_BODY = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface ApiRouteDeps {
  readonly app: TemplatedApp;
  readonly api: UpstreamGroup;
  readonly keys: Pick<ApiKeyRegistry, 'lookup'>;
  readonly limits: GatewayLimits;
  readonly clientIp: ClientIpResolver;
  readonly trusted: PeerTrust;
  readonly cors: CorsHeaders;
  readonly logger: Logger;
  readonly bodyLimitBytes: number;
  readonly timeoutMs: number;
  readonly isDraining: () => boolean;
}

/** Path patterns routed to the api nodes. Pre-checks apply under /api/chat/ and /webchat/. */
export const API_PATTERNS = ['/api/*', '/webchat/*', '/demo', '/demo/*'] as const;

export function mountApiRoutes(deps: ApiRouteDeps): void {
  for (const pattern of API_PATTERNS) deps.app.any(pattern, (res, req) => handle(deps, res, readIncoming(res, req, deps.trusted)));
}

function handle(deps: ApiRouteDeps, res: HttpResponse, inc: IncomingRequest): void {
  const started = process.hrtime.bigint();
  const { state, signal } = watchRequest(res);
  const ip = deps.clientIp(res, inc.headers);
  const log = deps.logger.child({ reqId: inc.requestId });
  const route = routeLabel(inc.path);
  const finish = (status: number) => {
    httpRequests.inc({ role: 'gateway', route, status: String(status) });
    httpDuration.observe({ role: 'gateway', route }, Number(process.hrtime.bigint() - started) / 1e9);
    const line = { method: inc.method, path: inc.path, query: redactQuery(inc.query), status, ip };
    if (status >= 500) log.warn(line, 'proxied request failed');
    else log.debug(line, 'proxied request');
  };
  const fail = (err: unknown) => {
    const status = refuse(res, state, inc, deps.cors, err, (e) => log.error({ err: e }, 'gateway error'));
    if (status !== undefined) finish(status);
  };

  const run = async (body: Buffer | undefined): Promise<void> => {
    if (deps.isDraining()) throw new ChatdError('draining');
    // Every request counts against its IP, refused ones too (a flood of bad requests is a flood).
    await deps.limits.httpIp(ip);
    if (inc.method !== 'OPTIONS') checkQueryCredentials(new URLSearchParams(inc.query));
    let keyId: string | undefined;
    if (isProtected(inc.path)) {
      const { key } = precheck(
        {
          method: inc.method,
          path: inc.path,
          authorization: inc.headers.authorization,
          tenantId: namedTenant(parseJson(body, inc.headers['content-type'] ?? ''), new URLSearchParams(inc.query)),
        },
        deps.keys,
      );
      keyId = key?.keyId;
    }
    if (keyId) await deps.limits.httpKey(keyId);
    const { answer } = await forward(deps.api, (tried) => deps.api.pick(tried), inc, body, {
      timeoutMs: deps.timeoutMs,
      idempotent: IDEMPOTENT.has(inc.method),
      signal,
    });
    if (state.done) return;
    state.done = true;
    writeAnswer(res, answer, inc);
    finish(answer.status);
  };

  withBody(res, inc, !NO_BODY.has(inc.method), deps.bodyLimitBytes, run, fail);
}

function parseJson(body: Buffer | undefined, contentType: string): unknown {
  if (!body || body.length === 0 || !/^application\/json\b/i.test(contentType)) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined; // the api node answers the malformed body with its 400
  }
}

/** A bounded metrics label: known routes by path, the rest by prefix. */
function routeLabel(path: string): string {
  if (/^\/(api\/chat\/[a-z-]+|webchat\/[a-z-]+)$/.test(path)) return path;
  return path.startsWith('/webchat/') ? '/webchat/*' : path.startsWith('/demo') ? '/demo/*' : '/api/*';
}
