// The delivery checker: the oracle for "exactly once, in order".
//
//   const checker = new DeliveryChecker();
//   const visitor = checker.client('visitor-1', { kind: 'conversation', tenantId, sessionId });
//   socket.on('meta_message_created', (p, offset) => visitor.received(p.message.id, Number(offset)));
//   const agent = checker.client('agent-B', { kind: 'agents', tenantId });
//   agentSocket.on('meta_message_created', (p, o) => agent.received(p.message.id, Number(o)));
//   agentSocket.on('presence_update', (_p, o) => agent.receivedOther(Number(o)));   // optional
//   … before each send: const started = checker.sendStarted()   (optional, see obligations)
//   … on every successful send (HTTP 200 or WS ack): checker.acked(messageId, tenantId, sessionId, started)
//   … on reconnect: visitor.reconnected(socket.recovered)
//   await checker.settle(readerFromDb(db));          // polls until every obligation is met (or deadline)
//   await checker.assertClean(readerFromDb(db));     // throws with a diff report
//
// What it asserts:
//   - every acknowledged messageId is stored exactly once (read back from the database);
//   - every client received each message at most once, offsets strictly increasing, each message
//     with the offset of its stream (conversation: the stored seq; agents: the same offset for every
//     client, and the stored agent offset when the reader knows it);
//   - obligations: a client registered (or reconnected with recovered === false) at some point owes
//     every message of its stream acknowledged after that point while it stayed connected or
//     recovered — and, when the sender said when it started the send (`sendStarted()`), only those
//     whose send started after that point: a send in flight while the client rejoined may have been
//     appended to the stream just before the join, which a client that did not recover is not owed
//     (it was told `recovered: false`); `gone()` / reconnected(false) end a segment's obligations;
//   - no holes: between the first and last offset a client received in one segment, every stored
//     message of a conversation stream is there (agent streams: every offset, when the client records
//     presence events too with `receivedOther`, or `contiguous: true` is given).
import type { ChatMessage } from '../../src/chat/message.js';

export type CheckedStream =
  | { readonly kind: 'conversation'; readonly tenantId: string; readonly sessionId: string }
  | { readonly kind: 'agents'; readonly tenantId: string };

export const streamLabel = (s: CheckedStream) =>
  s.kind === 'conversation' ? `t:${s.tenantId}:conv:${s.sessionId}` : `t:${s.tenantId}:agents`;

/** Reads back what was stored. */
export interface StoredReader {
  /** Every stored message of a conversation, ascending seq. */
  conversation(tenantId: string, sessionId: string): Promise<readonly ChatMessage[]>;
  /** messageId → agent-stream offset, for the entries still in the agent history (optional). */
  agentOffsets?(tenantId: string): Promise<ReadonlyMap<string, number>>;
}

/** A StoredReader over the database port (and optionally the store's agent history). */
export function readerFromDb(
  db: { messages: { since(t: string, s: string, after: number, limit: number): Promise<ChatMessage[]> } },
  events?: {
    agentRange(
      t: string,
      after: number,
      limit: number,
    ): Promise<{ entries: readonly { offset: number; type: string; message?: ChatMessage }[] }>;
  },
): StoredReader {
  return {
    async conversation(tenantId, sessionId) {
      const out: ChatMessage[] = [];
      for (let after = 0; ;) {
        const page = await db.messages.since(tenantId, sessionId, after, 1000);
        out.push(...page);
        if (page.length < 1000) return out;
        after = page[page.length - 1]!.seq;
      }
    },
    ...(events
      ? {
          async agentOffsets(tenantId: string) {
            const map = new Map<string, number>();
            for (let after = 0; ;) {
              const { entries } = await events.agentRange(tenantId, after, 1000);
              for (const e of entries) if (e.type === 'message' && e.message) map.set(e.message.id, e.offset);
              if (entries.length < 1000) return map;
              after = entries[entries.length - 1]!.offset;
            }
          },
        }
      : {}),
  };
}

interface Ack {
  readonly index: number;
  /** sendStarted()'s number for this send, when the sender recorded it. */
  readonly started: number | undefined;
  readonly messageId: string;
  readonly tenantId: string;
  readonly sessionId: string;
}

interface Receipt {
  /** undefined for a non-message event (presence) recorded only for its offset. */
  readonly messageId: string | undefined;
  readonly offset: number;
}

interface Segment {
  /** Ack index at which obligations start. */
  readonly from: number;
  /** Sends started before the segment began: a send numbered below this is not owed to it. */
  readonly fromSend: number;
  /** Ack index at which they end (exclusive); undefined while the segment is open. */
  to: number | undefined;
  /** false: the client went away without recovery; nothing is owed for this segment. */
  obligated: boolean;
  readonly receipts: Receipt[];
}

/** What one client received, segment by segment. */
export class ClientRecord {
  readonly segments: Segment[] = [];

  constructor(
    readonly name: string,
    readonly stream: CheckedStream,
    private readonly ackCount: () => number,
    private readonly sendCount: () => number,
    readonly contiguous: boolean,
  ) {
    this.segments.push({ from: ackCount(), fromSend: sendCount(), to: undefined, obligated: true, receipts: [] });
  }

  private get current(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  /** A message event, in the order the client got it. */
  received(messageId: string, offset: number): void {
    this.current.receipts.push({ messageId, offset });
  }

  /** A non-message stream event (e.g. presence_update), for offset order and contiguity. */
  receivedOther(offset: number): void {
    this.current.receipts.push({ messageId: undefined, offset });
  }

  /** The client reconnected. recovered: the stream continues; not recovered: a new segment starts now. */
  reconnected(recovered: boolean): void {
    if (recovered) return;
    this.current.to = this.ackCount();
    this.current.obligated = false;
    this.segments.push({ from: this.ackCount(), fromSend: this.sendCount(), to: undefined, obligated: true, receipts: [] });
  }

  /** The client went away for good without recovering: nothing more is owed to it. */
  gone(): void {
    this.current.to = this.ackCount();
    this.current.obligated = false;
  }

  get receivedCount(): number {
    return this.segments.reduce((n, s) => n + s.receipts.length, 0);
  }
}

export interface DeliveryReport {
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly summary: string;
}

export class DeliveryChecker {
  private readonly acks: Ack[] = [];
  private readonly clients: ClientRecord[] = [];
  private sends = 0;

  /** A send starts now (before its request or emit): its number, to pass to acked(). */
  sendStarted(): number {
    return this.sends++;
  }

  /** Records a message the sender got a success acknowledgement for (`started`: from sendStarted()). */
  acked(messageId: string, tenantId: string, sessionId: string, started?: number): void {
    this.acks.push({ index: this.acks.length, started, messageId, tenantId, sessionId });
  }

  get ackedCount(): number {
    return this.acks.length;
  }

  /**
   * A client following `stream`; register it once it is connected and following (obligations start
   * with the next acknowledged message). `contiguous`: check that agent-stream offsets have no holes
   * (requires recording presence events with receivedOther); always on for conversations.
   */
  client(name: string, stream: CheckedStream, opts: { contiguous?: boolean } = {}): ClientRecord {
    if (this.clients.some((c) => c.name === name)) throw new Error(`delivery checker: client ${name} registered twice`);
    const c = new ClientRecord(
      name,
      stream,
      () => this.acks.length,
      () => this.sends,
      stream.kind === 'conversation' || opts.contiguous === true,
    );
    this.clients.push(c);
    return c;
  }

  /** Polls until every obligation is met (or the deadline passes); then call assertClean. */
  async settle(reader: StoredReader, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<DeliveryReport> {
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      const report = await this.verify(reader);
      if (report.ok || Date.now() > deadline) return report;
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
    }
  }

  async assertClean(reader: StoredReader): Promise<void> {
    const report = await this.verify(reader);
    if (!report.ok)
      throw new Error(`delivery checker found problems:\n${report.problems.map((p) => `  - ${p}`).join('\n')}\n${report.summary}`);
  }

  async verify(reader: StoredReader): Promise<DeliveryReport> {
    const problems: string[] = [];
    // ---- what was stored, per conversation
    const conversations = new Map<string, { tenantId: string; sessionId: string }>();
    for (const a of this.acks) conversations.set(`${a.tenantId}\u0000${a.sessionId}`, a);
    for (const c of this.clients) {
      if (c.stream.kind === 'conversation') conversations.set(`${c.stream.tenantId}\u0000${c.stream.sessionId}`, c.stream);
    }
    const stored = new Map<string, ChatMessage[]>(); // messageId → rows
    const bySeq = new Map<string, ChatMessage[]>(); // conversation → rows by seq
    for (const [key, { tenantId, sessionId }] of conversations) {
      const rows = await reader.conversation(tenantId, sessionId);
      bySeq.set(key, [...rows]);
      for (const m of rows) stored.set(m.id, [...(stored.get(m.id) ?? []), m]);
    }
    const agentOffsets = new Map<string, ReadonlyMap<string, number>>();
    if (reader.agentOffsets) {
      for (const t of new Set(this.clients.filter((c) => c.stream.kind === 'agents').map((c) => c.stream.tenantId))) {
        agentOffsets.set(t, await reader.agentOffsets(t));
      }
    }

    // ---- every acknowledged message stored exactly once
    const seenAck = new Set<string>();
    for (const a of this.acks) {
      const rows = stored.get(a.messageId) ?? [];
      if (seenAck.has(a.messageId)) continue; // an idempotent retry acknowledged the same id again: fine
      seenAck.add(a.messageId);
      if (rows.length === 0) problems.push(`acked #${a.index} ${a.messageId} (t:${a.tenantId}:conv:${a.sessionId}) is not stored`);
      else if (rows.length > 1)
        problems.push(`acked ${a.messageId} is stored ${rows.length} times (seq ${rows.map((r) => r.seq).join(', ')})`);
      else if (rows[0]!.sessionId !== a.sessionId || rows[0]!.tenantId !== a.tenantId)
        problems.push(
          `acked ${a.messageId} is stored in t:${rows[0]!.tenantId}:conv:${rows[0]!.sessionId}, acked for t:${a.tenantId}:conv:${a.sessionId}`,
        );
    }

    // ---- the same message has one agent offset for every client
    const agentOffsetSeen = new Map<string, { offset: number; client: string }>();

    // ---- per client
    for (const c of this.clients) {
      const label = `client ${c.name} (${streamLabel(c.stream)})`;
      const inStream = (m: ChatMessage) =>
        m.tenantId === c.stream.tenantId && (c.stream.kind === 'agents' || m.sessionId === c.stream.sessionId);
      c.segments.forEach((seg, si) => {
        const where = c.segments.length > 1 ? `${label} segment ${si + 1}` : label;
        const got = new Map<string, number>(); // messageId → position
        let prev: Receipt | undefined;
        seg.receipts.forEach((r, pos) => {
          if (prev && r.offset <= prev.offset) {
            problems.push(
              `${where}: out of order at position ${pos}: offset ${r.offset}${r.messageId ? ` (${r.messageId})` : ''} after offset ${prev.offset}${prev.messageId ? ` (${prev.messageId})` : ''}`,
            );
          }
          prev = r;
          if (r.messageId === undefined) return;
          const first = got.get(r.messageId);
          if (first !== undefined) {
            problems.push(`${where}: duplicate ${r.messageId} at positions ${first} and ${pos}`);
            return;
          }
          got.set(r.messageId, pos);
          const row = stored.get(r.messageId)?.[0];
          if (!row) {
            problems.push(`${where}: received ${r.messageId} (offset ${r.offset}), which is not stored`);
            return;
          }
          if (!inStream(row))
            problems.push(`${where}: received ${r.messageId} of t:${row.tenantId}:conv:${row.sessionId}, not of its stream`);
          if (c.stream.kind === 'conversation' && r.offset !== row.seq) {
            problems.push(`${where}: ${r.messageId} arrived with offset ${r.offset}, its seq is ${row.seq}`);
          }
          if (c.stream.kind === 'agents') {
            const k = `${c.stream.tenantId}\u0000${r.messageId}`;
            const other = agentOffsetSeen.get(k);
            if (other && other.offset !== r.offset) {
              problems.push(`${where}: ${r.messageId} arrived with agent offset ${r.offset}, client ${other.client} got ${other.offset}`);
            } else if (!other) agentOffsetSeen.set(k, { offset: r.offset, client: c.name });
            const known = agentOffsets.get(c.stream.tenantId)?.get(r.messageId);
            if (known !== undefined && known !== r.offset) {
              problems.push(`${where}: ${r.messageId} arrived with agent offset ${r.offset}, stored at ${known}`);
            }
          }
        });
        // Obligations: messages of its stream acknowledged while this segment was open.
        if (seg.obligated) {
          const end = seg.to ?? this.acks.length;
          const missing: string[] = [];
          const owedSeen = new Set<string>();
          for (let i = seg.from; i < end; i++) {
            const a = this.acks[i]!;
            if (a.tenantId !== c.stream.tenantId || (c.stream.kind === 'conversation' && a.sessionId !== c.stream.sessionId)) continue;
            if (a.started !== undefined && a.started < seg.fromSend) continue; // in flight when the segment began
            if (owedSeen.has(a.messageId)) continue;
            owedSeen.add(a.messageId);
            if (!got.has(a.messageId)) {
              const row = stored.get(a.messageId)?.[0];
              missing.push(`${a.messageId} (acked #${i}${row ? `, seq ${row.seq}` : ''})`);
            }
          }
          if (missing.length > 0) {
            problems.push(`${where}: missing ${missing.length} of ${owedSeen.size} owed: ${abbreviate(missing)}`);
          }
        }
        // Holes between the first and last offset received in this segment.
        const offsets = seg.receipts.map((r) => r.offset);
        if (offsets.length > 1) {
          const lo = Math.min(...offsets);
          const hi = Math.max(...offsets);
          const have = new Set(offsets);
          if (c.stream.kind === 'conversation') {
            const rows = bySeq.get(`${c.stream.tenantId}\u0000${c.stream.sessionId}`) ?? [];
            const holes = rows.filter((m) => m.seq > lo && m.seq < hi && !have.has(m.seq)).map((m) => `seq ${m.seq} (${m.id})`);
            if (holes.length > 0)
              problems.push(`${where}: skipped ${holes.length} stored message(s) between offsets ${lo} and ${hi}: ${abbreviate(holes)}`);
          } else if (c.contiguous) {
            const holes: string[] = [];
            for (let o = lo + 1; o < hi; o++) if (!have.has(o)) holes.push(String(o));
            if (holes.length > 0) problems.push(`${where}: skipped agent offsets between ${lo} and ${hi}: ${abbreviate(holes)}`);
          }
        }
      });
    }

    const summary = [
      `acked: ${this.acks.length} (${seenAck.size} distinct), stored rows read: ${[...bySeq.values()].reduce((n, r) => n + r.length, 0)}`,
      ...this.clients.map(
        (c) =>
          `  ${c.name.padEnd(16)} ${streamLabel(c.stream).padEnd(40)} received ${String(c.receivedCount).padStart(5)} in ${c.segments.length} segment(s)`,
      ),
    ].join('\n');
    return { ok: problems.length === 0, problems, summary };
  }
}

function abbreviate(items: readonly string[], max = 12): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} … and ${items.length - max} more`;
}
