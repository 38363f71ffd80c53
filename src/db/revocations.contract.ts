// The RevocationLog contract (`chatd token revoke`'s durable record), run against PGlite
// (revocations.test.ts) and PostgreSQL (revocations.int.test.ts): the later instant wins whatever
// the order, concurrent records keep the latest, other subjects and tenants are untouched, the list
// pages through every record once, and restoreRevocations writes the records into a store without
// moving a later instant there back.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restoreRevocations } from '../ops/revocation.js';
import { MemoryRevocationStore } from '../store/memory/memory-erasure.js';
import type { KyselyDatabase } from './database.js';
import type { Revocation } from './ports.js';

const uid = (p: string) => `${p}-${randomBytes(5).toString('hex')}`;
const T0 = Date.parse('2026-11-20T10:00:00.123Z');

export function describeRevocationContract(name: string, open: () => Promise<{ db: KyselyDatabase; cleanup(): Promise<void> }>): void {
  describe(`RevocationLog contract: ${name}`, () => {
    let db: KyselyDatabase;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      ({ db, cleanup } = await open());
    });
    afterAll(async () => {
      await db?.close();
      await cleanup?.();
    });

    it('records the instant to the millisecond and only ever moves it forward', async () => {
      const t = uid('t');
      expect(await db.revocations.revokedAt(t, 'agent-1')).toBeNull();
      expect(await db.revocations.record(t, 'agent-1', T0)).toBe(T0);
      expect(await db.revocations.revokedAt(t, 'agent-1')).toBe(T0);
      // An earlier instant (a late retry, a clock behind) leaves the later one.
      expect(await db.revocations.record(t, 'agent-1', T0 - 60_000)).toBe(T0);
      expect(await db.revocations.revokedAt(t, 'agent-1')).toBe(T0);
      expect(await db.revocations.record(t, 'agent-1', T0 + 5_000)).toBe(T0 + 5_000);
      expect(await db.revocations.revokedAt(t, 'agent-1')).toBe(T0 + 5_000);
    });

    it('keeps the latest of concurrent records, whatever order they commit in', async () => {
      const t = uid('t');
      const instants = Array.from({ length: 30 }, (_, i) => T0 + ((i * 7919) % 30) * 1000);
      await Promise.all(instants.map((at) => db.revocations.record(t, 'agent-c', at)));
      expect(await db.revocations.revokedAt(t, 'agent-c')).toBe(Math.max(...instants));
    });

    it('keeps subjects and tenants apart', async () => {
      const [t1, t2] = [uid('t'), uid('t')];
      await db.revocations.record(t1, 'agent-7', T0);
      expect(await db.revocations.revokedAt(t1, 'agent-8')).toBeNull();
      expect(await db.revocations.revokedAt(t2, 'agent-7')).toBeNull();
      await db.revocations.record(t2, 'agent-7', T0 + 1);
      expect(await db.revocations.revokedAt(t1, 'agent-7')).toBe(T0);
      expect(await db.revocations.revokedAt(t2, 'agent-7')).toBe(T0 + 1);
    });

    it('lists every record once, page by page', async () => {
      // A tenant prefix of this test's own, so records of other tests and files sort apart.
      const p = uid('list');
      const want: Revocation[] = [];
      for (const t of [`${p}-a`, `${p}-b`])
        for (const u of ['u.1', 'u@2', 'u-3']) {
          const atMs = T0 + want.length;
          await db.revocations.record(t, u, atMs);
          want.push({ tenantId: t, userId: u, atMs });
        }
      const seen: Revocation[] = [];
      let after: { tenantId: string; userId: string } | undefined;
      for (let i = 0; i < 100; i++) {
        const page = await db.revocations.list(after, 2);
        seen.push(...page);
        if (page.length < 2) break;
        after = { tenantId: page[1]!.tenantId, userId: page[1]!.userId };
      }
      const ours = seen.filter((r) => r.tenantId.startsWith(p));
      expect(ours).toHaveLength(want.length);
      expect(new Set(ours.map((r) => `${r.tenantId}/${r.userId}`)).size).toBe(want.length);
      expect([...ours].sort((a, b) => a.atMs - b.atMs)).toEqual(want);
      // Paging by the keyset never hands out a record twice (the database's collation orders both).
      expect(new Set(seen.map((r) => `${r.tenantId}/${r.userId}`)).size).toBe(seen.length);
    });

    it('restoreRevocations writes every record into a store and moves none of its later instants back', async () => {
      const t = uid('t');
      await db.revocations.record(t, 'agent-r1', T0);
      await db.revocations.record(t, 'agent-r2', T0 + 1000);
      const store = new MemoryRevocationStore();
      // The store already holds a later revocation of r2 (recorded after the restore read it).
      await store.revoke(t, 'agent-r2', T0 + 9000);
      const n = await restoreRevocations(db.revocations, store);
      expect(n).toBeGreaterThanOrEqual(2);
      expect(await store.revokedAt(t, 'agent-r1')).toBe(T0);
      expect(await store.revokedAt(t, 'agent-r2')).toBe(T0 + 9000);
      expect(await store.revokedAt(t, 'agent-none')).toBeNull();
    });
  });
}
