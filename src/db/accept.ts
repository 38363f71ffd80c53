// The message path's durable half (DESIGN.md "One path for a message", step 2) and the reads.
// accept() is group-committed: each flush is ONE transaction that
//   1. upserts and row-locks every conversation of the batch, in session-id order (a fixed order:
//      no deadlock between nodes whose batches share conversations),
//   2. with the locks held, looks up earlier messages with the same idempotency keys (race-free:
//      every writer of a conversation holds its lock),
//   3. hands out consecutive seqs per conversation, then in one statement advances last_seq,
//      inserts the messages and their outbox rows,
//   4. commits — and only then are the callers answered.
// If a batch fails on a row's data, its rows are retried one transaction each, so a bad row fails
// only its own caller.
import { createHash, randomUUID } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Logger } from 'pino';
import { systemText, type ConversationEvent, type ConversationStatus, type ConversationUpdate } from '../chat/conversation.js';
import { emptyMeta, type ChatMessage } from '../chat/message.js';
import { isRowError, toCommitError, toQueryError, toRowRefusal } from './db-errors.js';
import { GroupCommit, type Settled } from './group-commit.js';
import type { AcceptResult, NewMessage } from './ports.js';
import { iso, MESSAGE_COLUMNS, rowToMessage, type MessageRow } from './rows.js';
import { STATE_COLUMNS, toSummary, updateOf, type SummaryState } from './summary.js';
import type { Tables } from './schema.js';

/** Rows per flush: bounds statement size (13 parameters a row) and the locks one transaction holds. */
export const MAX_BATCH = 256;

/** sha256 of the text: what "same content" means for a retried clientMessageId. */
export const contentHash = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

interface Pending {
  readonly msg: NewMessage;
  readonly id: string;
  readonly createdAt: string;
  readonly hash: string;
}

const idemKey = (tenantId: string, sessionId: string, senderId: string, cmid: string) =>
  `${tenantId}\u0000${sessionId}\u0000${senderId}\u0000${cmid}`;

export interface GroupCommitAcceptOptions {
  readonly logger: Logger;
  /** Called after each flush with its size (metrics). */
  readonly onFlush?: (size: number, ms: number) => void;
}

/** MessageStore.accept: messages group-committed, one transaction per flush. */
export class GroupCommitAccept {
  readonly #db: Kysely<Tables>;
  readonly #log: Logger;
  readonly #commit: GroupCommit<Pending, AcceptResult>;
  readonly #onFlush: ((size: number, ms: number) => void) | undefined;

  constructor(db: Kysely<Tables>, opts: GroupCommitAcceptOptions) {
    this.#db = db;
    this.#log = opts.logger;
    this.#onFlush = opts.onFlush;
    this.#commit = new GroupCommit((items) => this.#flush(items), { maxBatch: MAX_BATCH });
  }

  accept(msg: NewMessage): Promise<AcceptResult> {
    return this.#commit.submit({ msg, id: randomUUID(), createdAt: new Date().toISOString(), hash: contentHash(msg.text) });
  }

  /**
   * One transaction per message, bypassing group commit: the baseline the benchmark compares with
   * (scripts/bench/group-commit.mjs). Same semantics as accept().
   */
  async acceptSingle(msg: NewMessage): Promise<AcceptResult> {
    const [r] = await this.#flush([{ msg, id: randomUUID(), createdAt: new Date().toISOString(), hash: contentHash(msg.text) }]);
    if (!r!.ok) throw r!.error;
    return r!.value;
  }

  /** Resolves when no accept is queued or in flight. */
  idle(): Promise<void> {
    return this.#commit.idle();
  }

  async #flush(items: readonly Pending[]): Promise<Settled<AcceptResult>[]> {
    const started = performance.now();
    try {
      return await this.#write(items);
    } catch (err) {
      if (items.length > 1 && isRowError(err)) {
        this.#log.warn({ err, batch: items.length }, 'a group-commit batch failed on its data; retrying its rows one by one');
        const out: Settled<AcceptResult>[] = [];
        for (const item of items) out.push(await this.#writeOne(item));
        return out;
      }
      const error = isRowError(err) ? toRowRefusal(err) : err;
      return items.map(() => ({ ok: false as const, error }));
    } finally {
      this.#onFlush?.(items.length, performance.now() - started);
    }
  }

  async #writeOne(item: Pending): Promise<Settled<AcceptResult>> {
    try {
      return (await this.#write([item]))[0]!;
    } catch (err) {
      return { ok: false, error: isRowError(err) ? toRowRefusal(err) : err };
    }
  }

  /** One transaction for the batch. Throws when the transaction did not commit (or may not have). */
  async #write(items: readonly Pending[]): Promise<Settled<AcceptResult>[]> {
    // Errors from taking a connection (refused, timed out) surface here, outside the transaction.
    return this.#db
      .connection()
      .execute((conn) => this.#transaction(conn, items))
      .catch((err: unknown) => {
        throw toQueryError(err);
      });
  }

  async #transaction(conn: Kysely<Tables>, items: readonly Pending[]): Promise<Settled<AcceptResult>[]> {
    try {
      await sql`begin`.execute(conn);
    } catch (err) {
      throw toQueryError(err);
    }
    let results: Settled<AcceptResult>[];
    let writes: number;
    try {
      ({ results, writes } = await this.#statements(conn, items));
    } catch (err) {
      await sql`rollback`.execute(conn).catch(() => undefined);
      throw toQueryError(err);
    }
    if (writes === 0) {
      // Only duplicates, conflicts and foreign sessions: nothing to keep (the upsert only
      // touched updated_at). Roll back so those rows stay as they were.
      await sql`rollback`.execute(conn).catch(() => undefined);
      return results;
    }
    try {
      await sql`commit`.execute(conn);
    } catch (err) {
      await sql`rollback`.execute(conn).catch(() => undefined);
      throw toCommitError(err);
    }
    return results;
  }

  async #statements(conn: Kysely<Tables>, items: readonly Pending[]): Promise<{ results: Settled<AcceptResult>[]; writes: number }> {
    const now = items[0]!.createdAt;
    // 1. Upsert and lock the conversations, in session-id order. A row owned by another tenant is
    //    locked but not updated, so it is not returned: its items are refused as foreign.
    const owners = new Map<string, Pending>();
    for (const it of items) if (!owners.has(it.msg.sessionId)) owners.set(it.msg.sessionId, it);
    const sessions = [...owners.keys()].sort();
    const values = sessions.map((sid) => {
      const { msg } = owners.get(sid)!;
      return sql`(${randomUUID()}::uuid, ${msg.tenantId}, ${sid}, ${msg.conversation.userId ?? null}::text, ${msg.conversation.fingerprint ?? null}::text, ${now}::timestamptz, ${now}::timestamptz)`;
    });
    const { rows: convRows } = await sql<ConvRow>`
      insert into conversations as c (id, tenant_id, session_id, user_id, fingerprint, created_at, updated_at)
      values ${sql.join(values)}
      on conflict (session_id) do update set updated_at = excluded.updated_at
        where c.tenant_id = excluded.tenant_id
      returning ${STATE_COLUMNS}, c.unread_by_visitor, c.agents_read_seq, c.visitor_read_seq`.execute(conn);
    const convs = new Map(convRows.map((r) => [r.session_id, new ConvState(r)]));

    const results: Settled<AcceptResult>[] = new Array(items.length);
    const live: number[] = [];
    items.forEach((it, i) => {
      const conv = convs.get(it.msg.sessionId);
      if (!conv || conv.tenantId !== it.msg.tenantId) results[i] = { ok: true, value: { kind: 'foreign' } };
      else live.push(i);
    });

    // 2. Earlier messages with the same idempotency keys (the locks are held: no writer can race us).
    const keyed = live.filter((i) => items[i]!.msg.clientMessageId !== undefined);
    const existing = new Map<string, ChatMessage & { hash: string }>();
    if (keyed.length > 0) {
      // Every column of messages_idempotency_key, tenant first: without tenant_id the planner read
      // the conversation's whole history (or the table, in parallel) for each batch, so accepting
      // slowed down as conversations grew (ingest at 64 in flight fell from ~1,000 to ~450 msg/s
      // once its conversations held 60k messages).
      const { rows } = await sql<MessageRow>`
        select ${MESSAGE_COLUMNS}
        from unnest(${keyed.map((i) => items[i]!.msg.tenantId)}::text[],
                    ${keyed.map((i) => convs.get(items[i]!.msg.sessionId)!.id)}::uuid[],
                    ${keyed.map((i) => items[i]!.msg.sender.id)}::text[],
                    ${keyed.map((i) => items[i]!.msg.clientMessageId!)}::text[]) as k(tenant_id, conversation_id, sender_id, cmid)
        join messages m on m.tenant_id = k.tenant_id and m.conversation_id = k.conversation_id
          and m.sender_id = k.sender_id and m.client_message_id = k.cmid`.execute(conn);
      for (const r of rows) {
        existing.set(idemKey(r.tenant_id, r.session_id, r.sender_id, r.client_message_id!), { ...rowToMessage(r), hash: r.content_hash });
      }
    }

    // 3. Seqs in arrival order per conversation; duplicates within the batch answer like retries.
    //    A visitor's message to a resolved conversation reopens it first: the system message takes
    //    seq n, the message n+1.
    const inBatch = new Map<string, { message: ChatMessage; hash: string }>();
    const toInsert: { message: ChatMessage; convId: string; hash: string }[] = [];
    const created: { index: number; conv: ConvState; message: ChatMessage; before: ChatMessage[] }[] = [];
    for (const i of live) {
      const it = items[i]!;
      const { msg } = it;
      const key = msg.clientMessageId === undefined ? undefined : idemKey(msg.tenantId, msg.sessionId, msg.sender.id, msg.clientMessageId);
      const earlier = key === undefined ? undefined : (existing.get(key) ?? inBatch.get(key));
      if (earlier) {
        const message = 'message' in earlier ? earlier.message : stripHash(earlier);
        results[i] = {
          ok: true,
          value: earlier.hash === it.hash ? { kind: 'duplicate', message } : { kind: 'conflict', messageId: message.id },
        };
        continue;
      }
      const conv = convs.get(msg.sessionId)!;
      const before: ChatMessage[] = [];
      const fromVisitor = msg.sender.type === 'visitor' || msg.sender.type === 'user';
      if (fromVisitor && conv.status === 'resolved' && msg.reopenResolved !== false) {
        const event: ConversationEvent = {
          type: 'conversation.status_changed',
          from: 'resolved',
          to: 'open',
          by: { type: msg.sender.type as 'visitor' | 'user', id: msg.sender.id },
        };
        const system = systemMessage(msg.tenantId, msg.sessionId, ++conv.lastSeq, event, it.createdAt);
        conv.status = 'open';
        toInsert.push({ message: system, convId: conv.id, hash: contentHash(system.text) });
        before.push(system);
      }
      const message: ChatMessage = {
        id: it.id,
        tenantId: msg.tenantId,
        sessionId: msg.sessionId,
        seq: ++conv.lastSeq,
        sender: { type: msg.sender.type, id: msg.sender.id, verified: msg.sender.verified },
        text: msg.text,
        ...(msg.clientMessageId !== undefined ? { clientMessageId: msg.clientMessageId } : {}),
        createdAt: it.createdAt,
        meta: msg.meta,
      };
      conv.add(message);
      if (key !== undefined) inBatch.set(key, { message, hash: it.hash });
      toInsert.push({ message, convId: conv.id, hash: it.hash });
      created.push({ index: i, conv, message, before });
    }
    if (toInsert.length === 0) return { results, writes: 0 };

    // Each changed conversation's summary after the batch, as one conversation_updated event.
    const updates = new Map<ConvState, ConversationUpdate>();
    for (const { conv } of created) if (!updates.has(conv)) updates.set(conv, conv.update(now));
    for (const { index, conv, message, before } of created) {
      results[index] = { ok: true, value: { kind: 'created', message, outboxId: message.id, before, update: updates.get(conv)! } };
    }

    // 4. One statement: advance each conversation (seq, status, counters, pointers), insert the
    //    messages, their outbox rows and the conversation_updated events.
    const convValues: RawBuilder<unknown>[] = [...updates.keys()].map(
      (c) => sql`(${c.id}::uuid, ${c.lastSeq}::int, ${c.status}, ${c.messageCount}::int, ${c.unreadByAgents}::int,
        ${c.unreadByVisitor}::int, ${c.agentsReadSeq}::int, ${c.visitorReadSeq}::int, ${c.lastMessage?.id ?? null}::uuid,
        ${c.lastActivityAt}::timestamptz)`,
    );
    const messageValues = toInsert.map(({ message: m, convId, hash }) => {
      return sql`(${m.id}::uuid, ${m.tenantId}, ${convId}::uuid, ${m.sessionId}, ${m.seq}::int, ${m.sender.type}, ${m.sender.id},
        ${m.sender.verified}::boolean, ${m.text}::text, ${m.clientMessageId ?? null}::text, ${hash}, ${JSON.stringify(m.meta)}::text::jsonb,
        ${m.createdAt}::timestamptz)`;
    });
    const updateValues = [...updates.entries()].map(
      ([c, u]) => sql`(${u.id}::uuid, ${u.tenantId}, ${c.id}::uuid, ${u.version}::int, ${JSON.stringify(u)}::text::jsonb)`,
    );
    await sql`
      with advanced as (
        update conversations c set last_seq = v.last_seq, status = v.status, message_count = v.message_count,
          unread_by_agents = v.unread_by_agents, unread_by_visitor = v.unread_by_visitor,
          agents_read_seq = v.agents_read_seq, visitor_read_seq = v.visitor_read_seq,
          last_message_id = coalesce(v.last_message_id, c.last_message_id), last_activity_at = v.last_activity_at
        from (values ${sql.join(convValues)}) as v(id, last_seq, status, message_count, unread_by_agents, unread_by_visitor,
          agents_read_seq, visitor_read_seq, last_message_id, last_activity_at)
        where c.id = v.id
      ), events as (
        insert into conversation_outbox (id, tenant_id, conversation_id, version, summary)
        values ${sql.join(updateValues)}
      ), inserted as (
        insert into messages (id, tenant_id, conversation_id, session_id, seq, sender_type, sender_id, sender_verified,
                              text, client_message_id, content_hash, meta, created_at)
        values ${sql.join(messageValues)}
        returning id
      )
      insert into outbox (message_id) select id from inserted`.execute(conn);
    return { results, writes: toInsert.length };
  }
}

type ConvRow = SummaryState & {
  unread_by_visitor: number | string;
  agents_read_seq: number | string;
  visitor_read_seq: number | string;
};

/** A conversation as a flush advances it, message by message, under its row lock. */
class ConvState {
  readonly id: string;
  readonly tenantId: string;
  lastSeq: number;
  status: ConversationStatus;
  messageCount: number;
  unreadByAgents: number;
  unreadByVisitor: number;
  agentsReadSeq: number;
  visitorReadSeq: number;
  lastMessage: ChatMessage | undefined;
  lastActivityAt: string | null;
  readonly #row: ConvRow;

  constructor(r: ConvRow) {
    this.#row = r;
    this.id = r.id;
    this.tenantId = r.tenant_id;
    this.lastSeq = Number(r.last_seq);
    this.status = r.status as ConversationStatus;
    this.messageCount = Number(r.message_count);
    this.unreadByAgents = Number(r.unread_by_agents);
    this.unreadByVisitor = Number(r.unread_by_visitor);
    this.agentsReadSeq = Number(r.agents_read_seq);
    this.visitorReadSeq = Number(r.visitor_read_seq);
    this.lastActivityAt = r.last_activity_at === null ? null : iso(r.last_activity_at);
  }

  /**
   * Counts a new message. Its sender's side has read everything up to it (a reply implies
   * reading), and the other side has one more unread.
   */
  add(m: ChatMessage): void {
    this.messageCount += 1;
    this.lastMessage = m;
    this.lastActivityAt = m.createdAt;
    if (m.sender.type === 'agent') {
      this.agentsReadSeq = m.seq;
      this.unreadByAgents = 0;
      this.unreadByVisitor += 1;
    } else {
      this.visitorReadSeq = m.seq;
      this.unreadByVisitor = 0;
      this.unreadByAgents += 1;
    }
  }

  update(at: string): ConversationUpdate {
    const state: SummaryState = {
      ...this.#row,
      status: this.status,
      unread_by_agents: this.unreadByAgents,
      message_count: this.messageCount,
      last_seq: this.lastSeq,
      last_activity_at: this.lastActivityAt,
    };
    const m = this.lastMessage!;
    return updateOf(state, toSummary(state, { id: m.id, text: m.text, sender: m.sender, createdAt: m.createdAt }), at);
  }
}

/** A system message recording a change (its text for people, `meta.event` for programs). */
export function systemMessage(tenantId: string, sessionId: string, seq: number, event: ConversationEvent, createdAt: string): ChatMessage {
  return {
    id: randomUUID(),
    tenantId,
    sessionId,
    seq,
    sender: SYSTEM_SENDER,
    text: systemText(event),
    createdAt,
    meta: { ...emptyMeta(), event },
  };
}

export const SYSTEM_SENDER = { type: 'system', id: 'chatd', verified: true } as const;

function stripHash(m: ChatMessage & { hash: string }): ChatMessage {
  const { hash: _hash, ...message } = m;
  return message;
}
