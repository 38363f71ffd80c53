// Telling that Redis came back without its data (no persistence and a restart, a Sentinel failover
// to a replica that lacked it, a FLUSHALL). One detection for everything chatd repairs from the
// database after such a loss: a data epoch, `meta:webhook_epoch` (on a cluster
// `x:{meta:webhook_jobs}:epoch`), a random id written once with SET NX and never expiring. A process
// reads it at each look; missing or different from the one it knew means Redis lost its data since
// its last look. Two watchers use it:
//
// - the webhook loss guard (redis-loss-guard.ts), beside each dispatcher: re-appends the webhook
//   jobs of the unsettled window (it reads the epoch atomically with its queue snapshot);
// - the restore watch below, in every process that has the database and the store (api and ws
//   roles, services.ts): writes the revocations back from the database (src/ops/revocation.ts).
//   It does not live in the loss guard because the guard runs only where a dispatcher runs (api
//   roles, and only when some tenant has webhook endpoints), while revocations are read on every
//   api and ws node whatever the webhooks.
//
// Whichever watcher looks first after a loss claims the new epoch; the others still see an epoch
// other than the one they knew, so each one detects the loss on its own.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ScriptedRedis } from './connection.js';
import { guard } from './connection.js';

export const newEpoch = () => `${Date.now()}-${randomBytes(6).toString('hex')}`;

/** What a look at the epoch says about the data since the previous look of this process. */
export type EpochLook =
  /** This process's first look: it joined the epoch in place, or started one (a new Redis, or one
   *  that lost its data before this process came up — which it cannot tell apart). */
  | 'first'
  | 'same'
  /** The epoch is gone or was replaced: Redis lost its data since the last look. */
  | 'lost';

/** One process's knowledge of the data epoch. */
export class DataEpoch {
  #known: string | undefined;

  /** `claim(candidate)` writes the candidate unless an epoch is there and returns the one in place. */
  constructor(private readonly claim: (candidate: string) => Promise<string>) {}

  get known(): string | undefined {
    return this.#known;
  }

  /**
   * What the epoch just read (`null`: the key is missing) means. On a first look the missing epoch
   * is claimed. On 'lost' nothing is claimed yet: the caller calls renew() once its repair is under
   * way (or done), so a repair that fails is detected, and tried, again at the next look.
   */
  async look(read: string | null): Promise<EpochLook> {
    if (this.#known !== undefined) return read === this.#known ? 'same' : 'lost';
    this.#known = read ?? (await this.claim(newEpoch()));
    return 'first';
  }

  /** After a loss: claims a new epoch (or joins the one another process claimed meanwhile). */
  async renew(): Promise<string> {
    this.#known = await this.claim(newEpoch());
    return this.#known;
  }
}

/**
 * Runs a look now and every `intervalMs` (default 1 s), one at a time: callers arriving while one
 * runs share it. A failure is logged once, until a look succeeds again (logged once too); the next
 * tick is the retry.
 */
export class PeriodicLook {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failing = false;

  constructor(
    private readonly look: () => Promise<void>,
    private readonly opts: {
      readonly logger: Logger;
      readonly intervalMs?: number | undefined;
      readonly failed: string;
      readonly recovered: string;
    },
  ) {}

  /** Starts the timer; resolves after the first look (which never throws). */
  start(): Promise<void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), this.opts.intervalMs ?? 1000);
      this.timer.unref();
    }
    return this.tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  tick(): Promise<void> {
    this.running ??= this.look()
      .then(
        () => {
          if (this.failing) this.opts.logger.info(this.opts.recovered);
          this.failing = false;
        },
        (err: unknown) => {
          if (!this.failing) this.opts.logger.warn({ err: (err as Error)?.message ?? String(err) }, this.opts.failed);
          this.failing = true;
        },
      )
      .finally(() => (this.running = undefined));
    return this.running;
  }
}

export interface RestoreWatchOptions {
  readonly redis: ScriptedRedis;
  /** The epoch key (webhookKeys(prefix, layout).epoch). */
  readonly epochKey: string;
  /** Writes the durable records back into Redis (idempotent); resolves with how many. */
  readonly restore: () => Promise<number>;
  readonly logger: Logger;
  /** How often the epoch is read (default 1 s). */
  readonly intervalMs?: number;
}

/**
 * Runs `restore` at this process's first look at Redis (a Redis that lost its data while no process
 * was watching looks like a new one) and after every loss the data epoch shows; a restore that
 * failed (Redis or the database down) is tried again at each look until it succeeds. A look also
 * runs as soon as the command connection is ready again, so a restarted Redis is restored within a
 * round trip of the reconnect, not a tick later.
 */
export class RestoreWatch {
  private readonly epoch: DataEpoch;
  /** A restore still owed: at the first look, or after a loss (then the epoch is renewed after it). */
  private owed: 'start' | 'loss' | undefined = 'start';
  private readonly periodic: PeriodicLook;
  private readonly onReady = () => void this.tick();

  constructor(private readonly opts: RestoreWatchOptions) {
    this.epoch = new DataEpoch((candidate) =>
      guard('claim data epoch', async () => String(await opts.redis.chatdClaimEpoch(opts.epochKey, candidate))),
    );
    this.periodic = new PeriodicLook(() => this.look(), {
      logger: opts.logger,
      intervalMs: opts.intervalMs,
      failed: 'restoring revocations into redis failed; retrying every second',
      recovered: 'revocation restore works again',
    });
  }

  /** Starts looking; resolves after the first look (which never throws: a failure is retried). */
  start(): Promise<void> {
    this.opts.redis.off('ready', this.onReady).on('ready', this.onReady);
    return this.periodic.start();
  }

  async stop(): Promise<void> {
    this.opts.redis.off('ready', this.onReady);
    await this.periodic.stop();
  }

  /** One look (shared by callers arriving while one runs). Exposed for tests. */
  tick(): Promise<void> {
    return this.periodic.tick();
  }

  private async look(): Promise<void> {
    const read = await guard('read data epoch', async () => this.opts.redis.get(this.opts.epochKey));
    const seen = await this.epoch.look(read);
    if (seen === 'lost') this.owed = 'loss';
    if (!this.owed) return;
    const n = await this.opts.restore();
    if (this.owed === 'loss') {
      this.opts.logger.warn({ restored: n }, `redis restarted without data; restored ${n} revocations from the database`);
      await this.epoch.renew();
    } else {
      this.opts.logger.debug({ restored: n }, 'revocations restored into redis from the database');
    }
    this.owed = undefined;
  }
}
