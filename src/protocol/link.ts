// What the protocol layer offers an edge link (cluster/link-server.ts): a gateway of the separate
// tier holds each client's websocket and carries its frames over one multiplexed link per ws node;
// here each such client is an Engine.IO session like any other, whose websocket is a
// TransportSocket that writes to the link. The handshake, CONNECT, acks, rate limits, recovery and
// closing are the same code as for a direct websocket (websocket.ts). The heartbeat is not: the
// gateway owns the client's socket and pings it, consumes its pongs and closes it when it goes
// silent, telling the node with the close's reason (F_EDGE sessions are not pinged nor swept here).
import type { Frame, TransportSocket } from './session.js';

/** A handshake refused: the HTTP answer the client gets (written here, or by the gateway for a link client). */
export interface HandshakeRefusal {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** JSON. */
  readonly body: string;
}

/** A websocket handshake a gateway passes on: the client's query, end-to-end headers and IP. */
export interface LinkHandshake {
  /** The raw query string (`EIO=4&transport=websocket[&sid=…]`). */
  readonly query: string;
  /** Lower-case names: origin, authorization, user-agent… */
  readonly headers: Readonly<Record<string, string>>;
  /** The client IP as the gateway resolved it (the link comes from a trusted peer). */
  readonly ip: string;
}

/** The websocket transport's handlers for edge-link clients (user data `D`). */
export interface LinkEndpoint<D> {
  /** A new session (no sid) or the upgrade probe of a polling one: the new socket's user data, or the refusal. */
  handshake(req: LinkHandshake): { data: D } | { refusal: HandshakeRefusal };
  open(ws: TransportSocket<D>): void;
  message(ws: TransportSocket<D>, data: Buffer, isBinary: boolean): void;
  /**
   * The client's socket closed at the gateway (or the link dropped: 1006). `reason` is the
   * gateway's own when it closed the client (`ping timeout`), empty when the client or the network did.
   */
  close(ws: TransportSocket<D>, code: number, reason?: string): void;
  /** The client's send buffer at the gateway went down: wake replays waiting for it. */
  drain(ws: TransportSocket<D>): void;
}

/** Room frames to edge links: one frame per link whose gateway has subscribers to the topic. */
export interface Fanout {
  publish(topic: string, frame: Frame, isBinary: boolean): void;
  /** Edge-link clients subscribed to the topic. */
  subscribers(topic: string): number;
}
