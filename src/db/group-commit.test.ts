import { describe, expect, it } from 'vitest';
import { GroupCommit, type Settled } from './group-commit.js';

/** A flush the test completes by hand, recording each batch. */
function manualFlush() {
  const batches: number[][] = [];
  const release: (() => void)[] = [];
  const flush = (items: readonly number[]) =>
    new Promise<Settled<number>[]>((resolve) => {
      batches.push([...items]);
      release.push(() =>
        resolve(items.map((i) => (i < 0 ? { ok: false as const, error: new Error(`bad ${i}`) } : { ok: true as const, value: i * 10 }))),
      );
    });
  return { batches, release, flush };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('GroupCommit', () => {
  it('flushes a lone item at once (no timer) and queues arrivals for the next flush', async () => {
    const m = manualFlush();
    const gc = new GroupCommit(m.flush, { maxBatch: 100 });
    const first = gc.submit(1);
    expect(m.batches).toEqual([[1]]); // started synchronously
    const later = [gc.submit(2), gc.submit(3), gc.submit(4)];
    await tick();
    expect(m.batches).toEqual([[1]]); // waiting for the flush in flight
    m.release[0]!();
    expect(await first).toBe(10);
    await tick();
    expect(m.batches).toEqual([[1], [2, 3, 4]]);
    m.release[1]!();
    expect(await Promise.all(later)).toEqual([20, 30, 40]);
  });

  it('respects maxBatch and settles each item with its own result', async () => {
    const m = manualFlush();
    const gc = new GroupCommit(m.flush, { maxBatch: 2 });
    const all = [1, 2, -3, 4, 5].map((i) =>
      gc.submit(i).then(
        (v) => `ok ${v}`,
        (e: Error) => e.message,
      ),
    );
    for (let i = 0; i < 3; i++) {
      await tick();
      m.release[i]!();
    }
    expect(await Promise.all(all)).toEqual(['ok 10', 'ok 20', 'bad -3', 'ok 40', 'ok 50']);
    expect(m.batches).toEqual([[1], [2, -3], [4, 5]]);
    await gc.idle();
  });

  it('a flush that throws fails its own batch only', async () => {
    let calls = 0;
    const gc = new GroupCommit<number, number>(
      async (items) => {
        calls++;
        if (calls === 1) throw new Error('boom');
        return items.map((i) => ({ ok: true as const, value: i }));
      },
      { maxBatch: 10 },
    );
    const a = gc.submit(1);
    const b = gc.submit(2);
    await expect(a).rejects.toThrow('boom');
    await expect(b).resolves.toBe(2);
  });

  it('runs up to maxInFlight flushes at once, and the rest waits for a free slot', async () => {
    const m = manualFlush();
    const gc = new GroupCommit(m.flush, { maxBatch: 100, maxInFlight: 2 });
    const a = gc.submit(1);
    const b = gc.submit(2);
    const later = [gc.submit(3), gc.submit(4)];
    expect(m.batches).toEqual([[1], [2]]); // two in flight, started synchronously
    expect(gc.inFlight).toBe(2);
    m.release[1]!(); // the second finishes first: its caller is answered, the queue goes next
    expect(await b).toBe(20);
    await tick();
    expect(m.batches).toEqual([[1], [2], [3, 4]]);
    m.release[0]!();
    m.release[2]!();
    expect(await a).toBe(10);
    expect(await Promise.all(later)).toEqual([30, 40]);
    await gc.idle();
    expect(gc.inFlight).toBe(0);
  });

  it('never puts one key in two flushes at once, and flushes each key in submission order', async () => {
    const m = manualFlush();
    // Key: the tens digit (11 and 12 share key 1).
    const gc = new GroupCommit(m.flush, { maxBatch: 100, maxInFlight: 3, key: (i: number) => String(Math.floor(i / 10)) });
    const done: number[] = [];
    const all = [11, 21, 12, 31, 22, 13].map((i) => gc.submit(i).then(() => void done.push(i)));
    // 11 and 21 start alone; the third flush skips 12, 22 and 13 (their keys are in flight) and takes 31.
    expect(m.batches).toEqual([[11], [21], [31]]);
    m.release[1]!(); // key 2 is free: 22 may go, key 1 still waits for 11
    await tick();
    expect(m.batches[3]).toEqual([22]);
    m.release[0]!(); // key 1 is free: 12 and 13 go together, in order
    await tick();
    expect(m.batches[4]).toEqual([12, 13]);
    m.release[2]!();
    m.release[3]!();
    m.release[4]!();
    await Promise.all(all);
    expect(done.filter((i) => i < 20)).toEqual([11, 12, 13]);
    expect(done.filter((i) => i >= 20 && i < 30)).toEqual([21, 22]);
  });

  it('starts a flush beside one in flight only once minOverlapBatch items can go', async () => {
    const m = manualFlush();
    const gc = new GroupCommit(m.flush, { maxBatch: 100, maxInFlight: 3, minOverlapBatch: 3 });
    const all = [1, 2, 3].map((i) => gc.submit(i));
    expect(m.batches).toEqual([[1]]); // alone at once; 2 and 3 are too few to overlap it
    all.push(gc.submit(4)); // three waiting: a second flush joins the first
    expect(m.batches).toEqual([[1], [2, 3, 4]]);
    all.push(gc.submit(5));
    m.release[1]!(); // the first is still in flight: 5 alone waits
    await tick();
    expect(m.batches).toHaveLength(2);
    m.release[0]!(); // nothing in flight: 5 goes at once, alone
    await tick();
    expect(m.batches[2]).toEqual([5]);
    m.release[2]!();
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40, 50]);
  });
});
