// Publishes accepted messages after commit (DESIGN.md "One path for a message", step 4), on every
// node. The fast path: the domain calls publishNow() right after acknowledging; the message goes to
// the EventLog (agent stream, webhook job, bus) and its outbox row is deleted. The safety net: a
// periodic sweep claims rows left undone for longer than `staleAfterMs` — the node crashed between
// commit and publish, Redis was down — and publishes them again: late, never lost. Doubles are
// harmless: EventLog.publishMessage is idempotent per messageId.
import type { Logger } from 'pino';
import type { ChatMessage } from '../chat/message.js';
import { outboxPublishFailures, outboxRepublished } from '../observability/metrics.js';
import type { EventLog } from '../store/ports.js';
import type { ConversationOutbox, Outbox, OutboxRelay } from './ports.js';
import type { ConversationUpdate } from '../chat/conversation.js';

/** What the relay publishes through: the engine's event log (agent stream, webhook job, bus). */
export type RelayEvents = Pick<EventLog, 'publishMessage' | 'publishUpdate'>;

export interface OutboxRelayOptions {
  /** How often this node sweeps. */
  readonly sweepIntervalMs?: number;
  /**
   * Rows younger than this are left to the node that wrote them (its publishNow is usually done
   * within milliseconds); older ones are anybody's.
   */
  readonly staleAfterMs?: number;
  /** Rows claimed per round; a sweep keeps going while rounds come back full. */
  readonly batchSize?: number;
  /** A publish that has not answered by then counts as failed (the row stays for a later sweep). */
  readonly publishTimeoutMs?: number;
  /**
   * How long published rows gather before one statement deletes them (or RETIRE_MAX_BATCH rows,
   * whichever comes first). Without it a node at light load sent one DELETE (one commit) per
   * message; a row a few ms older changes nothing, since sweeps take rows only after staleAfterMs.
   */
  readonly retireDelayMs?: number;
  /** Counts re-published messages (metrics). */
  readonly onRepublished?: (n: number) => void;
  /** The conversation_updated events' outbox, swept like the messages' (none: only messages). */
  readonly updates?: ConversationOutbox;
}

const FAILURE_LOG_INTERVAL_MS = 10_000;

export const RELAY_DEFAULTS = {
  sweepIntervalMs: 2000,
  staleAfterMs: 5000,
  batchSize: 200,
  publishTimeoutMs: 10_000,
  retireDelayMs: 20,
} as const;

/** Published rows deleted by one statement at most (the batch is retired at once when full). */
export const RETIRE_MAX_BATCH = 500;

/** Rows published and waiting for their DELETE; `done` settles once it ran. */
interface Retiring {
  readonly messageIds: string[];
  readonly updateIds: string[];
  readonly done: Promise<void>;
  retireNow(): void;
}

export class DbOutboxRelay implements OutboxRelay {
  readonly #outbox: Outbox;
  readonly #events: RelayEvents;
  readonly #log: Logger;
  readonly #opts: Required<Omit<OutboxRelayOptions, 'onRepublished' | 'updates'>> & Pick<OutboxRelayOptions, 'onRepublished'>;
  readonly #updates: ConversationOutbox | undefined;
  /** The published rows gathering for one DELETE statement (see retireDelayMs). */
  #retiring: Retiring | undefined;
  readonly #inflight = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #sweeping: Promise<number> | undefined;
  #stopped = false;
  #lastFailureLog = 0;
  #suppressed = 0;

  constructor(outbox: Outbox, events: RelayEvents, logger: Logger, opts: OutboxRelayOptions = {}) {
    this.#outbox = outbox;
    this.#events = events;
    this.#log = logger;
    const { updates, ...rest } = opts;
    this.#updates = updates;
    this.#opts = { ...RELAY_DEFAULTS, ...rest };
  }

  /**
   * Marks a published row done: it joins the batch gathering (one statement for the messages and
   * conversation_updated events published within retireDelayMs); resolves once that batch is deleted.
   */
  #retire(id: string, update: boolean): Promise<void> {
    let batch = this.#retiring;
    if (!batch) {
      let fire!: () => void;
      const messageIds: string[] = [];
      const updateIds: string[] = [];
      const due = new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#opts.retireDelayMs);
        fire = () => (clearTimeout(timer), resolve());
      });
      const created: Retiring = {
        messageIds,
        updateIds,
        retireNow: () => fire(),
        done: due.then(() => {
          if (this.#retiring === created) this.#retiring = undefined;
          return this.#outbox.markAllDone(messageIds, updateIds);
        }),
      };
      batch = this.#retiring = created;
    }
    // Without a conversation outbox (tests of messages alone) there is no row to retire.
    if (!update) batch.messageIds.push(id);
    else if (this.#updates) batch.updateIds.push(id);
    if (batch.messageIds.length + batch.updateIds.length >= RETIRE_MAX_BATCH) {
      this.#retiring = undefined;
      batch.retireNow();
    }
    return batch.done;
  }

  /** Starts the periodic sweep (the first one right away: rows a crashed predecessor left). */
  start(): this {
    if (this.#timer || this.#stopped) return this;
    const tick = () => {
      void this.sweep();
    };
    this.#timer = setInterval(tick, this.#opts.sweepIntervalMs);
    this.#timer.unref();
    setImmediate(tick);
    return this;
  }

  publishNow(message: ChatMessage, outboxId: string): void {
    if (this.#stopped) return; // the row stays; another node (or our next start) publishes it
    const p = this.#publish(message)
      .then(() => this.#retire(outboxId, false))
      .catch((err: unknown) => this.#publishFailed(err, message.id))
      .finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }

  publishUpdateNow(update: ConversationUpdate): void {
    if (this.#stopped) return;
    const p = this.#timed(update.id, () => this.#events.publishUpdate(update))
      .then(() => this.#retire(update.id, true))
      .catch((err: unknown) => this.#publishFailed(err, update.id))
      .finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }

  /**
   * Counts a failed publish and logs it — the first at once, then at most one line per
   * FAILURE_LOG_INTERVAL_MS with the count, so a Redis outage under traffic does not flood the log.
   */
  #publishFailed(err: unknown, messageId: string): void {
    outboxPublishFailures.inc();
    this.#suppressed++;
    const now = Date.now();
    if (now - this.#lastFailureLog < FAILURE_LOG_INTERVAL_MS) return;
    this.#log.warn(
      { err, messageId, failures: this.#suppressed },
      'publish after commit failed; the outbox sweep will publish these messages later',
    );
    this.#lastFailureLog = now;
    this.#suppressed = 0;
  }

  sweep(): Promise<number> {
    if (this.#stopped) return Promise.resolve(0);
    // One sweep at a time per node; a caller arriving meanwhile shares the running one.
    this.#sweeping ??= this.#sweepRounds().finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async #sweepRounds(): Promise<number> {
    let published = 0;
    try {
      for (;;) {
        let roundPublished = 0;
        let failed = false;
        const claimed = await this.#outbox.claimStale(this.#opts.staleAfterMs, this.#opts.batchSize, async (entries) => {
          const done: string[] = [];
          // In order (oldest first, seq within a conversation), one at a time: a conversation's
          // messages reach the agent stream in seq order.
          for (const e of entries) {
            if (this.#stopped) break;
            try {
              await this.#publish(e.message);
              done.push(e.id);
            } catch (err) {
              failed = true;
              this.#publishFailed(err, e.id);
              break;
            }
          }
          roundPublished = done.length;
          return done;
        });
        published += roundPublished;
        if (roundPublished > 0) {
          outboxRepublished.inc(roundPublished);
          this.#opts.onRepublished?.(roundPublished);
        }
        if (failed || this.#stopped || claimed < this.#opts.batchSize) break;
      }
      published += await this.#sweepUpdates();
    } catch (err) {
      // The database is down: accept() reports it to callers; here it is only worth a debug line.
      this.#log.debug({ err }, 'outbox sweep failed; will retry');
    }
    if (published > 0) this.#log.info({ published }, 'outbox sweep re-published messages left undone');
    return published;
  }

  /** The conversation_updated events left undone, oldest first, like the messages. */
  async #sweepUpdates(): Promise<number> {
    const updates = this.#updates;
    if (!updates) return 0;
    let published = 0;
    for (;;) {
      let roundPublished = 0;
      let failed = false;
      const claimed = await updates.claimStale(this.#opts.staleAfterMs, this.#opts.batchSize, async (list) => {
        const done: string[] = [];
        for (const u of list) {
          if (this.#stopped) break;
          try {
            await this.#timed(u.id, () => this.#events.publishUpdate(u));
            done.push(u.id);
          } catch (err) {
            failed = true;
            this.#publishFailed(err, u.id);
            break;
          }
        }
        roundPublished = done.length;
        return done;
      });
      published += roundPublished;
      if (roundPublished > 0) outboxRepublished.inc(roundPublished);
      if (failed || this.#stopped || claimed < this.#opts.batchSize) return published;
    }
  }

  #publish(message: ChatMessage): Promise<void> {
    return this.#timed(message.id, () => this.#events.publishMessage(message));
  }

  #timed(id: string, publish: () => Promise<unknown>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`publish of ${id} timed out after ${this.#opts.publishTimeoutMs} ms`)),
        this.#opts.publishTimeoutMs,
      );
      publish().then(
        () => (clearTimeout(timer), resolve()),
        (err: unknown) => (clearTimeout(timer), reject(err)),
      );
    });
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    // From now on publishNow leaves rows to the sweep (of another node, or of our next start) and a
    // running sweep stops after its current message.
    this.#stopped = true;
    this.#retiring?.retireNow();
    const deadline = new Promise<void>((r) => setTimeout(r, this.#opts.publishTimeoutMs).unref());
    // Publishes in flight finish and their rows get marked done.
    await Promise.race([Promise.allSettled([...this.#inflight, this.#sweeping]), deadline]);
  }
}

/** Creates and starts the relay (`services.relay`). */
export function startOutboxRelay(outbox: Outbox, events: RelayEvents, logger: Logger, opts: OutboxRelayOptions = {}): DbOutboxRelay {
  return new DbOutboxRelay(outbox, events, logger, opts).start();
}
