// The Engine.IO long-polling transport: a GET is held (onAborted registered first) until frames are
// buffered for the session, a POST body carries one or more packets (joined with \x1e, at most
// maxPayload bytes, 413 beyond), and frames for a polling session wait in its PollState buffer until
// the engine's deferred flush answers the held GET. Also the CORS preflight of the Socket.IO path.
import { decodePayload } from 'engine.io-parser';
import { DISCONNECT } from '../errors.js';
import { isClose, writeReply } from '../http/reply.js';
import { socketConnections } from '../observability/metrics.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws.js';
import { EIO_ERR } from './eio-errors.js';
import type { Engine } from './engine.js';
import { F_CLOSED, F_POSTING, F_PROBE, NO_REPLY_TO, type Frame, type PollState, type ReplyTo, type Session } from './session.js';

export class PollingTransport<C> {
  /** Sessions whose transport is polling (the heartbeat pings each one through its buffer). */
  readonly sessions = new Set<Session<C>>();
  /** Sessions with frames buffered since the last flush. */
  private readonly dirty = new Set<Session<C>>();

  constructor(private readonly e: Engine<C>) {}

  mount(app: TemplatedApp, path: string): void {
    app.get(path, (res, req) => this.onGet(res, req));
    app.post(path, (res, req) => this.onPost(res, req));
    app.options(path, (res, req) => this.onPreflight(res, req));
  }

  /** Buffers frames for a polling session; over sendBufferBytes the slow consumer is cut off. */
  enqueue(s: Session<C>, poll: PollState, frames: Frame[]): void {
    for (const f of frames) {
      poll.buf.push(f);
      poll.bytes += f.length;
    }
    if (poll.bytes > this.e.opts.sendBufferBytes) {
      this.e.closeSession(s, DISCONNECT.slowConsumer);
      return;
    }
    this.dirty.add(s);
    this.e.scheduleFlush();
  }

  /** The flush's second half: every held GET with frames waiting is answered. */
  answerDirty(): void {
    if (this.dirty.size === 0) return; // websockets only: no iterator per flush
    for (const s of this.dirty) {
      const poll = s.poll;
      if (poll?.res && poll.buf.length > 0 && !(s.flags & F_CLOSED)) this.respond(s, poll, poll.buf);
    }
    this.dirty.clear();
  }

  /** Answers the pending GET, if any: with the buffer, or a noop when `noopIfEmpty`. */
  answer(s: Session<C>, noopIfEmpty: boolean): void {
    const poll = s.poll;
    if (!poll?.res) return;
    if (poll.buf.length > 0) this.respond(s, poll, poll.buf);
    else if (noopIfEmpty) this.respond(s, poll, ['6']);
  }

  /** Answers the held GET with `frames` (the buffer, which is then emptied, or packets of its own). */
  respond(s: Session<C>, poll: PollState, frames: Frame[]): void {
    const res = poll.res!;
    poll.res = null;
    const body = frames.map((f) => (typeof f === 'string' ? f : 'b' + f.toString('base64'))).join('\x1e');
    if (frames === poll.buf) {
      poll.buf = [];
      poll.bytes = 0;
    }
    this.text(res, 200, body, poll.resTo);
    s.drained();
  }

  /** A polling session leaves this transport (closed, or upgraded to a websocket). */
  release(s: Session<C>): void {
    this.sessions.delete(s);
    this.dirty.delete(s);
    socketConnections.dec({ transport: 'polling' });
  }

  private text(res: HttpResponse, status: number, body: string, to: ReplyTo): void {
    writeReply(res, { status, contentType: 'text/plain; charset=UTF-8', headers: this.e.cors(to.origin), close: to.close }, body);
  }

  private onPreflight(res: HttpResponse, req: HttpRequest): void {
    if (this.e.opts.forward?.request(res, req)) return;
    const origin = req.getHeader('origin') || undefined;
    const close = isClose(req.getHeader('connection'));
    const headers = this.e.cors(origin);
    const cors = this.e.opts.cors;
    if (origin && cors?.allowOrigin(origin)) {
      headers['Access-Control-Allow-Methods'] = 'GET, POST, OPTIONS';
      headers['Access-Control-Allow-Headers'] = 'Authorization, Content-Type';
      headers['Access-Control-Max-Age'] = String(cors.maxAgeSeconds);
    }
    writeReply(res, { status: 204, headers, close });
  }

  private onGet(res: HttpResponse, req: HttpRequest): void {
    const e = this.e;
    // Websocket upgrades are forwarded by the ws route (the guard below yields them to it).
    if (!req.getHeader('upgrade') && e.opts.forward?.request(res, req)) return;
    if (req.getHeader('upgrade')) {
      // A websocket upgrade that reached the GET route (uWS tries the ws route first).
      req.setYield(true);
      return;
    }
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
      const s = sid ? e.sessions.get(sid) : undefined;
      if (s?.poll?.res === res) s.poll.res = null;
    });
    const eio = req.getQuery('EIO');
    const transport = req.getQuery('transport');
    const sid = req.getQuery('sid');
    const to = e.replyTo(req);
    if (!e.queryAllowed(res, req, to)) return;
    if (eio !== '4') return e.eioError(res, 400, EIO_ERR.unsupported, to);
    if (transport !== 'polling') return e.eioError(res, 400, EIO_ERR.transportUnknown, to);
    if (!sid) {
      const hs = e.readHandshake(res, req);
      if (!e.admit(res, hs)) return;
      const s = e.addSession(hs);
      s.poll = { res: null, resTo: NO_REPLY_TO, buf: [], bytes: 0, rooms: new Set(), closing: false };
      this.sessions.add(s);
      socketConnections.inc({ transport: 'polling' });
      this.text(res, 200, e.openPacket(s.id, ['websocket']), to);
      return;
    }
    const s = e.sessions.get(sid);
    const poll = s?.poll;
    if (!s || !poll || aborted) return e.eioError(res, 400, EIO_ERR.unknownSid, to);
    if (poll.res) {
      // Two GETs at once: the reference server answers 400 and closes the session.
      e.eioError(res, 400, EIO_ERR.badRequest, to);
      e.closeSession(s, DISCONNECT.transportError);
      return;
    }
    poll.res = res;
    poll.resTo = to;
    if (poll.closing) {
      this.respond(s, poll, [...poll.buf, '1']);
      e.forget(s);
      return;
    }
    if (poll.buf.length > 0) this.respond(s, poll, poll.buf);
    else if (s.flags & F_PROBE) this.respond(s, poll, ['6']);
  }

  private onPost(res: HttpResponse, req: HttpRequest): void {
    const e = this.e;
    if (e.opts.forward?.request(res, req)) return;
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
      if (s) s.flags &= ~F_POSTING;
    });
    const sid = req.getQuery('sid');
    const to = e.replyTo(req);
    const declared = Number(req.getHeader('content-length'));
    const s = sid ? e.sessions.get(sid) : undefined;
    if (!e.queryAllowed(res, req, to)) return;
    if (req.getQuery('EIO') !== '4') return e.eioError(res, 400, EIO_ERR.unsupported, to);
    if (!sid) return e.eioError(res, 400, EIO_ERR.badMethod, to);
    if (!s || !s.poll || s.flags & F_CLOSED) return e.eioError(res, 400, EIO_ERR.unknownSid, to);
    if (s.flags & F_POSTING) {
      e.eioError(res, 400, EIO_ERR.badRequest, to);
      e.closeSession(s, DISCONNECT.transportError);
      return;
    }
    const limit = e.opts.maxPayload;
    const tooLarge = () => {
      this.text(res, 413, 'Payload Too Large', to);
      e.closeSession(s, DISCONNECT.payloadTooLarge);
    };
    if (Number.isFinite(declared) && declared > limit) return tooLarge();
    s.flags |= F_POSTING;
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    res.onData((ab, isLast) => {
      if (over || aborted) return;
      size += ab.byteLength;
      if (size > limit) {
        over = true;
        s.flags &= ~F_POSTING;
        tooLarge();
        return;
      }
      chunks.push(Buffer.from(new Uint8Array(ab)));
      if (!isLast) return;
      s.flags &= ~F_POSTING;
      const body = Buffer.concat(chunks, size).toString('utf8');
      this.text(res, 200, 'ok', to);
      if (s.flags & F_CLOSED) return;
      const packets = decodePayload(body, 'nodebuffer');
      for (const p of packets) {
        if (s.flags & F_CLOSED) break;
        e.onEnginePacket(s, p);
      }
    });
  }
}
