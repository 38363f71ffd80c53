// One HTTP attempt of one delivery: POST the signed JSON body with undici over pooled keep-alive
// connections, within the timeout, and classify the answer. No redirects are followed (a webhook
// URL that redirects is a configuration mistake: the 3xx is reported, not retried).
import { Agent, request, type Dispatcher } from 'undici';
import { VERSION } from '../version.js';
import { HEADER_DELIVERY, HEADER_SIGNATURE, HEADER_TIMESTAMP, signWebhook } from './signing.js';
import { parseRetryAfter } from './backoff.js';

export type AttemptResult =
  | { readonly kind: 'delivered'; readonly status: number; readonly ms: number }
  /** Timeout, connection error, 408, 429, 5xx: try again later (`retryAfterMs` from the receiver). */
  | { readonly kind: 'retryable'; readonly status?: number; readonly error: string; readonly retryAfterMs?: number; readonly ms: number }
  /** Any other answer (4xx, 3xx): final. */
  | { readonly kind: 'rejected'; readonly status: number; readonly error: string; readonly ms: number };

export interface AttemptRequest {
  readonly url: string;
  readonly secret: string;
  readonly deliveryId: string;
  readonly body: string;
  readonly timeoutMs: number;
  /** Aborts the attempt when the dispatcher closes (the result is then thrown, not classified). */
  readonly signal: AbortSignal;
  readonly dispatcher: Dispatcher;
  readonly now?: () => number;
}

/** A keep-alive connection pool per origin, shared by every endpoint of the process. */
export function createWebhookAgent(opts: { timeoutMs: number; connectionsPerOrigin: number }): Agent {
  return new Agent({
    connections: opts.connectionsPerOrigin,
    keepAliveTimeout: 30_000,
    connect: { timeout: opts.timeoutMs },
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
  });
}

const USER_AGENT = `chatd-webhooks/${VERSION}`;
/** How much of a failing answer's body is kept as its error (for the dead stream and logs). */
const ERROR_BODY_BYTES = 200;

export async function attemptDelivery(req: AttemptRequest): Promise<AttemptResult> {
  const now = req.now ?? Date.now;
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  const timestamp = Math.floor(now() / 1000);
  const timeout = AbortSignal.timeout(req.timeoutMs);
  const signal = AbortSignal.any([req.signal, timeout]);
  try {
    const res = await request(req.url, {
      method: 'POST',
      dispatcher: req.dispatcher,
      signal,
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
      headers: {
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        [HEADER_DELIVERY]: req.deliveryId,
        [HEADER_TIMESTAMP]: String(timestamp),
        [HEADER_SIGNATURE]: signWebhook(req.secret, timestamp, req.body),
      },
      body: req.body,
    });
    const status = res.statusCode;
    if (status >= 200 && status < 300) {
      await res.body.dump().catch(() => undefined);
      return { kind: 'delivered', status, ms: ms() };
    }
    const snippet = await readSnippet(res.body);
    const error = `HTTP ${status}${snippet ? `: ${snippet}` : ''}`;
    if (status === 429 || status === 408 || status >= 500) {
      const ra = res.headers['retry-after'];
      const retryAfterMs = parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, now());
      return retryAfterMs === undefined
        ? { kind: 'retryable', status, error, ms: ms() }
        : { kind: 'retryable', status, error, retryAfterMs, ms: ms() };
    }
    return { kind: 'rejected', status, error, ms: ms() };
  } catch (err) {
    if (req.signal.aborted) throw err; // the dispatcher is closing: not an outcome
    if (timeout.aborted || isTimeout(err)) return { kind: 'retryable', error: `timeout after ${req.timeoutMs} ms`, ms: ms() };
    return { kind: 'retryable', error: describe(err), ms: ms() };
  }
}

async function readSnippet(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= ERROR_BODY_BYTES) break;
    }
  } catch {
    /* the body is informational only */
  } finally {
    body.destroy();
  }
  return Buffer.concat(chunks).subarray(0, ERROR_BODY_BYTES).toString('utf8').replace(/\s+/g, ' ').trim();
}

function isTimeout(err: unknown): boolean {
  const e = err as { name?: string; code?: string };
  return (
    e?.name === 'TimeoutError' ||
    e?.code === 'UND_ERR_HEADERS_TIMEOUT' ||
    e?.code === 'UND_ERR_BODY_TIMEOUT' ||
    e?.code === 'UND_ERR_CONNECT_TIMEOUT'
  );
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.cause?.code ?? e?.code;
  const message = e?.cause?.message ?? e?.message ?? String(err);
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
