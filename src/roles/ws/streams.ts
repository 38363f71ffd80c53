// Ordered, exactly-once delivery of the recoverable streams on one ws node (DESIGN.md "Real time":
// one recoverable stream per socket). Transport-agnostic: it knows nothing of uWS or Socket.IO.
//
// Two kinds of stream:
//   - conversation (tenantId, sessionId): followed by the conversation's visitor/user sockets;
//     offset = the message `seq` from the database; recovery from `db.messages.since`, complete
//     however long the client was away (up to `limit` messages per recovery).
//   - agents (tenantId): followed by the tenant's agent sockets; carries every message and presence
//     event of the tenant; offset = the agent-stream offset assigned at publish time; recovery from
//     `store.events.agentRange`, bounded: past the bound the result is `complete: false`.
// An agent follows ONLY the agent stream (never a conversation stream), so a message reaches a
// socket once even when the agent also `join`ed the conversation (join only selects typing/read).
//
// How the protocol layer uses it (API):
//   const hub = new StreamHub({ bus, events, messages, logger, onStreamEvent, onTenantEvent, onStreamBroken });
//   - `await hub.attach(key, afterOffset | undefined, sink, { limit })` when a socket starts following
//     a stream (new socket: afterOffset undefined; recovery: the offset string the client sent back,
//     as is; `since` cursor: the seq as a number). `sink({ events, complete, offset })` is called
//     SYNCHRONOUSLY exactly once, at a moment
//     when `events` (offset order, all > afterOffset) end at `offset`, the last offset this node has
//     handed to onStreamEvent for that stream. Inside sink, the protocol layer must: publish any frame
//     of that stream's topic it still holds in a deferred-flush queue (so the socket does not get it
//     twice), send `events` to the socket, then subscribe the socket to the topic. From then on every
//     later event reaches it through onStreamEvent → the topic. `complete: false` = recovery was not
//     possible (agent history trimmed, more than `limit` missed, or an offset this stream never
//     had): `events` is empty, the client must refetch over HTTP (`recovered: false`).
//     attach holds one reference on the stream; call `hub.release(key)` exactly once when that socket
//     stops following it (close, or a failed hand-off). If attach rejects, no reference is held.
//     attach rejects with DependencyError when PostgreSQL/Redis cannot be read: close the transport
//     so the client retries.
//   - `hub.recover(key, afterOffset, limit)` → `{ events, complete }`: a plain read of the stream's
//     history (no state, no reference) for pacing a large replay page by page before the final
//     `attach` (which then only has the tail to hand over). afterOffset: the client's token or a number.
//   - `offsetToken(key, event)` / `parseOffsetToken(token)`: the offset string sent with each event
//     (a conversation's seq; for the agent stream `<offset>~<tag>`, see offsetToken).
//   - `onStreamEvent(key, id, event)`: called once per node per stream event, strictly in offset order,
//     never twice for one offset; turn it into ONE serialized frame, with `offsetToken(key, event)` as
//     its last argument (a string: the Socket.IO recovery offset), published to the topic named by
//     `id` (= streamId(key), tenant-scoped).
//   - `onTenantEvent(tenantId, event)`: typing, read, broadcast and revoke, as the bus delivered them.
//   - `onStreamBroken(key, id, reason)`: the node could not deliver some offsets of this stream (the
//     agent history was trimmed past them, the source never had them, or the agent stream restarted
//     because Redis lost its data): close the stream's sockets' transports so they reconnect and
//     run recovery (which then reports complete: false). Delivery continues with the next available
//     offset.
// Gaps (an event ahead of last+1: a lost bus message, or publish order ≠ commit order) are filled from
// the source before later events go out; duplicates (offset ≤ last) are dropped; after the bus lost
// and restored its subscription (`bus.onResubscribed`) every stream re-reads from its last offset.
import type { Logger } from 'pino';
import type { ConversationSummary, ConversationUpdate } from '../../chat/conversation.js';
import type { ChatMessage } from '../../chat/message.js';
import type { MessageStore } from '../../db/ports.js';
import { DependencyError } from '../../errors.js';
import { promClient, registry } from '../../observability/metrics.js';
import type { AgentStreamEntry, Bus, EventLog, PresenceEvent, TenantEvent, Unsubscribe } from '../../store/ports.js';
import { agentsTopic, conversationTopic } from '../../topics.js';

export type StreamKey =
  | { readonly kind: 'conversation'; readonly tenantId: string; readonly sessionId: string }
  | { readonly kind: 'agents'; readonly tenantId: string };

export const conversationStream = (tenantId: string, sessionId: string): StreamKey => ({ kind: 'conversation', tenantId, sessionId });
export const agentStream = (tenantId: string): StreamKey => ({ kind: 'agents', tenantId });

/**
 * The stream's tenant-scoped name, used as its uWS topic (src/topics.ts): `t:{tenant}:conv:{session}`
 * or `t:{tenant}:agents`.
 */
export function streamId(key: StreamKey): string {
  return key.kind === 'conversation' ? conversationTopic(key.tenantId, key.sessionId) : agentsTopic(key.tenantId);
}

/** One event of a stream as it goes to a socket: the Socket.IO event name, its payload, its offset. */
export type StreamEvent =
  | { readonly event: 'meta_message_created'; readonly payload: { readonly message: ChatMessage }; readonly offset: number }
  | { readonly event: 'presence_update'; readonly payload: PresenceEvent; readonly offset: number }
  | { readonly event: 'conversation_updated'; readonly payload: ConversationUpdatedPayload; readonly offset: number };

/** `conversation_updated`: the summary and its version (one more per change of the conversation; older ones are dropped). */
export interface ConversationUpdatedPayload {
  readonly conversation: ConversationSummary;
  readonly version: number;
}

/** Tenant events that are not part of a recoverable stream. */
export type PassThroughEvent = Exclude<TenantEvent, { type: 'message' } | { type: 'presence' } | { type: 'conversation' }>;

export interface AttachResult {
  /** Missed events in offset order, all > the requested offset, ending at `offset`. */
  readonly events: readonly StreamEvent[];
  /** false: recovery was not possible; `events` is empty and the client must refetch history. */
  readonly complete: boolean;
  /** The stream's delivered head on this node at hand-over: later events arrive via onStreamEvent. */
  readonly offset: number;
}

export type BrokenReason = 'history_trimmed' | 'gap_unfillable' | 'stream_reset';

export interface StreamHubOptions {
  readonly bus: Pick<Bus, 'subscribe' | 'onResubscribed'>;
  readonly events: Pick<EventLog, 'agentRange' | 'agentHead'>;
  readonly messages: Pick<MessageStore, 'since' | 'getConversation'>;
  readonly logger: Logger;
  onStreamEvent(key: StreamKey, id: string, event: StreamEvent): void;
  onTenantEvent(tenantId: string, event: PassThroughEvent): void;
  onStreamBroken?(key: StreamKey, id: string, reason: BrokenReason): void;
  /** Largest replay per attach (config socketio.recoveryMaxMessages). */
  readonly recoveryMaxMessages?: number;
  /** Rows per source read (gap fill, recovery). */
  readonly pageSize?: number;
  /** Recent events kept per stream so a quick reconnect needs no read (conversation, agents). */
  readonly ringSize?: { readonly conversation: number; readonly agents: number };
  /** Out-of-order events buffered per stream while a fill runs; beyond it they are re-read instead. */
  readonly maxPending?: number;
  /** Source reads that find nothing for a gap before it is declared unfillable. */
  readonly maxEmptyFills?: number;
  /** Backoff between failed or empty fill reads. */
  readonly retryMs?: { readonly initial: number; readonly max: number };
  /** How long attach waits for this node to catch up to a client that is ahead of it. */
  readonly catchUpTimeoutMs?: number;
}

const gapFills = new promClient.Counter({
  name: 'chatd_stream_gap_fills_total',
  help: 'Source reads of a stream to fill a gap or re-read after a bus resubscription, by kind.',
  labelNames: ['kind'] as const,
  registers: [registry],
});
const duplicatesDropped = new promClient.Counter({
  name: 'chatd_stream_duplicates_dropped_total',
  help: 'Stream events dropped because their offset was already delivered on this node.',
  registers: [registry],
});
const streamsBroken = new promClient.Counter({
  name: 'chatd_stream_broken_total',
  help: 'Offsets a node could not deliver (agent history trimmed, gap unfillable), by reason.',
  labelNames: ['reason'] as const,
  registers: [registry],
});

// Shared empty values: most streams (idle conversations) never hold pending or recent events, so they
// point at these instead of owning empty containers (memory per idle socket counts).
const NO_PENDING: ReadonlyMap<number, StreamEvent> = new Map();
const NO_EVENTS: readonly StreamEvent[] = [];
const READY: Promise<void> = Promise.resolve();

interface StreamState {
  readonly key: StreamKey;
  readonly id: string;
  readonly tenant: TenantState;
  refs: number;
  ready: Promise<void>;
  initialized: boolean;
  closed: boolean;
  /** The last offset handed to onStreamEvent (the node's delivered head). */
  last: number;
  /** Events that arrived before the head was read. */
  early: StreamEvent[] | undefined;
  /** Events ahead of last+1, by offset, waiting for the gap before them. */
  pending: Map<number, StreamEvent>;
  /** Recently delivered events, contiguous, ending at `last`. */
  ring: readonly StreamEvent[];
  ringSize: number;
  filling: Promise<void> | undefined;
  /** Re-read the source from `last` even without a known gap (resubscribed, catching up, overflow). */
  forceRead: boolean;
}

interface TenantState {
  readonly tenantId: string;
  refs: number;
  ready: Promise<void>;
  unsubscribe: Unsubscribe | undefined;
  closed: boolean;
  readonly streams: Map<string, StreamState>;
}

interface SourcePage {
  readonly events: StreamEvent[];
  /** false: the source lost entries after the requested offset (agent history trimmed). */
  readonly complete: boolean;
}

/** Ordered, exactly-once stream delivery for one node. See the top of this file. */
export class StreamHub {
  private readonly tenants = new Map<string, TenantState>();
  private closed = false;
  private readonly recoveryMax: number;
  private readonly pageSize: number;
  private readonly ringSizes: { conversation: number; agents: number };
  private readonly maxPending: number;
  private readonly maxEmptyFills: number;
  private readonly retry: { initial: number; max: number };
  private readonly catchUpTimeoutMs: number;
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();

  constructor(private readonly opts: StreamHubOptions) {
    this.recoveryMax = opts.recoveryMaxMessages ?? 1000;
    this.pageSize = opts.pageSize ?? 500;
    this.ringSizes = { conversation: opts.ringSize?.conversation ?? 16, agents: opts.ringSize?.agents ?? 512 };
    this.maxPending = opts.maxPending ?? 10_000;
    this.maxEmptyFills = opts.maxEmptyFills ?? 8;
    this.retry = { initial: opts.retryMs?.initial ?? 50, max: opts.retryMs?.max ?? 2000 };
    this.catchUpTimeoutMs = opts.catchUpTimeoutMs ?? 10_000;
    opts.bus.onResubscribed(() => this.resubscribed());
  }

  /**
   * Starts following `key` for one socket and hands over its missed events (see the top of the
   * file). `afterOffset` undefined: no recovery, live events only.
   */
  async attach(
    key: StreamKey,
    afterOffset: number | string | undefined,
    sink: (result: AttachResult) => void,
    opts: { limit?: number } = {},
  ): Promise<void> {
    const st = await this.acquire(key);
    try {
      await this.handOver(st, afterOffset, sink, opts.limit ?? this.recoveryMax);
    } catch (err) {
      this.release(key);
      throw err;
    }
  }

  /** Drops one reference taken by a successful attach; the last one stops following the stream. */
  release(key: StreamKey): void {
    const t = this.tenants.get(key.tenantId);
    const st = t?.streams.get(streamId(key));
    if (!t || !st) return;
    st.refs -= 1;
    if (st.refs > 0) return;
    st.closed = true;
    t.streams.delete(st.id);
    this.releaseTenant(t);
  }

  /**
   * The stream's stored history after `afterOffset` (at most `limit` events, offset order), read
   * from the source with no state: for paging a large replay before the final attach. `complete`
   * is false when entries right after `afterOffset` no longer exist (agent history trimmed).
   */
  async recover(key: StreamKey, after: number | string, limit: number): Promise<{ events: StreamEvent[]; complete: boolean }> {
    const afterOffset = await this.resolveAfter(key, after, undefined);
    if (afterOffset === undefined) return { events: [], complete: false };
    const page = await this.read(key, afterOffset, limit);
    const first = page.events[0];
    if (!page.complete || (first && first.offset !== afterOffset + 1)) return { events: [], complete: false };
    return { events: contiguous(page.events, afterOffset), complete: true };
  }

  /** The last offset this node delivered for `key`, or undefined when no local socket follows it. */
  head(key: StreamKey): number | undefined {
    const st = this.tenants.get(key.tenantId)?.streams.get(streamId(key));
    return st?.initialized ? st.last : undefined;
  }

  /** Counts for metrics, admin and tests. */
  stats(): { tenants: number; streams: number; pending: number } {
    let streams = 0;
    let pending = 0;
    for (const t of this.tenants.values()) {
      streams += t.streams.size;
      for (const st of t.streams.values()) pending += st.pending.size;
    }
    return { tenants: this.tenants.size, streams, pending };
  }

  /** Stops every stream and unsubscribes from the bus. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sleeps) {
      clearTimeout(s.timer);
      s.resolve();
    }
    this.sleeps.clear();
    const subs: Promise<void>[] = [];
    for (const t of this.tenants.values()) {
      t.closed = true;
      for (const st of t.streams.values()) st.closed = true;
      if (t.unsubscribe) subs.push(t.unsubscribe().catch(() => undefined));
    }
    this.tenants.clear();
    await Promise.all(subs);
  }

  // ------------------------------------------------------------------ references and subscription

  private async acquire(key: StreamKey): Promise<StreamState> {
    if (this.closed) throw new DependencyError('redis', 'stream hub is closed');
    const t = this.tenant(key.tenantId);
    t.refs += 1;
    try {
      await t.ready;
    } catch (err) {
      t.refs -= 1;
      throw err;
    }
    const id = streamId(key);
    let st = t.streams.get(id);
    if (!st) {
      const created: StreamState = {
        key,
        id,
        tenant: t,
        refs: 0,
        ready: Promise.resolve(),
        initialized: false,
        closed: false,
        last: 0,
        early: [],
        pending: NO_PENDING as Map<number, StreamEvent>,
        ring: NO_EVENTS,
        ringSize: key.kind === 'agents' ? this.ringSizes.agents : this.ringSizes.conversation,
        filling: undefined,
        forceRead: false,
      };
      created.ready = this.init(created);
      created.ready.catch(() => {
        created.closed = true;
        if (t.streams.get(id) === created) t.streams.delete(id);
      });
      t.streams.set(id, created);
      st = created;
    }
    st.refs += 1;
    try {
      await st.ready;
    } catch (err) {
      st.refs -= 1;
      this.releaseTenant(t);
      throw err;
    }
    return st;
  }

  private tenant(tenantId: string): TenantState {
    const existing = this.tenants.get(tenantId);
    if (existing) return existing;
    const t: TenantState = {
      tenantId,
      refs: 0,
      ready: Promise.resolve(),
      unsubscribe: undefined,
      closed: false,
      streams: new Map(),
    };
    t.ready = this.opts.bus
      .subscribe(tenantId, (event) => this.onBusEvent(t, event))
      .then((unsubscribe) => {
        if (t.closed) void unsubscribe().catch(() => undefined);
        else t.unsubscribe = unsubscribe;
      });
    t.ready.catch(() => {
      t.closed = true;
      if (this.tenants.get(tenantId) === t) this.tenants.delete(tenantId);
    });
    this.tenants.set(tenantId, t);
    return t;
  }

  private releaseTenant(t: TenantState): void {
    t.refs -= 1;
    if (t.refs > 0) return;
    t.closed = true;
    if (this.tenants.get(t.tenantId) === t) this.tenants.delete(t.tenantId);
    const unsubscribe = t.unsubscribe;
    t.unsubscribe = undefined;
    // When the subscription is still being set up, `tenant()`'s continuation unsubscribes it.
    unsubscribe?.().catch((err: unknown) => this.opts.logger.warn({ err, tenantId: t.tenantId }, 'bus unsubscribe failed'));
  }

  /** Reads the head only after the bus subscription is live, so no later event can be missed. */
  private async init(st: StreamState): Promise<void> {
    const head =
      st.key.kind === 'agents'
        ? await this.opts.events.agentHead(st.key.tenantId)
        : ((await this.opts.messages.getConversation(st.key.tenantId, st.key.sessionId))?.lastSeq ?? 0);
    st.last = head;
    st.initialized = true;
    st.ready = READY;
    const early = st.early ?? [];
    st.early = undefined;
    early.sort((a, b) => a.offset - b.offset);
    for (const e of early) this.ingest(st, e);
  }

  // ------------------------------------------------------------------ ordered delivery

  private onBusEvent(t: TenantState, event: TenantEvent): void {
    if (t.closed) return;
    switch (event.type) {
      case 'message': {
        const m = event.message;
        if (m.tenantId !== t.tenantId) return;
        const conv = t.streams.get(conversationTopic(t.tenantId, m.sessionId));
        if (conv) this.ingest(conv, { event: 'meta_message_created', payload: { message: m }, offset: m.seq });
        const agents = t.streams.get(agentsTopic(t.tenantId));
        if (agents) this.ingest(agents, { event: 'meta_message_created', payload: { message: m }, offset: event.agentOffset });
        return;
      }
      case 'presence': {
        const agents = t.streams.get(agentsTopic(t.tenantId));
        if (agents) this.ingest(agents, { event: 'presence_update', payload: event.presence, offset: event.agentOffset });
        return;
      }
      case 'conversation': {
        if (event.update.tenantId !== t.tenantId) return;
        const agents = t.streams.get(agentsTopic(t.tenantId));
        if (agents)
          this.ingest(agents, { event: 'conversation_updated', payload: updatedPayload(event.update), offset: event.agentOffset });
        return;
      }
      case 'typing':
      case 'read':
      case 'broadcast':
      case 'revoke':
      case 'availability':
        try {
          this.opts.onTenantEvent(t.tenantId, event);
        } catch (err) {
          this.opts.logger.error({ err, tenantId: t.tenantId, type: event.type }, 'onTenantEvent failed');
        }
        return;
      default: {
        const never: never = event;
        this.opts.logger.warn({ event: never }, 'unknown tenant event ignored');
      }
    }
  }

  private ingest(st: StreamState, e: StreamEvent): void {
    if (st.closed) return;
    if (!st.initialized) {
      st.early?.push(e);
      return;
    }
    if (e.offset <= st.last) {
      duplicatesDropped.inc();
      // Agent offsets are appended once per message, so a repeat means the numbering restarted
      // (Redis lost its data): check the source.
      if (st.key.kind === 'agents' && !st.forceRead) {
        st.forceRead = true;
        void this.fill(st);
      }
      return;
    }
    if (e.offset === st.last + 1) {
      this.deliver(st, e);
      this.drainPending(st);
      return;
    }
    // Ahead of last+1: hold it until the gap before it is filled from the source.
    if (st.pending.size >= this.maxPending) {
      // Too much to hold: drop the buffer and re-read everything from the source instead.
      st.pending = NO_PENDING as Map<number, StreamEvent>;
      st.forceRead = true;
    } else {
      if (st.pending === NO_PENDING) st.pending = new Map();
      st.pending.set(e.offset, e);
    }
    void this.fill(st);
  }

  private deliver(st: StreamState, e: StreamEvent): void {
    st.last = e.offset;
    const ring = st.ring === NO_EVENTS ? (st.ring = []) : (st.ring as StreamEvent[]);
    ring.push(e);
    if (ring.length > 2 * st.ringSize) ring.splice(0, ring.length - st.ringSize);
    try {
      this.opts.onStreamEvent(st.key, st.id, e);
    } catch (err) {
      this.opts.logger.error({ err, stream: st.id, offset: e.offset }, 'onStreamEvent failed');
    }
  }

  private drainPending(st: StreamState): void {
    if (st.pending.size === 0) return;
    for (let next = st.pending.get(st.last + 1); next; next = st.pending.get(st.last + 1)) {
      st.pending.delete(next.offset);
      this.deliver(st, next);
    }
    for (const offset of st.pending.keys()) if (offset <= st.last) st.pending.delete(offset);
    if (st.pending.size === 0) st.pending = NO_PENDING as Map<number, StreamEvent>;
  }

  /** Starts the stream's fill loop unless it runs already. */
  private fill(st: StreamState): Promise<void> {
    st.filling ??= this.fillLoop(st)
      .catch((err: unknown) => this.opts.logger.error({ err, stream: st.id }, 'stream fill loop failed'))
      .finally(() => {
        st.filling = undefined;
        // An event may have been buffered after the loop's last check.
        if (!st.closed && !this.closed && (st.pending.size > 0 || st.forceRead)) void this.fill(st);
      });
    return st.filling;
  }

  private async fillLoop(st: StreamState): Promise<void> {
    let delay = this.retry.initial;
    let empty = 0;
    while (!st.closed && !this.closed && (st.pending.size > 0 || st.forceRead)) {
      const forced = st.forceRead;
      st.forceRead = false;
      gapFills.inc({ kind: st.key.kind });
      this.opts.logger.debug({ stream: st.id, after: st.last, pending: st.pending.size, forced }, 'stream fill read');
      let page: SourcePage;
      try {
        if (forced && (await this.numberingRestarted(st))) continue;
        page = await this.read(st.key, st.last, this.pageSize);
      } catch (err) {
        st.forceRead ||= forced;
        this.opts.logger.warn({ err, stream: st.id, after: st.last, retryMs: delay }, 'stream gap fill failed; retrying');
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.retry.max);
        continue;
      }
      if (st.closed) return;
      if (!page.complete && page.events.length === 0 && st.key.kind === 'agents') {
        // Nothing after `last` and not complete: the agent stream restarted below our head (Redis lost
        // its data). Follow the new numbering; the sockets must recover (they get complete: false).
        try {
          const head = await this.opts.events.agentHead(st.key.tenantId);
          if (head < st.last) this.reset(st, head);
        } catch (err) {
          st.forceRead = true;
          this.opts.logger.warn({ err, stream: st.id }, 'agent head read failed; retrying');
          await this.sleep(delay);
          delay = Math.min(delay * 2, this.retry.max);
        }
        continue;
      }
      const before = st.last;
      const first = page.events[0];
      if (first && first.offset > st.last + 1) this.broken(st, 'history_trimmed', first.offset - 1);
      for (const e of page.events) {
        if (e.offset <= st.last) continue;
        if (e.offset > st.last + 1) this.broken(st, 'gap_unfillable', e.offset - 1);
        this.deliver(st, e);
        st.pending.delete(e.offset);
      }
      this.drainPending(st);
      if (page.events.length >= this.pageSize) {
        // More history to read: keep going without waiting.
        st.forceRead = true;
        delay = this.retry.initial;
        empty = 0;
        continue;
      }
      if (st.pending.size === 0) return;
      // Events are buffered beyond offsets the source does not have (yet).
      if (st.last === before) empty += 1;
      else empty = 0;
      if (empty >= this.maxEmptyFills) {
        const lowest = Math.min(...st.pending.keys());
        this.broken(st, 'gap_unfillable', lowest - 1);
        this.drainPending(st);
        empty = 0;
        continue;
      }
      await this.sleep(delay);
      delay = Math.min(delay * 2, this.retry.max);
    }
  }

  /** Offsets up to `to` cannot be delivered: skip them and let the protocol recover the sockets. */
  private broken(st: StreamState, reason: BrokenReason, to: number): void {
    const lost = to - st.last;
    if (lost <= 0) return;
    streamsBroken.inc({ reason }, lost);
    this.opts.logger.warn({ stream: st.id, from: st.last + 1, to, reason }, 'stream offsets could not be delivered; sockets must recover');
    st.last = to;
    st.ring = NO_EVENTS;
    try {
      this.opts.onStreamBroken?.(st.key, st.id, reason);
    } catch (err) {
      this.opts.logger.error({ err, stream: st.id }, 'onStreamBroken failed');
    }
  }

  /**
   * Whether the agent stream's numbering restarted under this node (Redis lost its data and new
   * events reached our offset again): the event the source now has at `last` is not the one this
   * node delivered there. Then the stream is reset to the source's head.
   */
  private async numberingRestarted(st: StreamState): Promise<boolean> {
    const mine = st.ring[st.ring.length - 1];
    if (st.key.kind !== 'agents' || !mine || mine.offset !== st.last) return false;
    const theirs = (await this.read(st.key, st.last - 1, 1)).events[0];
    if (!theirs || theirs.offset !== st.last || eventTag(theirs) === eventTag(mine)) return false;
    this.reset(st, await this.opts.events.agentHead(st.key.tenantId));
    return true;
  }

  /** The source's numbering restarted (its head is `head`): deliver from there on. */
  private reset(st: StreamState, head: number): void {
    streamsBroken.inc({ reason: 'stream_reset' });
    this.opts.logger.warn(
      { stream: st.id, last: st.last, head },
      'the agent stream restarted its numbering (Redis lost its data); sockets must recover',
    );
    st.last = head;
    st.ring = NO_EVENTS;
    // Buffered events may belong to either numbering: re-read them from the source instead.
    st.pending = NO_PENDING as Map<number, StreamEvent>;
    st.forceRead = true;
    try {
      this.opts.onStreamBroken?.(st.key, st.id, 'stream_reset');
    } catch (err) {
      this.opts.logger.error({ err, stream: st.id }, 'onStreamBroken failed');
    }
  }

  private resubscribed(): void {
    if (this.closed) return;
    for (const t of this.tenants.values()) {
      for (const st of t.streams.values()) {
        if (!st.initialized) continue; // init reads the head after this point anyway
        st.forceRead = true;
        void this.fill(st);
      }
    }
  }

  // ------------------------------------------------------------------ hand-over to a socket

  private async handOver(
    st: StreamState,
    afterOffset: number | string | undefined,
    sink: (result: AttachResult) => void,
    limit: number,
  ): Promise<void> {
    if (afterOffset === undefined) return sink({ events: [], complete: true, offset: st.last });
    const after = await this.resolveAfter(st.key, afterOffset, st);
    if (after === undefined) return sink({ events: [], complete: false, offset: st.last });
    if (after > st.last) {
      // The client saw more than this node delivered (it came from a node that was ahead): catch up
      // from the source first, or it would receive those events a second time.
      await this.catchUp(st, after);
      if (after > st.last) return sink({ events: [], complete: false, offset: st.last });
    }
    const collected: StreamEvent[] = [];
    let cursor = after;
    let empty = 0;
    for (;;) {
      if (st.closed) throw new DependencyError('redis', 'stream closed during hand-over');
      // Synchronous from here to sink: nothing can be delivered in between.
      if (st.last - after > limit) return sink({ events: [], complete: false, offset: st.last });
      const tail = this.ringFrom(st, cursor);
      if (tail) return sink({ events: collected.length ? collected.concat(tail) : tail, complete: true, offset: st.last });
      const page = await this.read(st.key, cursor, Math.min(this.pageSize, st.last - cursor));
      const first = page.events[0];
      if (!page.complete || (first && first.offset !== cursor + 1)) return sink({ events: [], complete: false, offset: st.last });
      const before = cursor;
      for (const e of page.events) {
        if (e.offset !== cursor + 1) break;
        collected.push(e);
        cursor = e.offset;
      }
      if (cursor === before && ++empty >= this.maxEmptyFills) {
        // The source does not have offsets this node delivered (and the ring no longer holds them).
        return sink({ events: [], complete: false, offset: st.last });
      }
      // The head may have moved while reading; drop anything beyond it (it arrives live).
      while (collected.length > 0 && collected[collected.length - 1]!.offset > st.last) {
        collected.pop();
        cursor -= 1;
      }
      if (cursor >= st.last) return sink({ events: collected, complete: true, offset: st.last });
    }
  }

  /**
   * The numeric offset of a client's offset (a number, or a token from offsetToken), or undefined
   * when it is malformed or names an event the stream no longer has at that offset (the agent
   * stream restarted its numbering, or the event left the history): not recoverable.
   */
  private async resolveAfter(key: StreamKey, afterOffset: number | string, st: StreamState | undefined): Promise<number | undefined> {
    const parsed = typeof afterOffset === 'number' ? { offset: afterOffset, tag: undefined } : parseOffsetToken(afterOffset);
    if (!parsed || !Number.isSafeInteger(parsed.offset) || parsed.offset < 0) return undefined;
    const { offset, tag } = parsed;
    if (tag === undefined || offset === 0 || key.kind !== 'agents') return offset;
    const first = st?.ring[0];
    const at =
      st && first && first.offset <= offset && offset <= st.last
        ? st.ring[offset - first.offset]
        : (await this.read(key, offset - 1, 1)).events[0];
    return at && at.offset === offset && eventTag(at) === tag ? offset : undefined;
  }

  /** Delivered events after `cursor` from the ring, or undefined if the ring does not reach back. */
  private ringFrom(st: StreamState, cursor: number): StreamEvent[] | undefined {
    if (cursor >= st.last) return [];
    const first = st.ring[0];
    if (!first || first.offset > cursor + 1) return undefined;
    return st.ring.slice(cursor + 1 - first.offset);
  }

  private async catchUp(st: StreamState, target: number): Promise<void> {
    const deadline = Date.now() + this.catchUpTimeoutMs;
    while (st.last < target && !st.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new DependencyError('postgres', `stream ${st.id} could not catch up to offset ${target}`);
      st.forceRead = true;
      await Promise.race([this.fill(st), this.sleep(left)]);
      if (st.last >= target || st.filling) continue;
      // The fill ran and stopped: the source has nothing more, the client's offset is beyond the stream.
      return;
    }
  }

  // ------------------------------------------------------------------ sources

  private async read(key: StreamKey, after: number, limit: number): Promise<SourcePage> {
    if (limit <= 0) return { events: [], complete: true };
    if (key.kind === 'conversation') {
      const rows = await this.opts.messages.since(key.tenantId, key.sessionId, after, limit);
      return { events: rows.map((m) => ({ event: 'meta_message_created', payload: { message: m }, offset: m.seq })), complete: true };
    }
    const { entries, complete } = await this.opts.events.agentRange(key.tenantId, after, limit);
    return { events: entries.map(agentEvent), complete };
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.sleeps.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      entry.timer.unref?.();
      this.sleeps.add(entry);
    });
  }
}

/**
 * The offset string a client gets with an event (Socket.IO passes it back on reconnect). A
 * conversation's is its seq. An agent stream's is `<offset>~<tag>`, the tag naming the event at that
 * offset, because the agent stream's numbering starts again if Redis loses its data: a client
 * holding an offset from before is then detected (complete: false) instead of resumed at the wrong
 * place. Clients treat it as opaque.
 */
export function offsetToken(key: StreamKey, event: StreamEvent): string {
  return key.kind === 'agents' ? `${event.offset}~${eventTag(event)}` : String(event.offset);
}

/** Reads a token from offsetToken (or a plain number); undefined if malformed. */
export function parseOffsetToken(token: string): { offset: number; tag: string | undefined } | undefined {
  const m = /^(\d{1,15})(?:~([0-9a-z]{1,16}))?$/.exec(token);
  if (!m) return undefined;
  return { offset: Number(m[1]), tag: m[2] };
}

/** A short, deterministic name for an event (every node computes the same one). */
function eventTag(e: StreamEvent): string {
  const text =
    e.event === 'meta_message_created'
      ? e.payload.message.id
      : e.event === 'conversation_updated'
        ? `${e.payload.conversation.sessionId}|${e.payload.version}|${e.payload.conversation.lastActivityAt}`
        : `${e.payload.userId}|${e.payload.sessionId}|${e.payload.status}|${e.payload.at}`;
  // FNV-1a, 32 bits.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(36);
}

function agentEvent(entry: AgentStreamEntry): StreamEvent {
  switch (entry.type) {
    case 'message':
      return { event: 'meta_message_created', payload: { message: entry.message }, offset: entry.offset };
    case 'presence':
      return { event: 'presence_update', payload: entry.presence, offset: entry.offset };
    case 'conversation':
      return { event: 'conversation_updated', payload: updatedPayload(entry.update), offset: entry.offset };
    default: {
      const never: never = entry;
      throw new Error(`unknown agent stream entry ${JSON.stringify(never)}`);
    }
  }
}

const updatedPayload = (u: ConversationUpdate): ConversationUpdatedPayload => ({ conversation: u.conversation, version: u.version });

/** The leading run of events with offsets after+1, after+2, … */
function contiguous(events: readonly StreamEvent[], after: number): StreamEvent[] {
  const out: StreamEvent[] = [];
  for (const e of events) {
    if (e.offset !== after + out.length + 1) break;
    out.push(e);
  }
  return out;
}
