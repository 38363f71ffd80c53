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
import type { ChatMessage, MessageMeta, SenderType } from '../chat/message.js';
import { ChatdError } from '../errors.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { isRowError, toCommitError, toQueryError, toRowRefusal } from './db-errors.js';
import { GroupCommit, type Settled } from './group-commit.js';
import type {
  AcceptResult,
  Conversation,
  EnsureConversationResult,
  HistoryPage,
  HistoryQuery,
  MessageStore,
  NewMessage,
  EraseSubject,
  DatabaseErasure,
} from './ports.js';
import type { Tables } from './schema.js';

/** Rows per flush: bounds statement size (13 parameters a row) and the locks one transaction holds. */
export const MAX_BATCH = 256;
/** Largest page of history or recovery a caller may ask for. */
export const MAX_PAGE = 1000;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** sha256 of the text: what "same content" means for a retried clientMessageId. */
export const contentHash = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

interface Pending {
  readonly msg: NewMessage;
  readonly id: string;
  readonly createdAt: string;
  readonly hash: string;
}

interface MessageRow {
  id: string;
  tenant_id: string;
  session_id: string;
  seq: number;
  sender_type: string;
  sender_id: string;
  sender_verified: boolean;
  text: string;
  client_message_id: string | null;
  content_hash: string;
  meta: unknown;
  created_at: Date | string;
}

interface ConversationRow {
  id: string;
  tenant_id: string;
  session_id: string;
  user_id: string | null;
  fingerprint: string | null;
  status: string;
  last_seq: number;
  created_at: Date | string;
  updated_at: Date | string;
}

const MESSAGE_COLUMNS = sql.raw(
  'm.id, m.tenant_id, m.session_id, m.seq, m.sender_type, m.sender_id, m.sender_verified, m.text, m.client_message_id, m.content_hash, m.meta, m.created_at',
);

/** A conversation's id within its tenant, as a scalar subquery (null: none, or another tenant's). */
const conversationOf = (tenantId: string, sessionId: string) =>
  sql`(select id from conversations where session_id = ${sessionId} and tenant_id = ${tenantId})`;

const iso = (v: Date | string) => (v instanceof Date ? v : new Date(v)).toISOString();

export function rowToMessage(r: MessageRow): ChatMessage {
  const meta = (typeof r.meta === 'string' ? JSON.parse(r.meta) : r.meta) as MessageMeta;
  return {
    id: r.id,
    tenantId: r.tenant_id,
    sessionId: r.session_id,
    seq: Number(r.seq),
    sender: { type: r.sender_type as SenderType, id: r.sender_id, verified: r.sender_verified },
    text: r.text,
    ...(r.client_message_id !== null ? { clientMessageId: r.client_message_id } : {}),
    createdAt: iso(r.created_at),
    meta,
  };
}

function rowToConversation(r: ConversationRow): Conversation {
  return {
    tenantId: r.tenant_id,
    sessionId: r.session_id,
    userId: r.user_id,
    fingerprint: r.fingerprint,
    status: r.status === 'closed' ? 'closed' : 'open',
    lastSeq: Number(r.last_seq),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

const idemKey = (tenantId: string, sessionId: string, senderId: string, cmid: string) =>
  `${tenantId}\u0000${sessionId}\u0000${senderId}\u0000${cmid}`;

export interface KyselyMessageStoreOptions {
  readonly logger: Logger;
  /** Called after each flush with its size (metrics). */
  readonly onFlush?: (size: number, ms: number) => void;
}

export class KyselyMessageStore implements MessageStore {
  readonly #db: Kysely<Tables>;
  readonly #log: Logger;
  readonly #commit: GroupCommit<Pending, AcceptResult>;
  /** getConversation, grouped: one `session_id in (…)` query for every lookup that queued behind the one in flight. */
  readonly #conversationReads: GroupCommit<{ readonly tenantId: string; readonly sessionId: string }, Conversation | null>;
  readonly #onFlush: ((size: number, ms: number) => void) | undefined;

  constructor(db: Kysely<Tables>, opts: KyselyMessageStoreOptions) {
    this.#db = db;
    this.#log = opts.logger;
    this.#onFlush = opts.onFlush;
    this.#commit = new GroupCommit((items) => this.#flush(items), { maxBatch: MAX_BATCH });
    this.#conversationReads = new GroupCommit((items) => this.#readConversations(items), { maxBatch: MAX_BATCH });
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
    return this.#db.connection().execute((conn) => this.#transaction(conn, items)).catch((err: unknown) => {
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
    const { rows: convRows } = await sql<{ id: string; tenant_id: string; session_id: string; last_seq: number }>`
      insert into conversations (id, tenant_id, session_id, user_id, fingerprint, created_at, updated_at)
      values ${sql.join(values)}
      on conflict (session_id) do update set updated_at = excluded.updated_at
        where conversations.tenant_id = excluded.tenant_id
      returning id, tenant_id, session_id, last_seq`.execute(conn);
    const convs = new Map(convRows.map((r) => [r.session_id, { id: r.id, tenantId: r.tenant_id, lastSeq: Number(r.last_seq) }]));

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
    const inBatch = new Map<string, { message: ChatMessage; hash: string }>();
    const toInsert: { it: Pending; convId: string; seq: number }[] = [];
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
      conv.lastSeq += 1;
      const message: ChatMessage = {
        id: it.id,
        tenantId: msg.tenantId,
        sessionId: msg.sessionId,
        seq: conv.lastSeq,
        sender: { type: msg.sender.type, id: msg.sender.id, verified: msg.sender.verified },
        text: msg.text,
        ...(msg.clientMessageId !== undefined ? { clientMessageId: msg.clientMessageId } : {}),
        createdAt: it.createdAt,
        meta: msg.meta,
      };
      if (key !== undefined) inBatch.set(key, { message, hash: it.hash });
      toInsert.push({ it, convId: conv.id, seq: conv.lastSeq });
      results[i] = { ok: true, value: { kind: 'created', message, outboxId: it.id } };
    }
    if (toInsert.length === 0) return { results, writes: 0 };

    // 4. One statement: advance last_seq, insert the messages, insert their outbox rows.
    const advanced = [...new Map(toInsert.map((r) => [r.convId, r.seq])).entries()];
    const lastSeqs: RawBuilder<unknown>[] = advanced.map(([id, seq]) => sql`(${id}::uuid, ${seq}::int)`);
    const messageValues = toInsert.map(({ it, convId, seq }) => {
      const m = it.msg;
      return sql`(${it.id}::uuid, ${m.tenantId}, ${convId}::uuid, ${m.sessionId}, ${seq}::int, ${m.sender.type}, ${m.sender.id},
        ${m.sender.verified}::boolean, ${m.text}::text, ${m.clientMessageId ?? null}::text, ${it.hash}, ${JSON.stringify(m.meta)}::text::jsonb,
        ${it.createdAt}::timestamptz)`;
    });
    await sql`
      with advanced as (
        update conversations c set last_seq = v.last_seq
        from (values ${sql.join(lastSeqs)}) as v(id, last_seq)
        where c.id = v.id
      ), inserted as (
        insert into messages (id, tenant_id, conversation_id, session_id, seq, sender_type, sender_id, sender_verified,
                              text, client_message_id, content_hash, meta, created_at)
        values ${sql.join(messageValues)}
        returning id
      )
      insert into outbox (message_id) select id from inserted`.execute(conn);
    return { results, writes: toInsert.length };
  }

  async ensureConversation(
    tenantId: string,
    sessionId: string,
    owner: { userId?: string; fingerprint?: string },
  ): Promise<EnsureConversationResult> {
    try {
      const created = await this.#db
        .insertInto('conversations')
        .values({
          id: randomUUID(),
          tenant_id: tenantId,
          session_id: sessionId,
          user_id: owner.userId ?? null,
          fingerprint: owner.fingerprint ?? null,
        })
        .onConflict((oc) => oc.column('session_id').doNothing())
        .returningAll()
        .executeTakeFirst();
      if (created) return { kind: 'created', conversation: rowToConversation(created as unknown as ConversationRow) };
      const row = await this.#db.selectFrom('conversations').selectAll().where('session_id', '=', sessionId).executeTakeFirst();
      if (!row) {
        // Deleted between the two statements (retention): try once more.
        return this.ensureConversation(tenantId, sessionId, owner);
      }
      if (row.tenant_id !== tenantId) return { kind: 'foreign' };
      return { kind: 'existing', conversation: rowToConversation(row as unknown as ConversationRow) };
    } catch (err) {
      throw toQueryError(err);
    }
  }

  /**
   * A conversation by session, within its tenant. Every ws connect asks this once for its stream's
   * head, so lookups are grouped like commits: the first goes at once, those arriving while it runs
   * share the next query (a burst of 200 connects measured ~15% of the accept path's CPU in
   * one-row queries before).
   */
  getConversation(tenantId: string, sessionId: string): Promise<Conversation | null> {
    return this.#conversationReads.submit({ tenantId, sessionId });
  }

  async #readConversations(items: readonly { tenantId: string; sessionId: string }[]): Promise<Settled<Conversation | null>[]> {
    try {
      const sessions = [...new Set(items.map((i) => i.sessionId))];
      const rows = await this.#db.selectFrom('conversations').selectAll().where('session_id', 'in', sessions).execute();
      const bySession = new Map(rows.map((r) => [r.session_id, r]));
      return items.map((i) => {
        const row = bySession.get(i.sessionId);
        // session_id is unique across tenants: another tenant's row is as good as none.
        return { ok: true as const, value: row && row.tenant_id === i.tenantId ? rowToConversation(row as unknown as ConversationRow) : null };
      });
    } catch (err) {
      const error = toQueryError(err);
      return items.map(() => ({ ok: false as const, error }));
    }
  }

  async history(q: HistoryQuery): Promise<HistoryPage> {
    const limit = Number.isFinite(q.limit) ? Math.max(1, Math.min(MAX_PAGE, Math.floor(q.limit))) : MAX_PAGE;
    const cursor = q.before === undefined ? undefined : decodeCursor(q.before);
    try {
      if (q.sessionId !== undefined) {
        if (cursor && cursor.kind !== 'seq') throw invalidCursor();
        // The conversation as a scalar subquery: the page is then read backwards along
        // messages_conversation_seq_key, `limit` rows however long the conversation (as a join,
        // PostgreSQL read the whole conversation and sorted it for every page).
        const { rows } = await sql<MessageRow>`
          select ${MESSAGE_COLUMNS}
          from messages m
          where m.conversation_id = ${conversationOf(q.tenantId, q.sessionId)}
            ${cursor ? sql`and m.seq < ${cursor.value}::int` : sql``}
          order by m.seq desc
          limit ${limit + 1}`.execute(this.#db);
        const page = rows.slice(0, limit).reverse();
        return {
          messages: page.map(rowToMessage),
          nextCursor: rows.length > limit ? encodeCursor({ kind: 'seq', value: Number(page[0]!.seq) }) : null,
        };
      }
      if (q.userId !== undefined) {
        if (cursor && cursor.kind !== 'pos') throw invalidCursor();
        const { rows } = await sql<MessageRow & { pos_text: string }>`
          select ${MESSAGE_COLUMNS}, m.pos::text as pos_text
          from conversations c join messages m on m.conversation_id = c.id
          where c.tenant_id = ${q.tenantId} and c.user_id = ${q.userId}
            ${cursor ? sql`and m.pos < ${cursor.value}::bigint` : sql``}
          order by m.pos desc
          limit ${limit + 1}`.execute(this.#db);
        const page = rows.slice(0, limit).reverse();
        return {
          messages: page.map(rowToMessage),
          nextCursor: rows.length > limit ? encodeCursor({ kind: 'pos', value: Number(page[0]!.pos_text) }) : null,
        };
      }
    } catch (err) {
      throw toQueryError(err);
    }
    throw new ChatdError('validation_failed', 'History needs a sessionId or a userId', {
      details: [{ path: 'sessionId', message: 'sessionId or userId is required' }],
    });
  }

  async since(tenantId: string, sessionId: string, afterSeq: number, limit: number): Promise<ChatMessage[]> {
    const n = Number.isFinite(limit) ? Math.max(1, Math.min(MAX_PAGE, Math.floor(limit))) : MAX_PAGE;
    // seq is an integer column: anything past its range means "nothing after it".
    const after = Number.isFinite(afterSeq) ? Math.max(0, Math.min(2_147_483_647, Math.floor(afterSeq))) : 0;
    try {
      const { rows } = await sql<MessageRow>`
        select ${MESSAGE_COLUMNS}
        from messages m
        where m.conversation_id = ${conversationOf(tenantId, sessionId)} and m.seq > ${after}::int
        order by m.seq
        limit ${n}`.execute(this.#db);
      return rows.map(rowToMessage);
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async markRead(tenantId: string, sessionId: string, readerId: string, messageId: string): Promise<boolean> {
    if (!UUID_RE.test(messageId)) return false;
    try {
      const target = await sql<{ conversation_id: string; seq: number }>`
        select m.conversation_id, m.seq
        from conversations c join messages m on m.conversation_id = c.id
        where c.session_id = ${sessionId} and c.tenant_id = ${tenantId} and m.id = ${messageId}::uuid`.execute(this.#db);
      const row = target.rows[0];
      if (!row) return false;
      // A pointer only moves forward: a late "read" of an older message does not move it back.
      await sql`
        insert into read_pointers (conversation_id, reader_id, tenant_id, message_id, seq, updated_at)
        values (${row.conversation_id}::uuid, ${readerId}, ${tenantId}, ${messageId}::uuid, ${row.seq}::int, now())
        on conflict (conversation_id, reader_id) do update
          set message_id = excluded.message_id, seq = excluded.seq, updated_at = excluded.updated_at
          where read_pointers.seq < excluded.seq`.execute(this.#db);
      return true;
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async deleteMessagesBefore(tenantId: string, before: Date, limit: number): Promise<number> {
    try {
      return await this.#db.transaction().execute(async (tx) => {
        // One node at a time per tenant (issue 12): a node that finds the tenant's advisory lock
        // taken deletes nothing this round (0 ends its loop); the holder carries on. SKIP LOCKED
        // still keeps a batch from waiting on rows an erasure holds.
        const lock = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(hashtext(${`chatd:retention:${tenantId}`})) as ok`.execute(tx);
        if (!lock.rows[0]?.ok) return 0;
        const r = await sql`
          delete from messages where id in (
            select id from messages
            where tenant_id = ${tenantId} and created_at < ${before.toISOString()}::timestamptz
            limit ${Math.max(1, Math.floor(limit))}
            for update skip locked)`.execute(tx);
        return Number(r.numAffectedRows ?? 0);
      });
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async eraseSubject(tenantId: string, subject: EraseSubject, opts: { dryRun: boolean }): Promise<DatabaseErasure> {
    try {
      return await this.#db.transaction().execute(async (tx) => {
        const bySession = 'sessionId' in subject;
        const convs = await sql<{ id: string; session_id: string }>`
          select id, session_id from conversations
          where tenant_id = ${tenantId} and ${bySession ? sql`session_id = ${subject.sessionId}` : sql`user_id = ${subject.userId}`}
          for update`.execute(tx);
        const ids = convs.rows.map((r) => r.id);
        const count = async (q: RawBuilder<{ n: string | number }>) => Number((await q.execute(tx)).rows[0]?.n ?? 0);
        const inConvs = ids.length > 0 ? sql`conversation_id in (${sql.join(ids)})` : sql`false`;
        const messages = await count(sql`select count(*) as n from messages where ${inConvs}`);
        const outboxRows = await count(sql`select count(*) as n from outbox o join messages m on m.id = o.message_id where ${inConvs}`);
        // A user's read pointers in conversations that stay (e.g. an agent's reads elsewhere).
        const readerFilter = bySession ? sql`false` : sql`(tenant_id = ${tenantId} and reader_id = ${subject.userId})`;
        const readPointers = await count(sql`select count(*) as n from read_pointers where ${inConvs} or ${readerFilter}`);
        if (!opts.dryRun) {
          await sql`delete from read_pointers where ${inConvs} or ${readerFilter}`.execute(tx);
          // messages, their outbox rows and read pointers go with them (on delete cascade).
          if (ids.length > 0) await sql`delete from conversations where id in (${sql.join(ids)})`.execute(tx);
        }
        return { sessionIds: convs.rows.map((r) => r.session_id), conversations: ids.length, messages, readPointers, outboxRows };
      });
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async readPointers(tenantId: string, sessionId: string): Promise<{ readerId: string; messageId: string; seq: number; at: string }[]> {
    try {
      const { rows } = await sql<{ reader_id: string; message_id: string; seq: number; updated_at: Date | string }>`
        select r.reader_id, r.message_id, r.seq, r.updated_at
        from conversations c join read_pointers r on r.conversation_id = c.id
        where c.session_id = ${sessionId} and c.tenant_id = ${tenantId}
        order by r.reader_id`.execute(this.#db);
      return rows.map((r) => ({ readerId: r.reader_id, messageId: r.message_id, seq: Number(r.seq), at: iso(r.updated_at) }));
    } catch (err) {
      throw toQueryError(err);
    }
  }
}

function stripHash(m: ChatMessage & { hash: string }): ChatMessage {
  const { hash: _hash, ...message } = m;
  return message;
}

function invalidCursor(): ChatdError {
  return new ChatdError('validation_failed', 'Invalid cursor', { details: [{ path: 'before', message: 'not a cursor from this history' }] });
}
