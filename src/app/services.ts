// The process-wide services roles share: created once, on first use, and closed at exit.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Database } from '../db/ports.js';
import type { Store } from '../store/ports.js';
import type { ReadinessCheck } from './types.js';
import { createAuth, type Auth } from '../auth/index.js';
import { createChatService, type ChatService } from '../chat/chat-service.js';

export interface Services {
  readonly store: Store;
  readonly db: Database;
  /** Tenants, API keys and JWTs (src/auth): one instance per process, reloadable. */
  readonly auth: Auth;
  /** The domain (src/chat): the one path of a message, history, session binding. */
  readonly chat: ChatService;
  readonly readiness: readonly ReadinessCheck[];
  close(): Promise<void>;
}

export interface ServiceFactories {
  createStore(config: Config, logger: Logger, nodeId: string): Promise<Store>;
  openDatabase(config: Config, logger: Logger): Promise<Database>;
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
  const auth = createAuth(config);
  const chat = createChatService({
    tenants: () => auth.tenants,
    messages: db.messages,
    sessions: store.sessions,
    // Step 4 of "One path for a message": publish after commit, then mark the outbox row done.
    // A failure leaves the row undone for the outbox relay's sweep: late, never lost.
    relay: {
      publishNow(message, outboxId) {
        store.events
          .publishMessage(message)
          .then(() => db.outbox.markDone([outboxId]))
          .catch((err: unknown) => logger.warn({ err, messageId: message.id }, 'publish after commit failed; the outbox relay will retry'));
      },
    },
    bus: store.bus,
    messageMaxChars: config.limits.messageMaxChars,
    logger,
  });
  return {
    store,
    db,
    auth,
    chat,
    readiness: [
      { name: store.kind === 'redis' ? 'redis' : 'memory-store', check: () => store.ping() },
      { name: db.dialect, check: () => db.ping() },
    ],
    async close() {
      await Promise.allSettled([store.close(), db.close()]);
    },
  };
}
