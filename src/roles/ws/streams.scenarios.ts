// The StreamHub's behaviour, written once and run against every environment: small in-test fakes
// (streams.test.ts), and the real store adapters (memory, Redis) with a real database (PGlite,
// PostgreSQL) (streams.int.test.ts). A `TapBus` sits between the real bus and the hub to lose,
// hold (reorder) or let through events, the way a lost subscription or a late publish would.
import { pino } from 'pino';
import { expect, it } from 'vitest';
import type { ChatMessage } from '../../chat/message.js';
import { emptyMeta } from '../../chat/message.js';
import type { MessageStore } from '../../db/ports.js';
import type { Bus, EventLog, TenantEvent, Unsubscribe } from '../../store/ports.js';
import { DeliveryChecker } from '../../../test/helpers/delivery-checker.js';
import {
  StreamHub,
  agentStream,
  conversationStream,
  offsetToken,
  parseOffsetToken,
  streamId,
  type AttachResult,
  type BrokenReason,
  type PassThroughEvent,
  type StreamEvent,
  type StreamHubOptions,
  type StreamKey,
} from './streams.js';
import { eventually } from '../../../test/helpers/eventually.js';

/** What a scenario needs: the real (or fake) ports and a way to send like the message path does. */
export interface StreamEnv {
  readonly bus: Bus;
  readonly events: EventLog;
  readonly messages: MessageStore;
  /** The agent history bound the env was created with (entries kept per tenant, approximately). */
  readonly agentHistorySize: number;
  close(): Promise<void>;
}

export type EnvFactory = () => Promise<StreamEnv>;

let counter = 0;
/** Unique ids per scenario so environments can be shared. */
export const uid = (label: string) => `${label}-${process.pid}-${Date.now().toString(36)}-${(counter++).toString(36)}`;

/** Stores a message (one transaction, next seq) like the domain function does. */
export async function store(env: StreamEnv, tenantId: string, sessionId: string, text: string): Promise<ChatMessage> {
  const r = await env.messages.accept({
    tenantId,
    sessionId,
    sender: { type: 'visitor', id: sessionId, verified: false },
    text,
    meta: emptyMeta(),
    conversation: { fingerprint: 'fp-test' },
  });
  if (r.kind !== 'created') throw new Error(`accept returned ${r.kind}`);
  return r.message;
}

/** Stores and publishes (the outbox relay's step 4). */
export async function send(env: StreamEnv, tenantId: string, sessionId: string, text: string): Promise<ChatMessage> {
  const m = await store(env, tenantId, sessionId, text);
  await env.events.publishMessage(m);
  return m;
}

type Verdict = 'pass' | 'drop' | 'hold';

/** A real bus with a tap: drop, hold or pass events on their way to the hub. */
export class TapBus implements Pick<Bus, 'subscribe' | 'onResubscribed'> {
  verdict: (event: TenantEvent) => Verdict = () => 'pass';
  readonly held: { event: TenantEvent; handler: (e: TenantEvent) => void }[] = [];
  subscribes = 0;
  unsubscribes = 0;
  /** Events dropped so far (a test waits for them before it lets traffic through again). */
  dropped = 0;
  /** Events that reached the tap, whatever their verdict. */
  seen = 0;
  private readonly resubscribedHandlers: (() => void)[] = [];

  constructor(private readonly inner: Bus) {}

  async subscribe(tenantId: string, handler: (event: TenantEvent) => void): Promise<Unsubscribe> {
    this.subscribes += 1;
    const unsubscribe = await this.inner.subscribe(tenantId, (event) => {
      this.seen += 1;
      const v = this.verdict(event);
      if (v === 'pass') handler(event);
      else if (v === 'hold') this.held.push({ event, handler });
      else this.dropped += 1;
    });
    return async () => {
      this.unsubscribes += 1;
      await unsubscribe();
    };
  }

  /** Keeps the real bus's resubscription notices from the hub (to let a test choose the moment). */
  muteResubscribed = false;

  onResubscribed(handler: () => void): void {
    this.inner.onResubscribed(() => {
      if (!this.muteResubscribed) handler();
    });
    this.resubscribedHandlers.push(handler);
  }

  /** Tells the hub the subscription was restored (as the real bus does after a reconnect). */
  fireResubscribed(): void {
    for (const h of this.resubscribedHandlers) h();
  }

  /** Lets held events through, last held first (the reordering a late publish causes). */
  releaseHeld(order: 'reverse' | 'fifo' = 'reverse'): void {
    const all = this.held.splice(0);
    if (order === 'reverse') all.reverse();
    for (const { event, handler } of all) handler(event);
  }
}

/** A socket as the protocol layer would drive it: replay from attach, then the topic. */
export interface TestSocket {
  readonly key: StreamKey;
  readonly got: StreamEvent[];
  result: AttachResult | undefined;
}

export interface Harness {
  readonly hub: StreamHub;
  readonly tap: TapBus;
  readonly env: StreamEnv;
  /** Every onStreamEvent call, per stream id. */
  readonly published: Map<string, StreamEvent[]>;
  readonly tenantEvents: { tenantId: string; event: PassThroughEvent }[];
  readonly broken: { id: string; reason: BrokenReason }[];
  /** Source reads may be made to fail. */
  failReads: number;
  connect(key: StreamKey, after?: number | string, limit?: number): Promise<TestSocket>;
  disconnect(socket: TestSocket): void;
  close(): Promise<void>;
}

export function harness(env: StreamEnv, opts: Partial<StreamHubOptions> = {}): Harness {
  const tap = new TapBus(env.bus);
  const published = new Map<string, StreamEvent[]>();
  const topics = new Map<string, Set<TestSocket>>();
  const tenantEvents: Harness['tenantEvents'] = [];
  const broken: Harness['broken'] = [];
  const h = {} as Harness & { failReads: number };
  h.failReads = 0;
  const failing =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    (...a: A): Promise<R> => {
      if (h.failReads > 0) {
        h.failReads -= 1;
        return Promise.reject(new Error('injected read failure'));
      }
      return fn(...a);
    };
  const messages: StreamHubOptions['messages'] = {
    since: failing((t: string, s: string, a: number, l: number) => env.messages.since(t, s, a, l)),
    getConversation: (t, s) => env.messages.getConversation(t, s),
  };
  const events: StreamHubOptions['events'] = {
    agentRange: failing((t: string, a: number, l: number) => env.events.agentRange(t, a, l)),
    agentHead: (t) => env.events.agentHead(t),
  };
  const hub = new StreamHub({
    bus: tap,
    events,
    messages,
    logger: pino({ level: process.env.HUB_LOG ?? 'silent' }),
    retryMs: { initial: 5, max: 50 },
    onStreamEvent(_key, id, event) {
      let list = published.get(id);
      if (!list) published.set(id, (list = []));
      list.push(event);
      for (const s of topics.get(id) ?? []) s.got.push(event);
    },
    onTenantEvent(tenantId, event) {
      tenantEvents.push({ tenantId, event });
    },
    onStreamBroken(_key, id, reason) {
      broken.push({ id, reason });
    },
    ...opts,
  });
  Object.assign(h, {
    hub,
    tap,
    env,
    published,
    tenantEvents,
    broken,
    async connect(key: StreamKey, after?: number | string, limit?: number) {
      const socket: TestSocket = { key, got: [], result: undefined };
      await hub.attach(
        key,
        after,
        (r) => {
          socket.result = r;
          socket.got.push(...r.events);
          const id = streamId(key);
          let set = topics.get(id);
          if (!set) topics.set(id, (set = new Set()));
          set.add(socket);
        },
        limit === undefined ? {} : { limit },
      );
      return socket;
    },
    disconnect(socket: TestSocket) {
      topics.get(streamId(socket.key))?.delete(socket);
      hub.release(socket.key);
    },
    close: () => hub.close(),
  });
  return h;
}

const offsets = (events: readonly StreamEvent[]) => events.map((e) => e.offset);
const ids = (events: readonly StreamEvent[]) =>
  events.map((e) =>
    e.event === 'meta_message_created'
      ? e.payload.message.id
      : e.event === 'conversation_updated'
        ? `conversation:${e.payload.conversation.sessionId}:${e.payload.version}`
        : `presence:${e.payload.userId}:${e.payload.status}`,
  );
const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** Registers every scenario (inside a describe of the caller's choosing). */
export function streamScenarios(makeEnv: () => StreamEnv) {
  const env = () => makeEnv();
  let open: Harness[] = [];
  const make = (opts: Partial<StreamHubOptions> = {}) => {
    const h = harness(env(), opts);
    open.push(h);
    return h;
  };
  const cleanup = async () => {
    await Promise.all(open.map((h) => h.close()));
    open = [];
  };

  it('delivers each stream in offset order, once, and a conversation only its own messages', async () => {
    const h = make();
    const t = uid('t');
    const [s1, s2] = [uid('s'), uid('s')];
    const conv = await h.connect(conversationStream(t, s1));
    const agents = await h.connect(agentStream(t));
    const sent: ChatMessage[] = [];
    for (let i = 0; i < 5; i++) sent.push(await send(h.env, t, s1, `one ${i}`));
    for (let i = 0; i < 3; i++) sent.push(await send(h.env, t, s2, `two ${i}`));
    await eventually(() => conv.got.length >= 5 && agents.got.length >= 8, 'both streams');
    expect(offsets(conv.got)).toEqual([1, 2, 3, 4, 5]);
    expect(ids(conv.got)).toEqual(sent.slice(0, 5).map((m) => m.id));
    expect(ids(agents.got)).toEqual(sent.map((m) => m.id));
    const a = offsets(agents.got);
    expect(a).toEqual(range(a[0]!, a[0]! + 7));
    expect(conv.result).toEqual({ events: [], complete: true, offset: 0 });
    await cleanup();
  });

  it('starts a stream at its current head, not at 0', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    for (let i = 0; i < 3; i++) await send(h.env, t, s, `before ${i}`);
    const conv = await h.connect(conversationStream(t, s));
    const agents = await h.connect(agentStream(t));
    const head = await h.env.events.agentHead(t);
    expect(conv.result?.offset).toBe(3);
    expect(agents.result?.offset).toBe(head);
    const m = await send(h.env, t, s, 'after');
    await eventually(() => conv.got.length >= 1 && agents.got.length >= 1, 'the new message');
    expect(offsets(conv.got)).toEqual([4]);
    expect(ids(agents.got)).toEqual([m.id]);
    expect(offsets(h.published.get(streamId(conversationStream(t, s)))!)).toEqual([4]);
    expect(h.hub.head(conversationStream(t, s))).toBe(4);
    await cleanup();
  });

  it('fills a lost publish from the source before later events go out', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const conv = await h.connect(conversationStream(t, s));
    const agents = await h.connect(agentStream(t));
    h.tap.verdict = (e) => (e.type === 'message' && e.message.seq === 2 ? 'drop' : 'pass');
    const sent = [];
    for (let i = 0; i < 4; i++) sent.push(await send(h.env, t, s, `m ${i}`));
    await eventually(() => conv.got.length >= 4 && agents.got.length >= 4, 'all four');
    expect(offsets(conv.got)).toEqual([1, 2, 3, 4]);
    expect(ids(conv.got)).toEqual(sent.map((m) => m.id));
    expect(ids(agents.got)).toEqual(sent.map((m) => m.id));
    await cleanup();
  });

  it('reorders late publishes and drops the late duplicates', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const conv = await h.connect(conversationStream(t, s));
    const agents = await h.connect(agentStream(t));
    h.tap.verdict = (e) => (e.type === 'message' && (e.message.seq === 2 || e.message.seq === 3) ? 'hold' : 'pass');
    const sent = [];
    for (let i = 0; i < 4; i++) sent.push(await send(h.env, t, s, `m ${i}`));
    await eventually(() => conv.got.length >= 4 && agents.got.length >= 4, 'all four');
    await eventually(() => h.tap.held.length === 2, 'the held publishes');
    h.tap.verdict = () => 'pass';
    h.tap.releaseHeld('reverse');
    const m5 = await send(h.env, t, s, 'm 5');
    await eventually(() => conv.got.length >= 5 && agents.got.length >= 5, 'the fifth');
    expect(offsets(conv.got)).toEqual([1, 2, 3, 4, 5]);
    expect(ids(conv.got)).toEqual([...sent, m5].map((m) => m.id));
    expect(ids(agents.got)).toEqual([...sent, m5].map((m) => m.id));
    // Once per node per offset: nothing was published twice.
    expect(offsets(h.published.get(streamId(conversationStream(t, s)))!)).toEqual([1, 2, 3, 4, 5]);
    await cleanup();
  });

  it('re-reads every stream from its last offset after the bus resubscribed', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const conv = await h.connect(conversationStream(t, s));
    const agents = await h.connect(agentStream(t));
    await send(h.env, t, s, 'before');
    await eventually(() => conv.got.length === 1 && agents.got.length === 1, 'the first');
    h.tap.verdict = () => 'drop'; // the subscription is lost: nothing arrives
    const lost = [];
    for (let i = 0; i < 3; i++) lost.push(await send(h.env, t, s, `lost ${i}`));
    await eventually(() => h.tap.dropped === 3, 'the lost publishes');
    expect(conv.got).toHaveLength(1);
    h.tap.verdict = () => 'pass';
    h.tap.fireResubscribed();
    await eventually(() => conv.got.length === 4 && agents.got.length === 4, 'the re-read');
    expect(offsets(conv.got)).toEqual([1, 2, 3, 4]);
    expect(ids(conv.got).slice(1)).toEqual(lost.map((m) => m.id));
    expect(ids(agents.got).slice(1)).toEqual(lost.map((m) => m.id));
    await cleanup();
  });

  it('recovers a conversation from the database however far back, up to the limit', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const sent = [];
    for (let i = 0; i < 30; i++) sent.push(await store(h.env, t, s, `m ${i}`));
    const all = await h.connect(conversationStream(t, s), 0, 100);
    expect(all.result?.complete).toBe(true);
    expect(offsets(all.got)).toEqual(range(1, 30));
    expect(ids(all.got)).toEqual(sent.map((m) => m.id));
    const tail = await h.connect(conversationStream(t, s), 25, 100);
    expect(offsets(tail.got)).toEqual(range(26, 30));
    const tooMany = await h.connect(conversationStream(t, s), 0, 10);
    expect(tooMany.result).toEqual({ events: [], complete: false, offset: 30 });
    const page = await h.hub.recover(conversationStream(t, s), 10, 5);
    expect(page.complete).toBe(true);
    expect(offsets(page.events)).toEqual([11, 12, 13, 14, 15]);
    await cleanup();
  });

  it('hands a recovering socket over to live traffic with nothing lost or repeated', async () => {
    // Tiny ring and pages force the hand-over through several source reads while messages flow.
    const h = make({ ringSize: { conversation: 2, agents: 2 }, pageSize: 3 });
    const t = uid('t');
    const s = uid('s');
    const first = await h.connect(conversationStream(t, s));
    const agentsFirst = await h.connect(agentStream(t));
    const total = 40;
    const sender = (async () => {
      for (let i = 0; i < total; i++) await send(h.env, t, s, `m ${i}`);
    })();
    const late: TestSocket[] = [];
    const agentStart = agentsFirst.result?.offset ?? 0;
    for (let k = 0; k < 8; k++) {
      await eventually(() => first.got.length >= k * 4, `traffic ${k}`);
      const after = Math.max(0, first.got.length - 1 - ((k * 7) % 9));
      late.push(await h.connect(conversationStream(t, s), after));
      late.push(await h.connect(agentStream(t), agentStart + Math.max(0, agentsFirst.got.length - (k % 5))));
    }
    await sender;
    await eventually(() => first.got.length === total && agentsFirst.got.length === total, 'every message on the first sockets');
    expect(offsets(first.got)).toEqual(range(1, total));
    for (const sock of late) {
      await eventually(
        () => (sock.got.at(-1)?.offset ?? sock.result!.offset) === (sock.key.kind === 'agents' ? agentStart + total : total),
        'the late socket',
      );
      const o = offsets(sock.got);
      const start = o.length > 0 ? o[0]! : sock.result!.offset + 1;
      expect(sock.result?.complete).toBe(true);
      expect(o, `socket on ${sock.key.kind}`).toEqual(range(start, sock.key.kind === 'agents' ? agentStart + total : total));
    }
    await cleanup();
  });

  it('catches up from the source when a client is ahead of this node', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const watcher = await h.connect(conversationStream(t, s));
    h.tap.verdict = () => 'hold'; // this node lags: its bus deliveries are late
    for (let i = 0; i < 3; i++) await send(h.env, t, s, `m ${i}`);
    await eventually(() => h.tap.held.length === 3, 'the late deliveries');
    // The client saw offset 3 on another node; this node delivered nothing yet.
    const ahead = await h.connect(conversationStream(t, s), 3);
    expect(ahead.result).toEqual({ events: [], complete: true, offset: 3 });
    expect(offsets(watcher.got)).toEqual([1, 2, 3]);
    h.tap.verdict = () => 'pass';
    h.tap.releaseHeld('fifo');
    await send(h.env, t, s, 'm 3');
    await eventually(() => ahead.got.length === 1, 'the next message');
    expect(offsets(ahead.got)).toEqual([4]);
    // An offset the stream never reached cannot be recovered.
    const liar = await h.connect(conversationStream(t, s), 99);
    expect(liar.result).toEqual({ events: [], complete: false, offset: 4 });
    await cleanup();
  });

  it('retries a failed source read and still delivers in order', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const conv = await h.connect(conversationStream(t, s));
    h.tap.verdict = (e) => (e.type === 'message' && e.message.seq === 1 ? 'drop' : 'pass');
    h.failReads = 3;
    for (let i = 0; i < 3; i++) await send(h.env, t, s, `m ${i}`);
    await eventually(() => conv.got.length === 3, 'three after retries');
    expect(offsets(conv.got)).toEqual([1, 2, 3]);
    expect(h.failReads).toBe(0);
    await cleanup();
  });

  it('passes typing, read, broadcast and revoke through, and counts tenant subscriptions', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const a = await h.connect(conversationStream(t, s));
    const b = await h.connect(agentStream(t));
    expect(h.tap.subscribes).toBe(1);
    await h.env.bus.publish(t, { type: 'typing', sessionId: s, sender: { type: 'visitor', id: s }, isTyping: true });
    await h.env.bus.publish(t, { type: 'broadcast', event: 'office_hours', data: { open: true } });
    await eventually(() => h.tenantEvents.length === 2, 'the pass-through events');
    expect(h.tenantEvents.map((e) => e.event.type)).toEqual(['typing', 'broadcast']);
    h.disconnect(a);
    expect(h.tap.unsubscribes).toBe(0);
    h.disconnect(b);
    await eventually(() => h.tap.unsubscribes === 1, 'the unsubscribe');
    expect(h.hub.stats()).toEqual({ tenants: 0, streams: 0, pending: 0 });
    await send(h.env, t, s, 'nobody listens');
    const again = await h.connect(conversationStream(t, s));
    expect(h.tap.subscribes).toBe(2);
    expect(again.result?.offset).toBe(1);
    await cleanup();
  });

  it('reports agent offsets past the history bound as not recoverable and keeps delivering', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const agents = await h.connect(agentStream(t));
    h.tap.verdict = () => 'drop';
    const n = h.env.agentHistorySize * 3;
    for (let i = 0; i < n; i++) {
      await h.env.events.publishPresence(t, { userId: `u${i}`, sessionId: s, status: 'online', at: new Date().toISOString() });
    }
    await eventually(() => h.tap.dropped === n, 'the lost presence events');
    h.tap.verdict = () => 'pass';
    const m = await send(h.env, t, s, 'after the flood');
    await eventually(() => agents.got.at(-1)?.offset === n + 1, 'the newest agent event');
    expect(h.broken.some((b) => b.reason === 'history_trimmed' && b.id === streamId(agentStream(t)))).toBe(true);
    expect(ids(agents.got).at(-1)).toBe(m.id);
    const o = offsets(agents.got);
    expect([...o].sort((x, y) => x - y)).toEqual(o);
    const old = await h.connect(agentStream(t), 0);
    expect(old.result).toEqual({ events: [], complete: false, offset: n + 1 });
    const recent = await h.connect(agentStream(t), n - 5);
    expect(recent.result?.complete).toBe(true);
    expect(offsets(recent.got)).toEqual(range(n - 4, n + 1));
    await cleanup();
  });

  it('recovers from an offset token only when it names the event at that offset', async () => {
    const h = make();
    const t = uid('t');
    const s = uid('s');
    const agents = await h.connect(agentStream(t));
    for (let i = 0; i < 3; i++) await send(h.env, t, s, `m ${i}`);
    await eventually(() => agents.got.length === 3, 'three events');
    const second = agents.got[1]!;
    const token = offsetToken(agentStream(t), second);
    expect(parseOffsetToken(token)?.offset).toBe(second.offset);
    expect(offsetToken(conversationStream(t, s), second)).toBe(String(second.offset));
    const ok = await h.connect(agentStream(t), token);
    expect(ok.result?.complete).toBe(true);
    expect(offsets(ok.got)).toEqual([second.offset + 1]);
    // The same offset naming another event (the numbering restarted): not recoverable.
    const other = await h.connect(agentStream(t), `${second.offset}~zzzz`);
    expect(other.result).toEqual({ events: [], complete: false, offset: second.offset + 1 });
    for (const bad of ['', 'abc', '-1', '1~UPPER', '1.5']) {
      const sock = await h.connect(agentStream(t), bad);
      expect(sock.result?.complete, bad).toBe(false);
    }
    expect((await h.hub.recover(agentStream(t), token, 10)).events.map((e) => e.offset)).toEqual([second.offset + 1]);
    expect((await h.hub.recover(agentStream(t), `${second.offset}~zzzz`, 10)).complete).toBe(false);
    await cleanup();
  });

  it('moves sockets between two nodes mid-traffic with nothing lost, repeated or reordered', async () => {
    // Two nodes on the same store; node B's bus is lossy and late. Clients hop A → B → A … and
    // recover with the offset token of the last event they got, as socket.io-client does.
    const nodes = [
      make({ ringSize: { conversation: 2, agents: 4 }, pageSize: 4 }),
      make({ ringSize: { conversation: 2, agents: 4 }, pageSize: 4 }),
    ];
    let flip = 0;
    nodes[1]!.tap.verdict = (e) => (e.type !== 'message' ? 'pass' : ++flip % 6 === 0 ? 'drop' : flip % 4 === 0 ? 'hold' : 'pass');
    const t = uid('t');
    const sessions = [uid('s'), uid('s')];
    const checker = new DeliveryChecker();
    interface Hopper {
      key: StreamKey;
      node: number;
      sock: TestSocket;
      seen: number;
      rec: ReturnType<DeliveryChecker['client']>;
    }
    const hoppers: Hopper[] = [];
    const keys: [StreamKey, string][] = [
      [conversationStream(t, sessions[0]!), 'visitor-0'],
      [conversationStream(t, sessions[1]!), 'visitor-1'],
      [agentStream(t), 'agent-a'],
      [agentStream(t), 'agent-b'],
    ];
    for (const [key, name] of keys) {
      const sock = await nodes[0]!.connect(key);
      const rec = checker.client(
        name,
        key.kind === 'agents' ? { kind: 'agents', tenantId: t } : { kind: 'conversation', tenantId: t, sessionId: key.sessionId },
        { contiguous: true },
      );
      hoppers.push({ key, node: 0, sock, seen: 0, rec });
    }
    const record = () => {
      for (const hp of hoppers) {
        for (const e of hp.sock.got.slice(hp.seen)) {
          if (e.event === 'meta_message_created') hp.rec.received(e.payload.message.id, e.offset);
          else hp.rec.receivedOther(e.offset);
        }
        hp.seen = hp.sock.got.length;
      }
    };
    const hop = async (hp: Hopper) => {
      record();
      const last = hp.sock.got.at(-1);
      const from = nodes[hp.node]!;
      from.disconnect(hp.sock);
      hp.node = 1 - hp.node;
      const token = last ? offsetToken(hp.key, last) : hp.sock.result!.offset;
      hp.sock = await nodes[hp.node]!.connect(hp.key, token);
      hp.seen = 0;
      hp.rec.reconnected(hp.sock.result!.complete);
    };
    for (let i = 0; i < 40; i++) {
      const m = await send(nodes[0]!.env, t, sessions[i % 2]!, `m ${i}`);
      checker.acked(m.id, t, m.sessionId);
      if (i % 5 === 2) await hop(hoppers[((i / 5) % hoppers.length) | 0]!);
      if (i % 9 === 8) nodes[1]!.tap.releaseHeld('reverse');
    }
    nodes[1]!.tap.verdict = () => 'pass';
    nodes[1]!.tap.releaseHeld('reverse');
    nodes[1]!.tap.fireResubscribed(); // the drops model a lost subscription, reported when restored
    const reader = {
      conversation: async (tenantId: string, sessionId: string) => nodes[0]!.env.messages.since(tenantId, sessionId, 0, 1000),
    };
    await eventually(async () => (record(), (await checker.verify(reader)).ok), 'a clean delivery report').catch(() => undefined);
    await checker.assertClean(reader);
    // Every hop recovered (nothing was out of bounds).
    expect(hoppers.every((hp) => hp.rec.segments.length === 1)).toBe(true);
    await cleanup();
  });

  it('satisfies the delivery checker with many sockets and lost and late publishes', async () => {
    const h = make({ ringSize: { conversation: 4, agents: 8 }, pageSize: 5 });
    const t = uid('t');
    const sessions = [uid('s'), uid('s'), uid('s')];
    const checker = new DeliveryChecker();
    let flip = 0;
    h.tap.verdict = (e) => (e.type !== 'message' ? 'pass' : ++flip % 7 === 0 ? 'drop' : flip % 5 === 0 ? 'hold' : 'pass');
    const sockets: { sock: TestSocket; rec: ReturnType<DeliveryChecker['client']> }[] = [];
    for (const s of sessions) {
      const sock = await h.connect(conversationStream(t, s));
      sockets.push({ sock, rec: checker.client(`visitor-${s}`, { kind: 'conversation', tenantId: t, sessionId: s }) });
    }
    const ag = await h.connect(agentStream(t));
    sockets.push({ sock: ag, rec: checker.client('agent', { kind: 'agents', tenantId: t }, { contiguous: true }) });
    for (let i = 0; i < 45; i++) {
      const m = await send(h.env, t, sessions[i % 3]!, `m ${i}`);
      checker.acked(m.id, t, m.sessionId);
      if (i % 10 === 9) h.tap.releaseHeld('reverse');
    }
    await eventually(() => h.tap.seen === 45, 'every publish at the tap');
    h.tap.releaseHeld('reverse');
    // The drops model a lost subscription, which the bus reports when it is restored.
    h.tap.fireResubscribed();
    const reader = {
      conversation: async (tenantId: string, sessionId: string) => h.env.messages.since(tenantId, sessionId, 0, 1000),
    };
    const record = () => {
      for (const { sock, rec } of sockets) {
        const seg = rec.segments[0]!;
        for (const e of sock.got.slice(seg.receipts.length)) {
          if (e.event === 'meta_message_created') rec.received(e.payload.message.id, e.offset);
          else rec.receivedOther(e.offset);
        }
      }
    };
    await eventually(async () => (record(), (await checker.verify(reader)).ok), 'a clean delivery report').catch(() => undefined);
    await checker.assertClean(reader);
    await cleanup();
  });
}
