// The message path's durable half (DESIGN.md "One path for a message", step 2) and the reads.
// accept() is group-committed, and each flush is ONE autocommit call of chatd_accept_batch()
// (accept-batch-sql.ts, migration 0006): one round trip whatever the batch size. In it the
// conversations of the batch are locked in session-id order (created when missing), then one
// statement looks up earlier messages with the same idempotency keys, hands out consecutive seqs
// per conversation, inserts the messages, their outbox rows and the conversation_updated events,
// and advances each conversation's head. Callers are answered only once the call returned, that
// is after COMMIT.
//
// Several flushes run at once (`maxInFlight`, on separate connections; a flush joins others in
// flight once MIN_OVERLAP_BATCH messages wait). Per-conversation order:
// on one node the flushes in flight never share a conversation (GroupCommit's key), so a
// conversation's messages are flushed, committed and answered in submission order; between nodes,
// batches that share a conversation queue on its row lock, taken in the same (session-id) order by
// every batch, so they cannot deadlock and seq order is commit order.
//
// If a batch fails on a row's data, its rows are retried one call each, so a bad row fails only
// its own caller.
import { createHash, randomUUID } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Logger } from 'pino';
import { systemText, type ConversationEvent, type ConversationUpdate } from '../chat/conversation.js';
import { emptyMeta, type ChatMessage } from '../chat/message.js';
import { isRowError, isUnavailable, sqlState, toCommitError, toQueryError, toRowRefusal } from './db-errors.js';
import { GroupCommit, type Settled } from './group-commit.js';
import type { AcceptResult, NewMessage } from './ports.js';
import { rowToMessage } from './rows.js';
import type { Tables } from './schema.js';

/** Rows per flush: bounds the statement's size and the locks one transaction holds. */
export const MAX_BATCH = 256;

/**
 * Items a flush needs to start while another is in flight (GroupCommit's minOverlapBatch). Each
 * flush costs a round trip, a commit and the statement's fixed work (~0.3 ms of PostgreSQL CPU
 * against ~0.1 ms per message); below this, waiting for the flush in flight makes fewer, bigger
 * flushes.
 */
export const MIN_OVERLAP_BATCH = 8;

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

/** The reopen system message's text (the same for a visitor and a user: "the visitor"). */
const REOPEN_TEXT = systemText({ type: 'conversation.status_changed', from: 'resolved', to: 'open', by: { type: 'visitor', id: '' } });
const REOPEN_HASH = contentHash(REOPEN_TEXT);
const EMPTY_META = JSON.stringify(emptyMeta());

export interface GroupCommitAcceptOptions {
  readonly logger: Logger;
  /** Called after each flush with its size (metrics). */
  readonly onFlush?: (size: number, ms: number) => void;
  /**
   * Flushes in flight at once, each on its own connection (default 1). PostgreSQL: the pool size
   * minus one; PGlite has one connection, so 1.
   */
  readonly maxInFlight?: number;
}

/** One row of chatd_accept_batch() per item. */
interface BatchRow {
  r_o: number;
  r_kind: 'created' | 'existing' | 'foreign';
  r_seq: number | null;
  r_sys_id: string | null;
  r_update: ConversationUpdate | string | null;
  r_id: string | null;
  r_sender_type: string | null;
  r_verified: boolean | null;
  r_text: string | null;
  r_hash: string | null;
  r_meta: unknown;
  r_created_at: Date | string | null;
}

/** MessageStore.accept: messages group-committed, one chatd_accept_batch() call per flush. */
export class GroupCommitAccept {
  readonly #db: Kysely<Tables>;
  readonly #log: Logger;
  readonly #commit: GroupCommit<Pending, AcceptResult>;
  readonly #onFlush: ((size: number, ms: number) => void) | undefined;

  constructor(db: Kysely<Tables>, opts: GroupCommitAcceptOptions) {
    this.#db = db;
    this.#log = opts.logger;
    this.#onFlush = opts.onFlush;
    this.#commit = new GroupCommit((items) => this.#flush(items), {
      maxBatch: MAX_BATCH,
      maxInFlight: opts.maxInFlight ?? 1,
      minOverlapBatch: MIN_OVERLAP_BATCH,
      key: (p) => p.msg.sessionId,
    });
  }

  accept(msg: NewMessage): Promise<AcceptResult> {
    return this.#commit.submit({ msg, id: randomUUID(), createdAt: new Date().toISOString(), hash: contentHash(msg.text) });
  }

  /**
   * One call per message, bypassing group commit: the baseline the benchmark compares with
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

  /**
   * One chatd_accept_batch() call for the batch. Throws when it did not commit, or may have: a
   * connection that cannot be had is a DependencyError (nothing sent); an error the server
   * answered rolled the call back (a row error, or DependencyError for the server's faults); a
   * connection lost while the call was out leaves the outcome unknown (OutcomeUnknownError).
   */
  async #write(items: readonly Pending[]): Promise<Settled<AcceptResult>[]> {
    const results: Settled<AcceptResult>[] = new Array(items.length);
    /** Per sent item with a key: the message that key now names, and its content hash. */
    const earliest: ({ message: ChatMessage; hash: string } | undefined)[] = new Array(items.length);
    // Items whose idempotency key an earlier item of the batch has are answered from that item.
    const firstOfKey = new Map<string, number>();
    const later: { index: number; first: number }[] = [];
    const sent: number[] = [];
    const convs = new Map<string, { t: string; s: string; u: string | null; f: string | null }>();
    items.forEach((it, i) => {
      const { msg } = it;
      if (msg.clientMessageId !== undefined) {
        const key = idemKey(msg.tenantId, msg.sessionId, msg.sender.id, msg.clientMessageId);
        const first = firstOfKey.get(key);
        if (first !== undefined) {
          later.push({ index: i, first });
          return;
        }
        firstOfKey.set(key, i);
      }
      sent.push(i);
      if (!convs.has(msg.sessionId)) {
        convs.set(msg.sessionId, {
          t: msg.tenantId,
          s: msg.sessionId,
          u: msg.conversation.userId ?? null,
          f: msg.conversation.fingerprint ?? null,
        });
      }
    });
    const payload = sent.map((i) => {
      const { msg, id, createdAt, hash } = items[i]!;
      return {
        o: i,
        id,
        t: msg.tenantId,
        s: msg.sessionId,
        st: msg.sender.type,
        si: msg.sender.id,
        sv: msg.sender.verified,
        tx: msg.text,
        k: msg.clientMessageId ?? null,
        h: hash,
        m: msg.meta,
        at: createdAt,
        r: msg.reopenResolved !== false,
      };
    });
    const now = items[0]!.createdAt;
    const rows = await this.#call(
      sql<BatchRow>`select * from chatd_accept_batch(${now}, ${JSON.stringify([...convs.values()])}::json,
        ${JSON.stringify(payload)}::json, ${REOPEN_TEXT}, ${REOPEN_HASH}, ${EMPTY_META}::jsonb)`,
    );
    if (rows.length !== sent.length) throw new Error(`chatd_accept_batch answered ${rows.length} rows for ${sent.length} items`);

    // The conversation_updated event of each conversation comes on its last item's row.
    const updates = new Map<string, ConversationUpdate>();
    for (const r of rows) {
      if (r.r_update !== null) {
        const u = (typeof r.r_update === 'string' ? JSON.parse(r.r_update) : r.r_update) as ConversationUpdate;
        updates.set(u.sessionId, u);
      }
    }
    for (const r of rows) {
      const it = items[r.r_o]!;
      const { msg } = it;
      if (r.r_kind === 'foreign') {
        results[r.r_o] = { ok: true, value: { kind: 'foreign' } };
      } else if (r.r_kind === 'existing') {
        const message = rowToMessage({
          id: r.r_id!,
          tenant_id: msg.tenantId,
          session_id: msg.sessionId,
          seq: r.r_seq!,
          sender_type: r.r_sender_type!,
          sender_id: msg.sender.id,
          sender_verified: r.r_verified!,
          text: r.r_text!,
          client_message_id: msg.clientMessageId!,
          content_hash: r.r_hash!,
          meta: r.r_meta,
          created_at: r.r_created_at!,
        });
        earliest[r.r_o] = { message, hash: r.r_hash! };
        results[r.r_o] = {
          ok: true,
          value: r.r_hash === it.hash ? { kind: 'duplicate', message } : { kind: 'conflict', messageId: message.id },
        };
      } else {
        const seq = Number(r.r_seq);
        const before: ChatMessage[] = [];
        if (r.r_sys_id !== null) {
          const event: ConversationEvent = {
            type: 'conversation.status_changed',
            from: 'resolved',
            to: 'open',
            by: { type: msg.sender.type as 'visitor' | 'user', id: msg.sender.id },
          };
          before.push({ ...systemMessage(msg.tenantId, msg.sessionId, seq - 1, event, it.createdAt), id: r.r_sys_id });
        }
        const message: ChatMessage = {
          id: it.id,
          tenantId: msg.tenantId,
          sessionId: msg.sessionId,
          seq,
          sender: { type: msg.sender.type, id: msg.sender.id, verified: msg.sender.verified },
          text: msg.text,
          ...(msg.clientMessageId !== undefined ? { clientMessageId: msg.clientMessageId } : {}),
          createdAt: it.createdAt,
          meta: msg.meta,
        };
        const update = updates.get(msg.sessionId);
        if (!update) throw new Error(`chatd_accept_batch answered no conversation_updated event for ${msg.sessionId}`);
        earliest[r.r_o] = { message, hash: it.hash };
        results[r.r_o] = { ok: true, value: { kind: 'created', message, outboxId: message.id, before, update } };
      }
    }
    // Like today's retries: the same content gets the earlier message, different content a conflict.
    for (const { index, first } of later) {
      const r = results[first]!;
      const earlier = earliest[first];
      if (!r.ok || !earlier) results[index] = r;
      else
        results[index] = {
          ok: true,
          value:
            earlier.hash === items[index]!.hash
              ? { kind: 'duplicate', message: earlier.message }
              : { kind: 'conflict', messageId: earlier.message.id },
        };
    }
    return results;
  }

  /** Runs the call on a connection of its own, sorting its errors (see #write). */
  async #call(query: RawBuilder<BatchRow>): Promise<BatchRow[]> {
    return this.#db
      .connection()
      .execute(async (conn) => {
        try {
          return (await query.execute(conn)).rows;
        } catch (err) {
          // No SQLSTATE: the connection broke while the call was out; it may have committed.
          throw sqlState(err) === undefined && isUnavailable(err) ? toCommitError(err) : toQueryError(err);
        }
      })
      .catch((err: unknown) => {
        throw toQueryError(err);
      });
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
