// Rooms: uWS topics for websockets (native pub/sub, one publish reaches every subscriber), and the
// topic → polling sessions map that feeds the same frames to long-polling buffers. Room frames are
// queued and written from the engine's deferred flush, never inside a message handler: past 32
// queued publishes per subscriber uWS stops batching them (shared/notes/socketio-on-uws.md).
import { PacketType } from 'socket.io-parser';
import type { TemplatedApp, WebSocket } from '../uws.js';
import type { Engine } from './engine.js';
import { F_CLOSED, F_WS, type Frame, type PollState, type Session, type WsData } from './session.js';
import { assertEventName, encodeSio } from './socketio.js';

export class Rooms<C> {
  /** room → polling sessions in it (websockets are subscribed natively). */
  private readonly polling = new Map<string, Set<Session<C>>>();
  /** Room frames waiting for the deferred flush, in publish order. */
  private queue: { topic: string; frames: Frame[] }[] = [];

  constructor(
    private readonly app: TemplatedApp,
    private readonly e: Engine<C>,
  ) {}

  /** Encodes an EVENT once for a room and queues it for the flush; `offset` goes last (recovery). */
  publish(topic: string, event: string, args: readonly unknown[], offset?: string): void {
    assertEventName(event);
    const data = offset === undefined ? [event, ...args] : [event, ...args, offset];
    this.queue.push({ topic, frames: encodeSio({ type: PacketType.EVENT, nsp: '/', data }) });
  }

  /** Sessions in a room on this node (websockets and polling). */
  size(topic: string): number {
    return this.app.numSubscribers(topic) + (this.polling.get(topic)?.size ?? 0);
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
  moveToWebsocket(s: Session<C>, poll: PollState, ws: WebSocket<WsData<C>>): void {
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
    const queue = this.queue;
    this.queue = [];
    const app = this.app;
    for (const { topic, frames } of queue) {
      for (const f of frames) app.publish(topic, f, typeof f !== 'string');
      const polling = this.polling.get(topic);
      if (polling) for (const s of polling) this.e.sendFrames(s, frames);
    }
  }

  private removePolling(s: Session<C>, topic: string): void {
    const set = this.polling.get(topic);
    set?.delete(s);
    if (set?.size === 0) this.polling.delete(topic);
  }
}
