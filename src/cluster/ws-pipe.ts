// Pipes a client websocket (uWebSockets.js, server side) to an upstream websocket (`ws`, client
// side), frame for frame, both ways, without parsing Socket.IO: the ws role behind it checks
// Origin, CONNECT auth and limits itself. Used by ws nodes behind a plain L4 load balancer for an
// upgrade whose session another node owns (sid-forwarder.ts); the gateway tier uses edge links.
//
// Backpressure: towards the client, reading from the upstream pauses when uWS buffers more than
// `highWaterBytes` for the client and resumes when uWS drains (so a slow reader slows its upstream
// socket, not the gateway's memory); past `maxClientBufferBytes` the slow consumer is cut off.
// Towards the upstream, uWS cannot pause reading from the client, so the client is closed with
// 1013 (try again later) once more than `maxUpstreamBufferBytes` wait for the upstream.
import WebSocket from 'ws';
import type { Logger } from 'pino';
import { CLOSE_CODES, DISCONNECT } from '../errors.js';
import type { HttpResponse, WebSocket as UwsSocket } from '../uws.js';
import type { us_socket_context_t } from 'uWebSockets.js';
import { UpstreamFailure } from './http-proxy.js';

/**
 * What a client websocket of the pipe carries. uWS copies the user data object given to
 * `res.upgrade`, so the shared state lives one level down (`PipeSocketData.pipe`).
 */
export interface PipeSocketData {
  readonly pipe: PipeData;
}

export interface PipeData {
  readonly upstream: WebSocket;
  /** Frames the upstream sent before the client socket opened. */
  readonly early: { data: Buffer; binary: boolean }[];
  ws: UwsSocket<PipeSocketData> | undefined;
  /**
   * Frames read from the upstream since the last flush, as (data, binary) pairs: the frames one
   * read of the upstream socket holds go to the client in one corked write, not one write each.
   */
  readonly pending: (Buffer | boolean)[];
  /** Set at open: sends `pending` to the client, then decides whether to keep reading the upstream. */
  flush: (() => void) | undefined;
  paused: boolean;
  closed: boolean;
}

export interface PipeOptions {
  readonly logger: Logger;
  readonly highWaterBytes: number;
  readonly maxClientBufferBytes: number;
  readonly maxUpstreamBufferBytes: number;
}

/** The upstream refused the upgrade with an HTTP answer: relayed to the client as is. */
export class UpstreamRefusal extends Error {
  constructor(
    readonly status: number,
    readonly headers: Readonly<Record<string, string>>,
    readonly body: Buffer,
  ) {
    super(`upstream refused the websocket upgrade with ${status}`);
    this.name = 'UpstreamRefusal';
  }
}

/**
 * Opens the upstream websocket. Resolves once it is open, paused (nothing is read until the
 * client side is open too); rejects with UpstreamRefusal (an HTTP answer instead of 101) or
 * UpstreamFailure (`connect` when it could not connect: safe to try another node).
 */
export function connectUpstream(
  url: string,
  headers: Readonly<Record<string, string>>,
  protocols: readonly string[],
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    // The client left while the gateway awaited something else (rate limit, registry): an abort
    // listener added now would never fire, and the upstream would be opened for nobody.
    if (opts.signal?.aborted) {
      reject(new UpstreamFailure('aborted', 'client went away before the upstream connect'));
      return;
    }
    const upstream = new WebSocket(url, [...protocols], {
      headers: { ...headers },
      perMessageDeflate: false,
      handshakeTimeout: opts.timeoutMs,
      followRedirects: false,
      // Frames from the upstream may be larger than the client's maxPayload (history replays).
      maxPayload: 64 << 20,
    });
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) {
        upstream.removeAllListeners();
        upstream.on('error', () => undefined);
        if (upstream.readyState !== WebSocket.CLOSED) upstream.terminate();
        reject(err);
      } else resolve(upstream);
    };
    const onAbort = () => settle(new UpstreamFailure('aborted', 'client went away during the upgrade'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    upstream.once('open', () => {
      upstream.pause();
      settle();
    });
    upstream.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 64 * 1024) chunks.push(c);
      });
      const done = () => {
        const h: Record<string, string> = {};
        for (const name of ['content-type', 'access-control-allow-origin', 'vary', 'retry-after']) {
          const v = res.headers[name];
          if (typeof v === 'string') h[name] = v;
        }
        settle(new UpstreamRefusal(res.statusCode ?? 502, h, Buffer.concat(chunks)));
      };
      res.on('end', done);
      res.on('error', done);
    });
    upstream.once('error', (err: Error & { code?: string }) => {
      const code = err.code;
      const connect =
        code === 'ECONNREFUSED' ||
        code === 'EHOSTUNREACH' ||
        code === 'ENETUNREACH' ||
        code === 'ENOTFOUND' ||
        /timed out/i.test(err.message);
      settle(new UpstreamFailure(connect ? 'connect' : 'broken', err.message, { cause: err }));
    });
  });
}

/**
 * Completes the client's upgrade. `corked` runs it inside a cork, as uWS requires after an await
 * (UpgradeCork.run: not `res.cork`, which may close the new websocket; see upgrade-cork.ts).
 */
export function acceptClient(
  res: HttpResponse,
  upgrade: { key: string; extensions: string; context: us_socket_context_t },
  upstream: WebSocket,
  corked: (res: HttpResponse, fn: () => void) => void,
): void {
  const data: PipeData = {
    upstream,
    early: [],
    ws: undefined,
    pending: [],
    flush: undefined,
    paused: true,
    closed: false,
  };
  // Frames that arrive before uWS opens the client socket are kept (in order) and flushed at open.
  upstream.on('message', (raw, isBinary) => onUpstreamFrame(data, toBuffer(raw), isBinary));
  corked(res, () => {
    res.upgrade<PipeSocketData>({ pipe: data }, upgrade.key, upstream.protocol, upgrade.extensions, upgrade.context);
  });
}

function toBuffer(raw: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(raw)) return raw;
  if (Array.isArray(raw)) return Buffer.concat(raw);
  return Buffer.from(raw);
}

function onUpstreamFrame(d: PipeData, data: Buffer, binary: boolean): void {
  if (d.closed) return;
  const flush = d.flush;
  if (!flush) {
    d.early.push({ data, binary });
    return;
  }
  // `ws` emits every frame of one socket read synchronously: flush once they are all queued.
  if (d.pending.length === 0) queueMicrotask(flush);
  d.pending.push(data, binary);
}

/** `ws` send options, shared (ws copies them into its own per-send options). */
const AS_BINARY = Object.freeze({ binary: true });
const AS_TEXT = Object.freeze({ binary: false });

/** A close code that may be sent in a close frame (1005, 1006 and 1015 may not). */
export function sendableCode(code: number | undefined, fallback: number): number {
  if (code === undefined) return fallback;
  if (
    code === 1000 ||
    code === 1001 ||
    code === 1002 ||
    code === 1003 ||
    (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999)
  ) {
    return code;
  }
  return fallback;
}

/** The uWS handlers for piped sockets (spread into the `app.ws(...)` behavior). */
export function pipeHandlers(opts: PipeOptions) {
  const resumeBelow = Math.floor(opts.highWaterBytes / 2);
  const checkClientBackpressure = (d: PipeData) => {
    const ws = d.ws;
    if (!ws || d.closed) return;
    const buffered = ws.getBufferedAmount();
    if (!d.paused && buffered > opts.highWaterBytes) {
      d.paused = true;
      d.upstream.pause();
    } else if (d.paused && buffered <= resumeBelow) {
      d.paused = false;
      d.upstream.resume();
    }
  };
  return {
    // uWS closes a client whose buffer passes this (a consumer too slow even with the upstream paused).
    maxBackpressure: opts.maxClientBufferBytes,
    closeOnBackpressureLimit: 1,
    open(ws: UwsSocket<PipeSocketData>) {
      const d = ws.getUserData().pipe;
      d.ws = ws;
      const up = d.upstream;
      up.on('close', (code, reason) => {
        if (d.closed) return;
        flush();
        d.closed = true;
        // A vanished upstream (1006) tells the client to reconnect, which lands on a live node.
        ws.end(sendableCode(code, CLOSE_CODES.goingAway), reason.subarray(0, 120));
      });
      up.on('error', (err) => opts.logger.debug({ err: err.message }, 'upstream websocket error'));
      // After the frames of each upstream read, decide whether to keep reading from the upstream;
      // drain decides when to read again.
      const flush = () => {
        const frames = d.pending;
        if (frames.length === 0) return;
        if (!d.closed) {
          ws.cork(() => {
            for (let i = 0; i < frames.length && !d.closed; i += 2) ws.send(frames[i] as Buffer, frames[i + 1] as boolean);
          });
        }
        frames.length = 0;
        checkClientBackpressure(d);
      };
      d.flush = flush;
      if (d.early.length > 0) {
        ws.cork(() => {
          for (const f of d.early.splice(0)) ws.send(f.data, f.binary);
        });
      }
      d.paused = true;
      checkClientBackpressure(d);
      if (d.paused && ws.getBufferedAmount() <= resumeBelow) {
        d.paused = false;
        up.resume();
      }
    },
    message(ws: UwsSocket<PipeSocketData>, message: ArrayBuffer, isBinary: boolean) {
      const d = ws.getUserData().pipe;
      if (d.closed || d.upstream.readyState !== WebSocket.OPEN) return;
      // uWS detaches the buffer when this callback returns: copy it.
      d.upstream.send(Buffer.from(new Uint8Array(message)), isBinary ? AS_BINARY : AS_TEXT);
      if (d.upstream.bufferedAmount > opts.maxUpstreamBufferBytes) {
        opts.logger.warn({ buffered: d.upstream.bufferedAmount }, 'upstream too slow for a client: closing the client (it retries)');
        d.closed = true;
        d.upstream.terminate();
        ws.end(DISCONNECT.upstreamBusy.code, DISCONNECT.upstreamBusy.reason);
      }
    },
    drain(ws: UwsSocket<PipeSocketData>) {
      checkClientBackpressure(ws.getUserData().pipe);
    },
    close(ws: UwsSocket<PipeSocketData>, code: number) {
      const d = ws.getUserData().pipe;
      d.ws = undefined;
      if (d.closed) return;
      d.closed = true;
      const up = d.upstream;
      // Resume first: a paused upstream would never read the answer to our close frame.
      if (d.paused) up.resume();
      if (up.readyState === WebSocket.OPEN) up.close(sendableCode(code, 1000));
      else up.terminate();
    },
  };
}
