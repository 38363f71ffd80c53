// Rooms: uWS topics for websockets (native pub/sub, one publish reaches every subscriber; edge-link
// clients are subscribed at their gateway, which gets one frame per link), and the
// topic → polling sessions map that feeds the same frames to long-polling buffers. Room frames are
// queued and written from the engine's deferred flush, never inside a message handler: past 32
// queued publishes per subscriber uWS stops batching them (shared/notes/socketio-on-uws.md).
import type { TemplatedApp } from '../uws.js';
import type { Engine } from './engine.js';
import { F_CLOSED, F_WS, type Frame, type PollState, type Session, type TransportSocket, type WsData } from './session.js';
import { encodeEvent } from './socketio.js';

/** Queued room frames: `topics[i]` gets `frames[i]`, for i < n. */
interface RoomQueue {
  readonly topics: string[];
  readonly frames: (string | Frame[])[];
  n: number;
}

export class Rooms<C> {
  /** room → polling sessions in it (websockets are subscribed natively). */
  private readonly polling = new Map<string, Set<Session<C>>>();
  /**
   * Room frames waiting for the deferred flush, in publish order: topic i gets frames i (one text
   * frame, or a text frame and its binary attachments), for i < n. Two pairs of arrays,
   * swapped at each flush and reused with their capacity: publishing allocates no queue entry.
   */
  private q: RoomQueue = { topics: [], frames: [], n: 0 };
  private spare: RoomQueue | undefined = { topics: [], frames: [], n: 0 };

  constructor(
    private readonly app: TemplatedApp,
    private readonly e: Engine<C>,
  ) {}

  /** Encodes an EVENT once for a room and queues it for the flush; `offset` goes last (recovery). */
  publish(topic: string, event: string, args: readonly unknown[], offset?: string): void {
    this.publishEncoded(topic, encodeEvent(event, args, offset));
  }

  /** Queues frames already encoded (encodeEvent) for a room: one encoding for several rooms. */
  publishEncoded(topic: string, frames: string | Frame[]): void {
    const q = this.q;
    q.topics[q.n] = topic;
    q.frames[q.n] = frames;
    q.n++;
  }

  /** Sessions in a room on this node (websockets and polling). */
  size(topic: string): number {
    return this.app.numSubscribers(topic) + (this.e.opts.fanout?.subscribers(topic) ?? 0) + (this.polling.get(topic)?.size ?? 0);
  }

  join(s: Session<C>, topic: string): void {
    if (s.flags & F_CLOSED) return;
    if (s.ws && s.flags & F_WS) {
      s.ws.subscribe(topic);
      return;
    }
    const poll = s.poll;
    if (!poll || poll.rooms.has(topic)) return;
    poll.rooms.add(topic);
    let set = this.polling.get(topic);
    if (!set) this.polling.set(topic, (set = new Set()));
    set.add(s);
  }

  leave(s: Session<C>, topic: string): void {
    if (s.flags & F_CLOSED) return;
    if (s.ws && s.flags & F_WS) {
      s.ws.unsubscribe(topic);
      return;
    }
    if (!s.poll?.rooms.delete(topic)) return;
    this.removePolling(s, topic);
  }

  /** At upgrade (inside the websocket's cork, right after its buffer): websocket subscriptions replace the polling ones. */
  moveToWebsocket(s: Session<C>, poll: PollState, ws: TransportSocket<WsData<C>>): void {
    for (const topic of poll.rooms) {
      ws.subscribe(topic);
      this.polling.get(topic)?.delete(s);
    }
    for (const topic of poll.rooms) if (this.polling.get(topic)?.size === 0) this.polling.delete(topic);
  }

  /** A polling session ended: out of every room. */
  dropPolling(s: Session<C>, poll: PollState): void {
    for (const topic of poll.rooms) this.removePolling(s, topic);
    poll.rooms.clear();
  }

  /** The flush's first half: queued room frames to uWS topics and to polling sessions' buffers. */
  flushQueue(): void {
    const q = this.q;
    if (q.n === 0) return;
    // Publishes queued while this flush runs go to the other queue (and the next flush); a flush
    // nested in this one (flushNow from a hook) takes a fresh one.
    this.q = this.spare ?? { topics: [], frames: [], n: 0 };
    this.spare = undefined;
    const e = this.e;
    const { topics, frames, n } = q;
    for (let i = 0; i < n; i++) {
      const topic = topics[i]!;
      const f = frames[i]!;
      // Drop the references now (the slots are reused, the arrays keep their capacity).
      topics[i] = '';
      frames[i] = '';
      if (typeof f === 'string') e.publishFrame(topic, f);
      else for (const part of f) e.publishFrame(topic, part);
      const polling = this.polling.get(topic);
      if (polling) {
        const list = typeof f === 'string' ? [f] : f;
        for (const s of polling) this.e.sendFrames(s, list);
      }
    }
    q.n = 0;
    this.spare = q;
  }

  private removePolling(s: Session<C>, topic: string): void {
    const set = this.polling.get(topic);
    set?.delete(s);
    if (set?.size === 0) this.polling.delete(topic);
  }
}
