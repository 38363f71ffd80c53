// The Database port over Kysely: one class for both dialects; what differs (the driver, whether the
// outbox sweep holds row locks) is decided once in index.ts.
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { toQueryError } from './db-errors.js';
import { KyselyMessageStore } from './message-store.js';
import { KyselyConversationStore } from './inbox.js';
import { KyselyOfflineStore } from './offline-store.js';
import { KyselyConversationOutbox, KyselyOutbox } from './outbox.js';
import type { Database } from './ports.js';
import { KyselyRevocationLog } from './revocations.js';
import type { Tables } from './schema.js';

export type Dialect = Database['dialect'];

export class KyselyDatabase implements Database {
  readonly messages: KyselyMessageStore;
  readonly outbox: KyselyOutbox;
  readonly conversations: KyselyConversationStore;
  readonly conversationOutbox: KyselyConversationOutbox;
  readonly offline: KyselyOfflineStore;
  readonly revocations: KyselyRevocationLog;
  readonly dialect: Dialect;
  /** The Kysely instance, for migrations and tests; the rest of chatd uses the ports. */
  readonly kysely: Kysely<Tables>;
  readonly #onClose: () => void;
  #closing: Promise<void> | undefined;

  constructor(
    kysely: Kysely<Tables>,
    dialect: Dialect,
    logger: Logger,
    opts: { onClose?: () => void; onFlush?: (size: number, ms: number) => void; maxInFlight?: number } = {},
  ) {
    this.kysely = kysely;
    this.dialect = dialect;
    this.messages = new KyselyMessageStore(kysely, {
      logger,
      ...(opts.onFlush ? { onFlush: opts.onFlush } : {}),
      // PGlite has one connection: a second flush would only queue behind the first.
      maxInFlight: dialect === 'postgres' ? (opts.maxInFlight ?? 1) : 1,
    });
    this.offline = new KyselyOfflineStore(kysely);
    this.revocations = new KyselyRevocationLog(kysely);
    this.outbox = new KyselyOutbox(kysely, { lockWhilePublishing: dialect === 'postgres' });
    this.conversations = new KyselyConversationStore(kysely);
    this.conversationOutbox = new KyselyConversationOutbox(kysely, { lockWhilePublishing: dialect === 'postgres' });
    this.#onClose = opts.onClose ?? (() => undefined);
  }

  async ping(): Promise<void> {
    if (this.#closing) throw toQueryError(new Error('the database was closed (client was closed)'));
    try {
      await sql`select 1`.execute(this.kysely);
    } catch (err) {
      throw toQueryError(err);
    }
  }

  /** Waits for accepts in flight (they commit and answer), then closes the pool or PGlite. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.messages.idle();
        await this.kysely.destroy();
      } finally {
        this.#onClose();
      }
    })();
    return this.#closing;
  }
}
