// The RevocationLog port over Kysely (both dialects): one row per (tenant, subject) in
// `revocations` (migration 0008), whose instant only moves forward — an upsert keeping the greater
// of the stored and the given instant, so concurrent revokes from several nodes or CLIs never leave
// the earlier one (the same rule as the store's script).
import { sql, type Kysely } from 'kysely';
import { toQueryError } from './db-errors.js';
import type { Revocation, RevocationLog } from './ports.js';
import type { Tables } from './schema.js';

const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (err) {
    throw toQueryError(err);
  }
};

const ms = (v: Date | string) => (v instanceof Date ? v : new Date(v)).getTime();

export class KyselyRevocationLog implements RevocationLog {
  constructor(private readonly db: Kysely<Tables>) {}

  record(tenantId: string, userId: string, atMs: number): Promise<number> {
    const at = new Date(Math.floor(atMs)).toISOString();
    return guard(async () => {
      const { rows } = await sql<{ revoked_at: Date | string }>`
        insert into revocations (tenant_id, user_id, revoked_at) values (${tenantId}, ${userId}, ${at}::timestamptz)
        on conflict (tenant_id, user_id) do update set
          revoked_at = greatest(revocations.revoked_at, excluded.revoked_at),
          updated_at = now()
        returning revoked_at`.execute(this.db);
      return ms(rows[0]!.revoked_at);
    });
  }

  revokedAt(tenantId: string, userId: string): Promise<number | null> {
    return guard(async () => {
      const row = await this.db
        .selectFrom('revocations')
        .select('revoked_at')
        .where('tenant_id', '=', tenantId)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      return row ? ms(row.revoked_at) : null;
    });
  }

  list(after: { tenantId: string; userId: string } | undefined, limit: number): Promise<Revocation[]> {
    return guard(async () => {
      let q = this.db.selectFrom('revocations').select(['tenant_id', 'user_id', 'revoked_at']);
      if (after) q = q.where(({ eb, refTuple, tuple }) => eb(refTuple('tenant_id', 'user_id'), '>', tuple(after.tenantId, after.userId)));
      const rows = await q.orderBy('tenant_id').orderBy('user_id').limit(limit).execute();
      return rows.map((r) => ({ tenantId: r.tenant_id, userId: r.user_id, atMs: ms(r.revoked_at) }));
    });
  }
}
