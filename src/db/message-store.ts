// The MessageStore port over Kysely, put together from one module per job:
//   accept.ts         the message path's durable half (DESIGN.md "One path for a message", step 2),
//                     group-committed: one transaction per flush, answered only after COMMIT;
//   conversations.ts  a conversation created on first use, and the grouped head lookups;
//   history.ts        history pages and the recovery read after a seq;
//   read-pointers.ts  who read up to where;
//   maintenance.ts    retention and erasure.
import type { Kysely } from 'kysely';
import type { ChatMessage } from '../chat/message.js';
import { GroupCommitAccept, type GroupCommitAcceptOptions } from './accept.js';
import { ConversationLookups } from './conversations.js';
import { history, since } from './history.js';
import { deleteMessagesBefore, eraseSubject } from './maintenance.js';
import type {
  AcceptResult,
  Conversation,
  DatabaseErasure,
  EnsureConversationResult,
  EraseSubject,
  HistoryPage,
  HistoryQuery,
  MessageStore,
  NewMessage,
  ReadPointer,
  ReadResult,
} from './ports.js';
import { markRead, readPointers } from './read-pointers.js';
import type { Tables } from './schema.js';

export type KyselyMessageStoreOptions = GroupCommitAcceptOptions;

export class KyselyMessageStore implements MessageStore {
  readonly #db: Kysely<Tables>;
  readonly #accept: GroupCommitAccept;
  readonly #conversations: ConversationLookups;

  constructor(db: Kysely<Tables>, opts: KyselyMessageStoreOptions) {
    this.#db = db;
    this.#accept = new GroupCommitAccept(db, opts);
    this.#conversations = new ConversationLookups(db);
  }

  accept(msg: NewMessage): Promise<AcceptResult> {
    return this.#accept.accept(msg);
  }

  /** One transaction per message, bypassing group commit: the benchmark's baseline. */
  acceptSingle(msg: NewMessage): Promise<AcceptResult> {
    return this.#accept.acceptSingle(msg);
  }

  /** Resolves when no accept is queued or in flight. */
  idle(): Promise<void> {
    return this.#accept.idle();
  }

  ensureConversation(
    tenantId: string,
    sessionId: string,
    owner: { userId?: string; fingerprint?: string },
  ): Promise<EnsureConversationResult> {
    return this.#conversations.ensureConversation(tenantId, sessionId, owner);
  }

  getConversation(tenantId: string, sessionId: string): Promise<Conversation | null> {
    return this.#conversations.getConversation(tenantId, sessionId);
  }

  history(q: HistoryQuery): Promise<HistoryPage> {
    return history(this.#db, q);
  }

  since(tenantId: string, sessionId: string, afterSeq: number, limit: number): Promise<ChatMessage[]> {
    return since(this.#db, tenantId, sessionId, afterSeq, limit);
  }

  markRead(tenantId: string, sessionId: string, readerId: string, messageId: string): Promise<ReadResult> {
    return markRead(this.#db, tenantId, sessionId, readerId, messageId);
  }

  readPointers(tenantId: string, sessionId: string): Promise<ReadPointer[]> {
    return readPointers(this.#db, tenantId, sessionId);
  }

  deleteMessagesBefore(tenantId: string, before: Date, limit: number): Promise<number> {
    return deleteMessagesBefore(this.#db, tenantId, before, limit);
  }

  eraseSubject(tenantId: string, subject: EraseSubject, opts: { dryRun: boolean }): Promise<DatabaseErasure> {
    return eraseSubject(this.#db, tenantId, subject, opts);
  }
}
