// The agents' side of conversations: the inbox list (keyset-paged on the conversations_inbox_*
// indexes, every one starting with the tenant), one summary, and status/assignee changes — each a
// system message taking the next seq under the conversation's row lock, with its outbox row and a
// conversation_updated event, in one transaction.
import { sql, type Kysely } from 'kysely';
import type { Actor, ConversationEvent, ConversationStatus, ConversationSummary, ConversationUpdate } from '../chat/conversation.js';
import { ChatdError } from '../errors.js';
import { contentHash, systemMessage } from './accept.js';
import { toQueryError } from './db-errors.js';
import type { ChangeResult, ConversationChange, ConversationPage, ConversationQuery, ConversationStore } from './ports.js';
import { iso } from './rows.js';
import type { Tables } from './schema.js';
import { insertUpdates, SUMMARY_COLUMNS, toSummary, updateOf, type SummaryRow, type SummaryState } from './summary.js';

/** Largest inbox page. */
export const MAX_INBOX_PAGE = 200;

export interface InboxCursor {
  readonly at: string;
  readonly id: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function invalidCursor(): ChatdError {
  return new ChatdError('validation_failed', 'Invalid cursor', { details: [{ path: 'before', message: 'not a cursor chatd returned' }] });
}

export function encodeInboxCursor(c: InboxCursor): string {
  return Buffer.from(`v1:c:${c.at}|${c.id}`, 'utf8').toString('base64url');
}

export function decodeInboxCursor(raw: string): InboxCursor {
  if (raw.length === 0 || raw.length > 128 || !/^[A-Za-z0-9_-]+$/.test(raw)) throw invalidCursor();
  const m = /^v1:c:([0-9T:.Z-]{20,30})\|([0-9a-f-]{36})$/.exec(Buffer.from(raw, 'base64url').toString('utf8'));
  if (!m || !UUID_RE.test(m[2]!) || Number.isNaN(Date.parse(m[1]!))) throw invalidCursor();
  return { at: m[1]!, id: m[2]! };
}

/**
 * One page of the inbox. Each filter shape matches one index's leading columns: (tenant_id[,
 * assignee][, status], last_activity_at desc, id desc) where last_activity_at is not null. The page
 * is then an index range read of `rows` rows in index order (no sort), however many conversations
 * the tenant has. Exported for the plan test.
 */
export function inboxPageQuery(q: Omit<ConversationQuery, 'before' | 'limit'>, cursor: InboxCursor | undefined, rows: number) {
  return sql<SummaryRow>`
    select ${SUMMARY_COLUMNS}
    from conversations c left join messages lm on lm.id = c.last_message_id
    where c.tenant_id = ${q.tenantId} and c.last_activity_at is not null
      ${q.status !== undefined ? sql`and c.status = ${q.status}` : sql``}
      ${q.assignee === undefined ? sql`` : q.assignee === null ? sql`and c.assignee is null` : sql`and c.assignee = ${q.assignee}`}
      ${cursor ? sql`and (c.last_activity_at, c.id) < (${cursor.at}::timestamptz, ${cursor.id}::uuid)` : sql``}
    order by c.last_activity_at desc, c.id desc
    limit ${rows}`;
}

export class KyselyConversationStore implements ConversationStore {
  readonly #db: Kysely<Tables>;

  constructor(db: Kysely<Tables>) {
    this.#db = db;
  }

  async list(q: ConversationQuery): Promise<ConversationPage> {
    const limit = Math.max(1, Math.min(MAX_INBOX_PAGE, Math.floor(q.limit)));
    const cursor = q.before === undefined ? undefined : decodeInboxCursor(q.before);
    try {
      const { rows } = await inboxPageQuery(q, cursor, limit + 1).execute(this.#db);
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        conversations: page.map((r) => toSummary(r, r)),
        nextCursor: rows.length > limit && last ? encodeInboxCursor({ at: iso(last.last_activity_at!), id: last.id }) : null,
      };
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async summary(tenantId: string, sessionId: string): Promise<{ conversation: ConversationSummary; version: number } | null> {
    try {
      const { rows } = await sql<SummaryRow>`
        select ${SUMMARY_COLUMNS}
        from conversations c left join messages lm on lm.id = c.last_message_id
        where c.session_id = ${sessionId} and c.tenant_id = ${tenantId}`.execute(this.#db);
      const r = rows[0];
      return r ? { conversation: toSummary(r, r), version: Number(r.version) } : null;
    } catch (err) {
      throw toQueryError(err);
    }
  }

  change(tenantId: string, sessionId: string, change: ConversationChange, by: Actor): Promise<ChangeResult> {
    return this.#transaction(async (tx) => {
      const r = await lockSummary(tx, tenantId, sessionId);
      if (!r) return { kind: 'not_found' };
      const event = eventFor(r, change, by);
      if (!event) return { kind: 'unchanged', conversation: toSummary(r, r), version: Number(r.version) };
      return record(tx, r, event);
    });
  }

  autoAssign(tenantId: string, sessionId: string, candidates: readonly string[], cap: number): Promise<ChangeResult> {
    return this.#transaction(async (tx) => {
      // The tenant's cursor row, locked first: one automatic assignment at a time per tenant, so the
      // caps counted below cannot be raced past.
      await sql`insert into auto_assign_cursor (tenant_id, last_agent_id) values (${tenantId}, '')
                on conflict (tenant_id) do nothing`.execute(tx);
      const cursorRow = await sql<{ last_agent_id: string }>`
        select last_agent_id from auto_assign_cursor where tenant_id = ${tenantId} for update`.execute(tx);
      const r = await lockSummary(tx, tenantId, sessionId);
      if (!r) return { kind: 'not_found' };
      const unchanged = { kind: 'unchanged' as const, conversation: toSummary(r, r), version: Number(r.version) };
      if (r.assignee !== null || r.status !== 'open' || candidates.length === 0) return unchanged;
      const agents = [...new Set(candidates)].sort();
      const { rows: loads } = await sql<{ assignee: string; n: string | number }>`
        select assignee, count(*) as n from conversations
        where tenant_id = ${tenantId} and assignee = any(${agents}::text[]) and status = 'open' and last_activity_at is not null
        group by assignee`.execute(tx);
      const load = new Map(loads.map((l) => [l.assignee, Number(l.n)]));
      // Round robin: the first agent after the last one given a conversation, wrapping around.
      const last = cursorRow.rows[0]?.last_agent_id ?? '';
      const start = agents.findIndex((a) => a > last);
      const order = start < 0 ? agents : [...agents.slice(start), ...agents.slice(0, start)];
      const chosen = order.find((a) => (load.get(a) ?? 0) < cap);
      if (chosen === undefined) return unchanged;
      await sql`update auto_assign_cursor set last_agent_id = ${chosen}, updated_at = now() where tenant_id = ${tenantId}`.execute(tx);
      return record(tx, r, { type: 'conversation.assigned', from: null, to: chosen, by: { type: 'system', id: 'auto-assign' } });
    });
  }

  announce(tenantId: string, sessionId: string): Promise<ConversationUpdate | null> {
    return this.#transaction(async (tx) => {
      const r = await lockSummary(tx, tenantId, sessionId);
      // Not in the inbox yet (no message or change): its first message's event will carry it.
      if (!r || r.last_activity_at === null) return null;
      // A new event: the next version (the row is locked), so it supersedes the message's.
      await sql`update conversations set version = version + 1 where id = ${r.id}::uuid`.execute(tx);
      const state: SummaryRow = { ...r, version: Number(r.version) + 1 };
      const update = updateOf(state, toSummary(state, state), new Date().toISOString());
      await insertUpdates(tx, [{ convId: r.id, update }]);
      return update;
    });
  }

  async visitorUnread(tenantId: string, sessionId: string): Promise<number> {
    try {
      const row = await this.#db
        .selectFrom('conversations')
        .select('unread_by_visitor')
        .where('session_id', '=', sessionId)
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      return row ? Number(row.unread_by_visitor) : 0;
    } catch (err) {
      throw toQueryError(err);
    }
  }

  async #transaction<T>(fn: (tx: Kysely<Tables>) => Promise<T>): Promise<T> {
    try {
      return await this.#db.transaction().execute(fn);
    } catch (err) {
      throw toQueryError(err);
    }
  }
}

/**
 * The conversation's summary row, locked for the rest of the transaction (the seq's row lock). Two
 * statements: the lock, then the read. One `select … join messages … for update of c` that waited
 * for a message's commit re-read the conversation row but kept the join from its snapshot taken
 * before that commit, so the summary had the new counts with the previous last message (or none).
 */
async function lockSummary(tx: Kysely<Tables>, tenantId: string, sessionId: string): Promise<SummaryRow | undefined> {
  const locked = await sql<{ id: string }>`
    select id from conversations where session_id = ${sessionId} and tenant_id = ${tenantId} for update`.execute(tx);
  const id = locked.rows[0]?.id;
  if (id === undefined) return undefined;
  const { rows } = await sql<SummaryRow>`
    select ${SUMMARY_COLUMNS}
    from conversations c left join messages lm on lm.id = c.last_message_id
    where c.id = ${id}::uuid`.execute(tx);
  return rows[0];
}

function eventFor(r: SummaryState, change: ConversationChange, by: Actor): ConversationEvent | undefined {
  if ('status' in change) {
    return change.status === r.status
      ? undefined
      : { type: 'conversation.status_changed', from: r.status as ConversationStatus, to: change.status, by };
  }
  return change.assignee === r.assignee ? undefined : { type: 'conversation.assigned', from: r.assignee, to: change.assignee, by };
}

/** Applies the change: the system message at the next seq, its outbox row, the conversation row, the event. */
async function record(tx: Kysely<Tables>, r: SummaryRow, event: ConversationEvent): Promise<ChangeResult> {
  const now = new Date().toISOString();
  const seq = Number(r.last_seq) + 1;
  const message = systemMessage(r.tenant_id, r.session_id, seq, event, now);
  const status = event.type === 'conversation.status_changed' ? event.to : (r.status as ConversationStatus);
  const assignee = event.type === 'conversation.assigned' ? event.to : r.assignee;
  await sql`
    with inserted as (
      insert into messages (id, tenant_id, conversation_id, session_id, seq, sender_type, sender_id, sender_verified,
                            text, client_message_id, content_hash, meta, created_at)
      values (${message.id}::uuid, ${r.tenant_id}, ${r.id}::uuid, ${r.session_id}, ${seq}::int, 'system', ${message.sender.id}, true,
              ${message.text}, null, ${contentHash(message.text)}, ${JSON.stringify(message.meta)}::text::jsonb, ${now}::timestamptz)
      returning id
    ), outboxed as (
      insert into outbox (message_id) select id from inserted
    )
    update conversations set last_seq = ${seq}::int, version = version + 1, status = ${status}, assignee = ${assignee}::text,
      last_activity_at = ${now}::timestamptz, updated_at = ${now}::timestamptz
    where id = ${r.id}::uuid`.execute(tx);
  const state: SummaryState = { ...r, status, assignee, last_seq: seq, version: Number(r.version) + 1, last_activity_at: now };
  const update = updateOf(state, toSummary(state, r), now);
  await insertUpdates(tx, [{ convId: r.id, update }]);
  return { kind: 'changed', message, update };
}
