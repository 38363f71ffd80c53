// Erasure: everything chatd holds about one session, or about one user across the
// tenant's conversations, goes — the conversations with their messages, read pointers and outbox
// rows (database), then the `session:` records, token bindings, presence entries and pending
// webhook jobs and retries of those sessions (store). One function behind the three doors: the
// CLI acting directly on PostgreSQL + Redis, the admin listener (embedded defaults) and
// `POST /api/chat/erase` (a tenant's backend with its secret key).
//
// Order: the database first. If the store step fails afterwards, running the erasure again
// finds the sessions no longer in the database, so a session id is also erased from the store
// directly when given (`--session`): a retry always completes what the first run started.
// Not erased: agent-stream entries (the agents' recoverable stream must keep contiguous offsets;
// they age out with `agentHistorySize`), per-node in-memory caches of token→session bindings
// (a cached binding names a session that no longer holds anything; it ends with the token), and
// token revocations (`chatd token revoke`: the database's `revocations` row and the store's copy).
// A revocation is a security record, not chat data — the tenant, the subject id and an instant —
// and erasing it would let the subject's tokens issued before it in again, so it is kept on purpose.
import type { DatabaseErasure, EraseSubject, MessageStore } from '../db/ports.js';
import { ChatdError } from '../errors.js';
import { ID_PATTERN, ID_SOURCE, USER_ID_PATTERN, USER_ID_SOURCE } from '../ids.js';
import type { ErasureStore, StoreErasure } from '../store/ports.js';

export interface EraseRequest {
  readonly tenantId: string;
  readonly sessionId?: string | undefined;
  readonly userId?: string | undefined;
  readonly dryRun?: boolean | undefined;
}

/** What was removed (or, in a dry run, would be): counts per kind, and the sessions concerned. */
export interface EraseReport {
  readonly tenantId: string;
  readonly subject: { readonly sessionId: string } | { readonly userId: string };
  readonly dryRun: boolean;
  readonly sessionIds: string[];
  readonly removed: {
    readonly conversations: number;
    readonly messages: number;
    readonly readPointers: number;
    readonly outboxRows: number;
  } & StoreErasure;
}

/** Checks an erase request's shape: exactly one of sessionId and userId, valid ids. */
export function parseEraseRequest(req: EraseRequest): { tenantId: string; subject: EraseSubject; dryRun: boolean } {
  const details: { path: string; message: string }[] = [];
  if (!ID_PATTERN.test(req.tenantId ?? '')) details.push({ path: 'tenantId', message: `must match ${ID_SOURCE}` });
  const hasS = req.sessionId !== undefined && req.sessionId !== '';
  const hasU = req.userId !== undefined && req.userId !== '';
  if (hasS === hasU) details.push({ path: hasS ? 'userId' : 'sessionId', message: 'give exactly one of sessionId and userId' });
  if (hasS && !ID_PATTERN.test(req.sessionId!)) details.push({ path: 'sessionId', message: `must match ${ID_SOURCE}` });
  if (hasU && !USER_ID_PATTERN.test(req.userId!)) details.push({ path: 'userId', message: `must match ${USER_ID_SOURCE}` });
  if (details.length > 0) {
    throw new ChatdError('validation_failed', `Invalid erase request: ${details.map((d) => `${d.path} ${d.message}`).join('; ')}`, {
      details,
    });
  }
  return { tenantId: req.tenantId, subject: hasS ? { sessionId: req.sessionId! } : { userId: req.userId! }, dryRun: req.dryRun === true };
}

export async function eraseSubject(
  deps: { readonly messages: Pick<MessageStore, 'eraseSubject'>; readonly erasure: ErasureStore },
  req: EraseRequest,
): Promise<EraseReport> {
  const { tenantId, subject, dryRun } = parseEraseRequest(req);
  const db: DatabaseErasure = await deps.messages.eraseSubject(tenantId, subject, { dryRun });
  const sessions = new Set(db.sessionIds);
  if ('sessionId' in subject) sessions.add(subject.sessionId);
  const sessionIds = [...sessions].sort();
  const store = await deps.erasure.eraseSessions(tenantId, sessionIds, { dryRun });
  return {
    tenantId,
    subject,
    dryRun,
    sessionIds,
    removed: {
      conversations: db.conversations,
      messages: db.messages,
      readPointers: db.readPointers,
      outboxRows: db.outboxRows,
      ...store,
    },
  };
}
