// The process-wide services roles share: created once, on first use, and closed at exit.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Database, OutboxRelay } from '../db/ports.js';
import { startOutboxRelay } from '../db/outbox-relay.js';
import { startRetention } from '../db/retention.js';
import type { Store } from '../store/ports.js';
import type { ChatMessage } from '../chat/message.js';
import type { ReadinessCheck } from '../roles/role-context.js';
import { createAuth, type Auth } from '../auth/index.js';
import { createChatService, type ChatService } from '../chat/chat-service.js';
import { createRevocationCheck, restoreRevocations } from '../ops/revocation.js';
import { startEmailWorker } from '../notify/start.js';
import { createInbox, withPresence, type Inbox } from '../chat/inbox.js';

export interface Services {
  readonly store: Store;
  readonly db: Database;
  /** Tenants, API keys and JWTs (src/auth): one instance per process, reloadable. */
  readonly auth: Auth;
  /** The domain (src/chat): the one path of a message, history, session binding. */
  readonly chat: ChatService;
  /** The agents' side of conversations (src/chat/inbox.ts): list, summary, status, assignment. */
  readonly inbox: Inbox;
  /** Publishes accepted messages after commit; sweeps the outbox on every node. */
  readonly relay: OutboxRelay;
  /** Per-subject token revocation (src/ops/revocation.ts): `forget` drops this node's cached answer. */
  readonly revocation: { forget(tenantId: string, userId: string): void };
  /** Whether agent replies are emailed to visitors who left (email.smtp is set). */
  readonly emailEnabled: boolean;
  readonly readiness: readonly ReadinessCheck[];
  close(): Promise<void>;
}

export interface ServiceFactories {
  createStore(config: Config, logger: Logger, nodeId: string): Promise<Store>;
  openDatabase(config: Config, logger: Logger): Promise<Database>;
  /**
   * Runs before the listeners of a process that needs the database (api, ws): throws for faults
   * that waiting cannot cure (the embedded folder held by another process, pending migrations
   * without database.autoMigrate), so serve stops with the message instead of running never ready.
   */
  checkDatabase?(config: Config, logger: Logger): Promise<void>;
}

/**
 * `sharedStore`: the process's store when it was already created on its own (a gateway-only process
 * asks for the store, for shared rate limits, without ever opening the database); it is reused, not
 * created twice.
 */
export async function createServices(
  config: Config,
  logger: Logger,
  nodeId: string,
  factories: ServiceFactories,
  sharedStore?: () => Promise<Store>,
): Promise<Services> {
  const db = await factories.openDatabase(config, logger);
  let store: Store;
  try {
    store = await (sharedStore ? sharedStore() : factories.createStore(config, logger, nodeId));
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
  // Revocations are recorded in the database; the store, which every check reads, is restored from
  // it before this process checks a token (memory: it starts empty) and whenever Redis comes back
  // without its data.
  let restoring: { stop(): Promise<void> };
  try {
    restoring = await store.keepRestored(
      () => restoreRevocations(db.revocations, store.revocations),
      logger.child({ component: 'revocations' }),
    );
  } catch (err) {
    if (!sharedStore) await store.close().catch(() => undefined);
    await db.close().catch(() => undefined);
    throw err;
  }
  // Agent revocation: tokens of a revoked subject issued before the revocation are refused.
  const revocation = createRevocationCheck(store.revocations);
  const auth = createAuth(config, { isRevoked: revocation.isRevoked });
  // Step 4 of "One path for a message": publish after commit and mark the outbox row done; the
  // relay's periodic sweep re-publishes rows left undone (a crash, Redis down): late, never lost.
  // conversation_updated events take the same path, with `online` added from presence.
  const relay = startOutboxRelay(db.outbox, withPresence(store.events, store.presence), logger.child({ component: 'outbox-relay' }), {
    updates: db.conversationOutbox,
  });
  const inbox = createInbox({
    tenants: () => auth.tenants,
    conversations: db.conversations,
    relay,
    presence: store.presence,
    // round_robin's candidates: the tenant's agents with a connection now, on any node.
    onlineAgents: async (tenantId) => (await store.agentPresence.online(tenantId)).map((a) => a.agentId),
    logger: logger.child({ component: 'inbox' }),
  });
  // tenants[].retention.messages: old messages are deleted in small batches, on every node.
  const retention = startRetention(db.messages, config, logger.child({ component: 'retention' }));
  // Offline continuity: agent replies emailed to visitors who left (only with email.smtp).
  let email: ReturnType<typeof startEmailWorker>;
  try {
    email = startEmailWorker(config, {
      db,
      presence: store.presence,
      agents: store.agentPresence,
      tenants: () => auth.tenants,
      logger: logger.child({ component: 'email' }),
    });
  } catch (err) {
    await Promise.allSettled([relay.stop(), retention.stop(), restoring.stop()]);
    await Promise.allSettled([store.close(), db.close()]);
    throw err;
  }
  const chat = createChatService({
    tenants: () => auth.tenants,
    messages: db.messages,
    sessions: store.sessions,
    relay,
    bus: store.bus,
    conversations: db.conversations,
    autoAssign: (tenantId, sessionId) => inbox.autoAssign(tenantId, sessionId),
    offline: db.offline,
    ...(email
      ? { onAgentReply: (m: ChatMessage) => email.schedule(m), onVisitorMessage: (m: ChatMessage) => void email.notifyTenant(m) }
      : {}),
    messageMaxChars: config.limits.messageMaxChars,
    logger,
  });
  return {
    store,
    db,
    auth,
    chat,
    inbox,
    relay,
    revocation,
    emailEnabled: email !== undefined,
    readiness: [
      { name: store.readinessName, check: () => store.ping() },
      { name: db.dialect, check: () => db.ping() },
    ],
    async close() {
      // The relay first: publishes in flight finish (bounded) while the store and database are open.
      await Promise.allSettled([relay.stop(), retention.stop(), email?.stop(), restoring.stop()]);
      await Promise.allSettled([store.close(), db.close()]);
    },
  };
}
