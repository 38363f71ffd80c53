// Per-tenant message retention (`tenants[].retention.messages`, e.g. "90d"): every node deletes, in
// small batches, the messages older than their tenant's limit. Conversations are kept, so a
// conversation's seq keeps counting up and a client's recovery offset stays meaningful; each batch
// brings their inbox summaries in line with what is left (maintenance.ts deleteMessagesBefore).
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { MessageStore } from './ports.js';

export interface RetentionPolicy {
  readonly tenantId: string;
  readonly maxAgeMs: number;
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90d`, `12h`, `30m`, `45s` → milliseconds (the config schema checks the pattern). */
export function parseRetention(value: string): number {
  const m = /^([0-9]+)(s|m|h|d)$/.exec(value);
  if (!m) throw new Error(`invalid retention "${value}": use a number and s, m, h or d (e.g. 90d)`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

export function retentionPolicies(config: Pick<Config, 'tenants'>): RetentionPolicy[] {
  return config.tenants.flatMap((t) => (t.retention.messages ? [{ tenantId: t.id, maxAgeMs: parseRetention(t.retention.messages) }] : []));
}

export interface RetentionOptions {
  readonly intervalMs?: number;
  /** Rows per DELETE: short transactions that never hold many locks. */
  readonly batchSize?: number;
}

export class RetentionSweeper {
  readonly #messages: Pick<MessageStore, 'deleteMessagesBefore'>;
  readonly #policies: () => readonly RetentionPolicy[];
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #batchSize: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;
  #stopped = false;

  constructor(
    messages: Pick<MessageStore, 'deleteMessagesBefore'>,
    policies: () => readonly RetentionPolicy[],
    logger: Logger,
    opts: RetentionOptions = {},
  ) {
    this.#messages = messages;
    this.#policies = policies;
    this.#log = logger;
    this.#intervalMs = opts.intervalMs ?? 10 * 60_000;
    this.#batchSize = opts.batchSize ?? 500;
  }

  start(): this {
    if (this.#timer || this.#policies().length === 0) return this;
    this.#timer = setInterval(() => void this.sweep(), this.#intervalMs);
    this.#timer.unref();
    // A first pass soon after start (not at once: start-up has enough to do).
    setTimeout(() => void this.sweep(), Math.min(30_000, this.#intervalMs)).unref();
    return this;
  }

  /** One pass over every tenant with a limit; resolves with how many messages were deleted. */
  sweep(now = Date.now()): Promise<number> {
    if (this.#stopped) return Promise.resolve(0);
    this.#running ??= this.#sweep(now).finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #sweep(now: number): Promise<number> {
    let total = 0;
    for (const p of this.#policies()) {
      const before = new Date(now - p.maxAgeMs);
      try {
        for (;;) {
          if (this.#stopped) return total;
          const n = await this.#messages.deleteMessagesBefore(p.tenantId, before, this.#batchSize);
          total += n;
          if (n < this.#batchSize) break;
        }
      } catch (err) {
        this.#log.warn({ err, tenantId: p.tenantId }, 'retention sweep failed; will retry');
      }
    }
    if (total > 0) this.#log.info({ deleted: total }, 'retention: deleted messages past their tenant limit');
    return total;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }
}

/** Creates and starts the sweeper (a no-op timer-less object when no tenant sets a limit). */
export function startRetention(
  messages: Pick<MessageStore, 'deleteMessagesBefore'>,
  config: Pick<Config, 'tenants'>,
  logger: Logger,
): RetentionSweeper {
  const policies = retentionPolicies(config);
  return new RetentionSweeper(messages, () => policies, logger).start();
}
