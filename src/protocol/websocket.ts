// The Engine.IO websocket transport on uWS: the upgrade (a new session, or the probe of a polling
// session), open, messages, drain and close. uWS settings follow shared/notes/socketio-on-uws.md:
// maxPayloadLength = maxPayload, closeOnBackpressureLimit (the default silently skips a slow
// subscriber), no idle timeout and no automatic pings (Engine.IO pings are application-level).
import { decodePacket } from 'engine.io-parser';
import { DISCONNECT } from '../errors.js';
import { socketConnections } from '../observability/metrics.js';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket } from '../uws.js';
import type { us_socket_context_t } from 'uWebSockets.js';
import type { PipeSocketData } from '../cluster/ws-pipe.js';
import { EIO_ERR } from './eio-errors.js';
import { PING_TOPIC, type Engine } from './engine.js';
import type { HandshakeRefusal, LinkEndpoint } from './link.js';
import { F_CLOSED, F_EDGE, F_PROBE, F_WS, type Handshake, type Session, type TransportSocket, type WsData } from './session.js';

/** Text frames to strings without a Buffer view per message (invalid UTF-8 becomes U+FFFD, as before). */
const utf8 = new TextDecoder();

export class WebsocketTransport<C> {
  constructor(private readonly e: Engine<C>) {}

  mount(app: TemplatedApp, path: string): void {
    const common = {
      maxPayloadLength: this.e.opts.maxPayload,
      maxBackpressure: this.e.opts.sendBufferBytes,
      closeOnBackpressureLimit: 1, // the default silently skips a slow subscriber: a lost message
      idleTimeout: 0,
      sendPingsAutomatically: false,
      upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => this.onUpgrade(res, req, context),
    };
    const fwd = this.e.opts.forward?.sockets;
    if (!fwd) {
      app.ws<WsData<C>>(path, {
        ...common,
        open: (ws) => this.onOpen(ws),
        message: (ws, msg, isBinary) => this.onMessage(ws, msg, isBinary),
        drain: (ws) => ws.getUserData().s.drained(),
        close: (ws, code) => this.onClose(ws, code),
      });
      return;
    }
    // One route for both kinds of websocket: this node's sessions (`{ s }`) and those piped to the
    // node that owns their session (`{ pipe }`, cluster/ws-pipe.ts), told apart by their user data.
    type Local = WebSocket<WsData<C>>;
    type Piped = WebSocket<PipeSocketData>;
    const piped = (ws: WebSocket<WsData<C> | PipeSocketData>): ws is Piped => 'pipe' in ws.getUserData();
    app.ws<WsData<C> | PipeSocketData>(path, {
      ...common,
      open: (ws) => (piped(ws) ? fwd.open(ws) : this.onOpen(ws as Local)),
      message: (ws, msg, isBinary) => (piped(ws) ? fwd.message(ws, msg, isBinary) : this.onMessage(ws as Local, msg, isBinary)),
      drain: (ws) => (piped(ws) ? fwd.drain(ws) : (ws as Local).getUserData().s.drained()),
      close: (ws, code) => (piped(ws) ? fwd.close(ws, code) : this.onClose(ws as Local, code)),
    });
  }

  private onUpgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    const e = this.e;
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const hs = e.readHandshake(res, req);
    const q = { query: req.getQuery() ?? '', eio: req.getQuery('EIO'), transport: req.getQuery('transport'), sid: req.getQuery('sid') };
    const refused = this.checkQuery(q, hs);
    if (refused) return e.writeRefusal(res, refused, hs);
    // A session another node owns: piped there (a plain L4 load balancer sent the probe here).
    if (q.sid && e.opts.forward?.upgrade(res, req, context)) return;
    const started = this.start(q.sid, hs);
    if ('refusal' in started) return e.writeRefusal(res, started.refusal, hs);
    res.upgrade<WsData<C>>(started.data, key, protocol, extensions, context);
  }

  /** The query checks of a websocket handshake (credentials, EIO version, transport). */
  private checkQuery(
    q: { query: string; eio: string | undefined; transport: string | undefined },
    hs: Handshake,
  ): HandshakeRefusal | undefined {
    const e = this.e;
    const refused = e.queryRefusal(q.query, hs);
    if (refused) return refused;
    if (q.eio !== '4') return e.eioRefusal(400, EIO_ERR.unsupported, hs);
    if (q.transport !== 'websocket') return e.eioRefusal(400, EIO_ERR.transportUnknown, hs);
    return undefined;
  }

  /** A new websocket session, or the upgrade probe of polling session `sid`: its socket's user data. */
  private start(sid: string | undefined, hs: Handshake): { data: WsData<C> } | { refusal: HandshakeRefusal } {
    const e = this.e;
    if (sid) {
      const s = e.sessions.get(sid);
      if (!s || s.flags & (F_WS | F_PROBE | F_CLOSED) || !s.poll) return { refusal: e.eioRefusal(400, EIO_ERR.unknownSid, hs) };
      s.flags |= F_PROBE;
      return { data: { s } };
    }
    const refused = e.admission(hs);
    if (refused) return { refusal: refused };
    const session = e.addSession(hs);
    session.flags |= F_WS;
    return { data: { s: session } };
  }

  /** The same transport for the clients of edge links (cluster/link-server.ts). */
  readonly link: LinkEndpoint<WsData<C>> = {
    handshake: (req) => {
      const q = new URLSearchParams(req.query);
      const headers = { ...req.headers };
      const hs: Handshake = { headers, origin: headers.origin || undefined, ip: req.ip, close: false };
      const refused = this.checkQuery({ query: req.query, eio: q.get('EIO') ?? undefined, transport: q.get('transport') ?? undefined }, hs);
      if (refused) return { refusal: refused };
      return this.start(q.get('sid') ?? undefined, hs);
    },
    open: (ws) => this.onOpen(ws),
    message: (ws, data, isBinary) => this.onMessage(ws, data, isBinary),
    close: (ws, code, reason) => this.onClose(ws, code, reason),
    drain: (ws) => ws.getUserData().s.drained(),
  };

  /** The heartbeat of a websocket session: this node's clock, or its gateway's for an edge-link client. */
  private beat(s: Session<C>, ws: TransportSocket<WsData<C>>): void {
    if (ws.edge) s.flags |= F_EDGE;
    else ws.subscribe(PING_TOPIC);
  }

  private onOpen(ws: TransportSocket<WsData<C>>): void {
    const s = ws.getUserData().s;
    if (s.flags & F_CLOSED) {
      ws.end(DISCONNECT.transportClose.code); // the session ended between upgrade and open
      return;
    }
    s.ws = ws;
    if (s.flags & F_PROBE) return; // an upgrade probe: the client sends `2probe` next
    this.e.wsCount++;
    socketConnections.inc({ transport: 'websocket' });
    this.beat(s, ws);
    ws.send(this.e.openPacket(s.id, []));
  }

  /** A message from the client: an ArrayBuffer from uWS (detached after the call), or a Buffer from a link. */
  private onMessage(ws: TransportSocket<WsData<C>>, msg: ArrayBuffer | Buffer, isBinary: boolean): void {
    const s = ws.getUserData().s;
    if (s.flags & F_CLOSED || s.ws !== ws) return;
    if (isBinary) {
      this.e.sio.onMessageData(s, Buffer.from(new Uint8Array(msg)));
      return;
    }
    const text = utf8.decode(msg);
    if (s.flags & F_PROBE) {
      if (text === '2probe') {
        ws.send('3probe');
        // Complete the pending poll now so the client's pause() does not wait for a ping.
        this.e.polling.answer(s, true);
        return;
      }
      if (text === '5') return this.completeUpgrade(s, ws);
      if (text === '3') {
        s.pong = this.e.round;
        return;
      }
      this.e.closeSession(s, DISCONNECT.parseError);
      return;
    }
    // A `message` packet (nearly every frame): straight to Socket.IO, no packet object.
    if (text.length > 1 && text.charCodeAt(0) === 52 /* 4 */) {
      this.e.sio.onMessageData(s, text.slice(1));
      return;
    }
    this.e.onEnginePacket(s, decodePacket(text, 'nodebuffer'));
  }

  /** `5` on the probe: from here the websocket is the transport. Same tick: flush, then subscribe. */
  private completeUpgrade(s: Session<C>, ws: TransportSocket<WsData<C>>): void {
    const e = this.e;
    const poll = s.poll!;
    s.flags = (s.flags & ~F_PROBE) | F_WS;
    if (poll.res) e.polling.respond(s, poll, ['6']);
    ws.cork(() => {
      for (const f of poll.buf) ws.send(f, typeof f !== 'string');
      e.rooms.moveToWebsocket(s, poll, ws);
      this.beat(s, ws);
    });
    s.poll = null;
    e.polling.release(s);
    socketConnections.inc({ transport: 'websocket' });
    e.wsCount++;
    s.drained();
  }

  private onClose(ws: TransportSocket<WsData<C>>, code: number, reason?: string): void {
    const s = ws.getUserData().s;
    if (s.ws !== ws) return;
    s.ws = null;
    if (s.flags & F_PROBE) {
      // A failed upgrade: the session keeps polling.
      s.flags &= ~F_PROBE;
      return;
    }
    if (s.flags & F_CLOSED) return;
    // An edge-link client its gateway closed for not answering pings: as this node's sweep would.
    if (s.flags & F_EDGE && code === DISCONNECT.pingTimeout.code && reason === DISCONNECT.pingTimeout.reason) {
      this.e.finish(s, DISCONNECT.pingTimeout.reason);
      return;
    }
    // 1006: the connection dropped, or uWS cut it off (backpressure over the limit, oversize frame).
    this.e.finish(s, code === 1006 || code === 1009 ? 'transport error' : 'transport close');
  }
}
