// Group commit without a timer: the first caller starts a flush at once; callers arriving while
// every flush slot is busy queue up and go in the next one. Under load, batches grow by themselves
// (one statement and one WAL flush for many messages); when idle, a message waits for nothing.
//
// Up to `maxInFlight` flushes run at once (each on its own connection), but a flush joins others
// already in flight only with at least `minOverlapBatch` items: every flush has a fixed cost (a
// round trip, a commit, the statement's start), so at light load one flush at a time with the
// items that gathered meanwhile is cheaper, and flushes overlap once the queue outgrows what one
// flush at a time can take without waiting. With a `key` (accept.ts:
// the conversation), the batches in flight never share a key: an item whose key is in flight waits
// for that flush to settle, so one key's items are flushed — and their callers answered — in the
// order they were submitted, one flush after the other.

/** What a flush reports for each item, in order: batch operations return results, never throw. */
export type Settled<R> = { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: unknown };

export interface GroupCommitOptions<I> {
  /** Largest batch; the rest waits for the next flush (bounds statement size and lock count). */
  readonly maxBatch: number;
  /** Flushes in flight at once (default 1). */
  readonly maxInFlight?: number;
  /** Items a flush needs to start while another is in flight (default 1: always). */
  readonly minOverlapBatch?: number;
  /** Items with the same key are never in two flushes at once, and flush in submission order. */
  readonly key?: (item: I) => string;
}

interface Waiter<I, R> {
  readonly item: I;
  resolve(value: R): void;
  reject(error: unknown): void;
}

export class GroupCommit<I, R> {
  readonly #flush: (items: readonly I[]) => Promise<readonly Settled<R>[]>;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  readonly #minOverlap: number;
  readonly #key: ((item: I) => string) | undefined;
  /** Keys of the batches in flight. */
  readonly #busy = new Set<string>();
  #queue: Waiter<I, R>[] = [];
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(flush: (items: readonly I[]) => Promise<readonly Settled<R>[]>, opts: GroupCommitOptions<I>) {
    this.#flush = flush;
    this.#maxBatch = opts.maxBatch;
    this.#maxInFlight = Math.max(1, Math.floor(opts.maxInFlight ?? 1));
    this.#minOverlap = Math.max(1, Math.min(opts.maxBatch, Math.floor(opts.minOverlapBatch ?? 1)));
    this.#key = opts.key;
  }

  submit(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#pump();
    });
  }

  /** Items waiting for a flush (not counting those in flight). */
  get queued(): number {
    return this.#queue.length;
  }

  /** Flushes running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Resolves once nothing is queued or in flight (for close()). */
  idle(): Promise<void> {
    if (this.#inFlight === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Starts flushes while a slot is free and something queued can go. */
  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      if (this.#inFlight > 0 && this.#queue.length < this.#minOverlap) return;
      const batch = this.#take(this.#inFlight > 0 ? this.#minOverlap : 1);
      if (batch.length === 0) return; // too few items can go now (their keys are in flight)
      this.#inFlight++;
      void this.#run(batch);
    }
  }

  /**
   * The next batch: the oldest items whose keys are not in flight, up to maxBatch; none when fewer
   * than `min` can go.
   */
  #take(min: number): Waiter<I, R>[] {
    const keyOf = this.#key;
    if (!keyOf) return this.#queue.length >= min ? this.#queue.splice(0, this.#maxBatch) : [];
    const batch: Waiter<I, R>[] = [];
    const rest: Waiter<I, R>[] = [];
    const keys: string[] = [];
    for (const w of this.#queue) {
      if (batch.length >= this.#maxBatch) {
        rest.push(w);
        continue;
      }
      const k = keyOf(w.item);
      if (this.#busy.has(k)) rest.push(w);
      else {
        batch.push(w);
        keys.push(k);
      }
    }
    if (batch.length < min) return [];
    // Marked busy only now: later items of a key taken above may join this same batch.
    for (const k of keys) this.#busy.add(k);
    this.#queue = rest;
    return batch;
  }

  async #run(batch: Waiter<I, R>[]): Promise<void> {
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
    if (this.#key) for (const w of batch) this.#busy.delete(this.#key(w.item));
    this.#inFlight--;
    this.#pump();
    if (this.#inFlight === 0 && this.#queue.length === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }
}
