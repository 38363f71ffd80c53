// A counting semaphore per endpoint: at most `limit` deliveries to one endpoint in flight, so a
// slow endpoint holds its own slots only and the others go on.
export class ConcurrencyLimit {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(public limit: number) {}

  /** Deliveries waiting for a slot. */
  get waiting(): number {
    return this.queue.length;
  }

  get inFlight(): number {
    return this.active;
  }

  acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push(resolve));
  }

  release(): void {
    const next = this.queue.shift();
    if (next)
      next(); // the slot passes straight to the next waiter
    else this.active--;
  }
}
