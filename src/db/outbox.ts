// The outbox table: accept() writes a row per message in the same transaction; the relay deletes it
// once the message is published. Rows left behind (a crash between commit and publish, Redis down)
// are claimed by any node's sweep.
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { toQueryError } from './db-errors.js';
import { MESSAGE_COLUMNS, rowToMessage, type MessageRow } from './rows.js';
import { SUMMARY_COLUMNS, toSummary, updateOf, type SummaryRow } from './summary.js';
import type { ChatMessage } from '../chat/message.js';
import type { ConversationUpdate } from '../chat/conversation.js';
import type { ConversationOutbox, Outbox, OutboxEntry } from './ports.js';
import type { Tables } from './schema.js';

type Row = MessageRow;

export class KyselyOutbox implements Outbox {
  readonly #db: Kysely<Tables>;
  /**
   * PostgreSQL: hold the claimed rows locked while publishing, so concurrent sweeps on other nodes
   * skip them. PGlite: one process owns the database, there is nobody to skip, and holding its
   * only connection while publishing would stall every other query — claim without a transaction.
   */
  readonly #lockWhilePublishing: boolean;

  constructor(db: Kysely<Tables>, opts: { lockWhilePublishing: boolean }) {
    this.#db = db;
    this.#lockWhilePublishing = opts.lockWhilePublishing;
  }

  async claimStale(minAgeMs: number, limit: number, handle: (entries: OutboxEntry[]) => Promise<string[]>): Promise<number> {
    const select = (lock: boolean) => sql<Row>`
      select ${MESSAGE_COLUMNS}
      from outbox o join messages m on m.id = o.message_id
      where o.created_at < now() - make_interval(secs => ${minAgeMs / 1000}::float8)
      order by o.created_at, m.seq
      limit ${Math.max(1, Math.floor(limit))}
      ${lock ? sql`for update of o skip locked` : sql``}`;
    const toEntries = (rows: Row[]) => rows.map((r) => ({ id: r.id, message: rowToMessage(r) }));
    return sweep(this.#db, this.#lockWhilePublishing, select, toEntries, handle, deleteMessageRows);
  }

  markDone(ids: readonly string[]): Promise<void> {
    return markDone(this.#db, ids, deleteMessageRows);
  }

  async markAllDone(messageIds: readonly string[], updateIds: readonly string[]): Promise<void> {
    if (updateIds.length === 0) return markDone(this.#db, messageIds, deleteMessageRows);
    if (messageIds.length === 0) return markDone(this.#db, updateIds, deleteUpdateRows);
    try {
      await sql`with m as (${deleteMessageRows(messageIds)}) ${deleteUpdateRows(updateIds)}`.execute(this.#db);
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async createdSince(
    tenantId: string,
    since: string,
    after: { createdAt: string; id: string } | undefined,
    limit: number,
  ): Promise<ChatMessage[]> {
    try {
      const { rows } = await sql<Row>`
        select m.id, m.tenant_id, m.session_id, m.seq, m.sender_type, m.sender_id, m.sender_verified, m.text,
               m.client_message_id, m.content_hash, m.meta, m.created_at
        from messages m
        where m.tenant_id = ${tenantId} and m.created_at >= ${since}::timestamptz
          ${after ? sql`and (m.created_at, m.id) > (${after.createdAt}::timestamptz, ${after.id}::uuid)` : sql``}
        order by m.created_at, m.id
        limit ${Math.max(1, Math.floor(limit))}`.execute(this.#db);
      return rows.map(rowToMessage);
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async activeSince(
    tenantId: string,
    since: string,
    after: { lastActivityAt: string; sessionId: string } | undefined,
    limit: number,
  ): Promise<ConversationUpdate[]> {
    try {
      const { rows } = await sql<SummaryRow>`
        select ${SUMMARY_COLUMNS}
        from conversations c left join messages lm on lm.id = c.last_message_id
        where c.tenant_id = ${tenantId} and c.last_activity_at >= ${since}::timestamptz
          ${after ? sql`and (c.last_activity_at, c.session_id) > (${after.lastActivityAt}::timestamptz, ${after.sessionId})` : sql``}
        order by c.last_activity_at, c.session_id
        limit ${Math.max(1, Math.floor(limit))}`.execute(this.#db);
      const at = new Date().toISOString();
      return rows.map((r) => updateOf(r, toSummary(r, r), at));
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async pendingCount(): Promise<number> {
    try {
      const { rows } = await sql<{ n: string | number }>`select count(*) as n from outbox`.execute(this.#db);
      return Number(rows[0]?.n ?? 0);
    } catch (err) {
      throw toQueryError(err);
    }
  }
}

/**
 * The conversation_outbox table: conversation_updated events written in the transaction that changed
 * the conversation, deleted once published; claimed by the relay's sweep like message rows.
 */
export class KyselyConversationOutbox implements ConversationOutbox {
  readonly #db: Kysely<Tables>;
  readonly #lockWhilePublishing: boolean;

  constructor(db: Kysely<Tables>, opts: { lockWhilePublishing: boolean }) {
    this.#db = db;
    this.#lockWhilePublishing = opts.lockWhilePublishing;
  }

  async claimStale(minAgeMs: number, limit: number, handle: (updates: ConversationUpdate[]) => Promise<string[]>): Promise<number> {
    const select = (lock: boolean) => sql<{ summary: unknown }>`
      select summary from conversation_outbox
      where created_at < now() - make_interval(secs => ${minAgeMs / 1000}::float8)
      order by created_at, version
      limit ${Math.max(1, Math.floor(limit))}
      ${lock ? sql`for update skip locked` : sql``}`;
    const toUpdates = (rows: { summary: unknown }[]) =>
      rows.map((r) => (typeof r.summary === 'string' ? JSON.parse(r.summary) : r.summary) as ConversationUpdate);
    return sweep(this.#db, this.#lockWhilePublishing, select, toUpdates, handle, deleteUpdateRows);
  }

  markDone(ids: readonly string[]): Promise<void> {
    return markDone(this.#db, ids, deleteUpdateRows);
  }

  async pendingCount(): Promise<number> {
    try {
      const { rows } = await sql<{ n: string | number }>`select count(*) as n from conversation_outbox`.execute(this.#db);
      return Number(rows[0]?.n ?? 0);
    } catch (err) {
      throw toQueryError(err);
    }
  }
}

const deleteMessageRows = (ids: readonly string[]) => sql`delete from outbox where message_id = any(${[...ids]}::uuid[])`;
const deleteUpdateRows = (ids: readonly string[]) => sql`delete from conversation_outbox where id = any(${[...ids]}::uuid[])`;

async function markDone(
  db: Kysely<Tables>,
  ids: readonly string[],
  remove: (ids: readonly string[]) => RawBuilder<unknown>,
): Promise<void> {
  if (ids.length === 0) return;
  try {
    await remove(ids).execute(db);
  } catch (err) {
    throw toQueryError(err);
  }
}

/**
 * One sweep of an outbox table: claims the rows `select` finds, hands them to `handle` (which answers
 * the ids it published) and deletes those. With `lock`, the claimed rows stay locked (the select's
 * FOR UPDATE SKIP LOCKED) in one transaction while they are published, so other nodes' sweeps skip
 * them; without it (PGlite) they are read, published and deleted without a transaction.
 */
async function sweep<Row, Item>(
  db: Kysely<Tables>,
  lock: boolean,
  select: (lock: boolean) => RawBuilder<Row>,
  toItems: (rows: Row[]) => Item[],
  handle: (items: Item[]) => Promise<string[]>,
  remove: (ids: readonly string[]) => RawBuilder<unknown>,
): Promise<number> {
  if (!lock) {
    let rows: Row[];
    try {
      rows = (await select(false).execute(db)).rows;
    } catch (err) {
      throw toQueryError(err);
    }
    if (rows.length === 0) return 0;
    await markDone(db, await handle(toItems(rows)), remove);
    return rows.length;
  }
  const locked = db.connection().execute(async (conn) => {
    try {
      await sql`begin`.execute(conn);
      const { rows } = await select(true).execute(conn);
      if (rows.length > 0) {
        const done = await handle(toItems(rows));
        if (done.length > 0) await remove(done).execute(conn);
      }
      await sql`commit`.execute(conn);
      return rows.length;
    } catch (err) {
      await sql`rollback`.execute(conn).catch(() => undefined);
      throw toQueryError(err);
    }
  });
  // Errors from taking a connection surface outside the callback.
  return locked.catch((err: unknown) => {
    throw toQueryError(err);
  });
}
