// Group commit without a timer: the first caller starts a flush at once; callers arriving while a
// flush is in flight queue up and all go in the next one. Under load, batches grow by themselves
// (one transaction and one WAL flush for many messages); when idle, a message waits for nothing.

/** What a flush reports for each item, in order: batch operations return results, never throw. */
export type Settled<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: unknown };

export interface GroupCommitOptions {
  /** Largest batch; the rest waits for the next flush (bounds statement size and lock count). */
  readonly maxBatch: number;
}

interface Waiter<I, R> {
  readonly item: I;
  resolve(value: R): void;
  reject(error: unknown): void;
}

export class GroupCommit<I, R> {
  readonly #flush: (items: readonly I[]) => Promise<readonly Settled<R>[]>;
  readonly #maxBatch: number;
  #queue: Waiter<I, R>[] = [];
  #running = false;
  #idle: (() => void)[] = [];

  constructor(flush: (items: readonly I[]) => Promise<readonly Settled<R>[]>, opts: GroupCommitOptions) {
    this.#flush = flush;
    this.#maxBatch = opts.maxBatch;
  }

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#running) void this.#drain();
    });
  }

  /** Items waiting for a flush (not counting the one in flight). */
  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves once nothing is queued or in flight (for close()). */
  idle(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        let results: readonly Settled<R>[];
        try {
          results = await this.#flush(batch.map((w) => w.item));
        } catch (error) {
          // A flush must settle every item itself; if it threw, every caller gets that error.
          results = batch.map(() => ({ ok: false as const, error }));
        }
        batch.forEach((w, i) => {
          const r = results[i];
          if (!r) w.reject(new Error('group commit: the flush returned no result for this item'));
          else if (r.ok) w.resolve(r.value);
          else w.reject(r.error);
        });
      }
    } finally {
      this.#running = false;
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }
}
