// The Engine.IO heartbeat of the clients a gateway holds for ws nodes over edge links. The gateway
// owns their sockets, so it owns their heartbeat too, as a ws node does for its direct websockets
// (protocol/engine.ts): one clock pings every such client with one native uWS publish of `2`
// every pingInterval, a client's `3` is read here (it never goes to the node), and pingTimeout
// after each ping the clients that did not answer it are closed exactly as a ws node closes them
// (1000 "ping timeout"); the close record tells the node, whose session ends with "ping timeout".
//
// A websocket session is pinged from its open; the upgrade probe of a polling session only from
// the client's `5` (until then the node pings it over polling, and a pong that comes back on the
// probe goes to the node), and it gets one ping at once then: the node's last polling ping may be
// up to a whole interval older than the gateway's next.
import { DISCONNECT } from '../../errors.js';
import { promClient, registry } from '../../observability/metrics.js';
import type { EdgeClient, EdgeSocketData } from '../../cluster/link-client.js';
import type { TemplatedApp, WebSocket as UwsSocket } from '../../uws.js';

/** The gateway's topic every pinged client socket subscribes to (link topics carry a `tag|` prefix). */
export const GATEWAY_PING_TOPIC = 'eio:ping';

const pingTimeouts = new promClient.Counter({
  name: 'chatd_gateway_ping_timeouts_total',
  help: 'Client websockets the gateway closed for not answering its Engine.IO pings within pingTimeout.',
  registers: [registry],
});

export interface GatewayHeartbeatOptions {
  readonly app: TemplatedApp;
  /** Every client socket the gateway holds (swept by their EdgeClient state). */
  readonly sockets: ReadonlySet<UwsSocket<EdgeSocketData>>;
  /** config.socketio: the values the ws nodes advertise in their open packets. */
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
}

export class GatewayHeartbeat {
  /** Ping rounds so far; a client's `pong` is the round it last answered. */
  round = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly sweeps = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: GatewayHeartbeatOptions) {
    this.timer = setInterval(() => this.ping(), Math.max(1, opts.pingIntervalMs));
    this.timer.unref();
  }

  /** From now on the gateway pings `c` (born as if it had answered the current round). */
  start(c: EdgeClient, ws: UwsSocket<EdgeSocketData>, pingNow: boolean): void {
    c.beat = true;
    c.pong = c.born = this.round;
    ws.subscribe(GATEWAY_PING_TOPIC);
    if (pingNow) ws.send('2', false);
  }

  /** A `3` from a pinged client. */
  pong(c: EdgeClient): void {
    c.pong = this.round;
  }

  private ping(): void {
    const round = ++this.round;
    this.opts.app.publish(GATEWAY_PING_TOPIC, '2', false);
    const sweep = setTimeout(() => {
      this.sweeps.delete(sweep);
      this.sweep(round);
    }, this.opts.pingTimeoutMs);
    sweep.unref();
    this.sweeps.add(sweep);
  }

  private sweep(round: number): void {
    const { code, reason } = DISCONNECT.pingTimeout;
    for (const ws of [...this.opts.sockets]) {
      const c = ws.getUserData().c;
      if (!c.beat || c.closed || c.born >= round || c.pong >= round) continue;
      pingTimeouts.inc();
      c.cut = reason;
      ws.end(code, reason);
    }
  }

  close(): void {
    clearInterval(this.timer);
    for (const t of this.sweeps) clearTimeout(t);
    this.sweeps.clear();
  }
}
