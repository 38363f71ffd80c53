// The one set of migrations for both dialects (PostgreSQL and PGlite speak the same SQL), provided in
// code so the single binary needs no migration folder. Names sort in the order they apply; never
// edit an applied migration: add the next one.
import { Migrator, sql, type Kysely, type Migration, type MigrationResultSet } from 'kysely';

const statements = (list: readonly string[]) => async (db: Kysely<unknown>) => {
  // One statement per call: PGlite's extended protocol takes a single statement at a time.
  for (const s of list) await sql.raw(s).execute(db);
};

export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_init': {
    up: statements([
      `create table conversations (
        id uuid primary key,
        tenant_id text not null,
        session_id text not null,
        user_id text,
        fingerprint text,
        status text not null default 'open' check (status in ('open', 'closed')),
        last_seq integer not null default 0 check (last_seq >= 0),
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        -- session ids are unique across tenants: a second tenant's claim on one is refused as foreign
        constraint conversations_session_id_key unique (session_id)
      )`,
      `create index conversations_tenant_user_idx on conversations (tenant_id, user_id) where user_id is not null`,
      `create table messages (
        id uuid primary key,
        pos bigint generated always as identity,
        tenant_id text not null,
        conversation_id uuid not null references conversations (id) on delete cascade,
        session_id text not null,
        seq integer not null check (seq > 0),
        sender_type text not null check (sender_type in ('visitor', 'user', 'agent', 'system')),
        sender_id text not null,
        sender_verified boolean not null,
        text text not null,
        client_message_id text,
        content_hash text not null,
        meta jsonb not null,
        created_at timestamptz not null,
        constraint messages_conversation_seq_key unique (conversation_id, seq),
        constraint messages_idempotency_key unique (tenant_id, conversation_id, sender_id, client_message_id)
      )`,
      `create index messages_conversation_pos_idx on messages (conversation_id, pos)`,
      `create table read_pointers (
        conversation_id uuid not null references conversations (id) on delete cascade,
        reader_id text not null,
        tenant_id text not null,
        message_id uuid not null,
        seq integer not null,
        updated_at timestamptz not null default now(),
        primary key (conversation_id, reader_id)
      )`,
      `create table outbox (
        message_id uuid primary key references messages (id) on delete cascade,
        created_at timestamptz not null default now()
      )`,
      `create index outbox_created_at_idx on outbox (created_at)`,
    ]),
    down: statements([
      'drop table if exists outbox',
      'drop table if exists read_pointers',
      'drop table if exists messages',
      'drop table if exists conversations',
    ]),
  },
  '0002_retention_index': {
    // Per-tenant retention (tenants[].retention.messages) deletes by tenant and age.
    up: statements(['create index messages_tenant_created_idx on messages (tenant_id, created_at)']),
    down: statements(['drop index if exists messages_tenant_created_idx']),
  },
};

export const LATEST_MIGRATION = Object.keys(MIGRATIONS).sort().at(-1)!;

export type MigrationStatus = {
  readonly name: string;
  readonly status: 'applied' | 'pending';
  /** ISO 8601 when applied. */
  readonly appliedAt: string | null;
};

/** A migration found in the database that this build does not know (a newer chatd migrated it). */
export interface UnknownMigration {
  readonly name: string;
  readonly appliedAt: string | null;
}

export class MigrationError extends Error {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'MigrationError';
  }
}

export type MigrationStep = {
  readonly name: string;
  readonly direction: 'up' | 'down';
  readonly status: 'done' | 'failed' | 'skipped';
};

/** Kysely's Migrator over the in-code set, in the configured schema (or the search_path's first). */
export class Migrations {
  readonly #db: Kysely<unknown>;
  readonly #migrator: Migrator;

  readonly #schema: string;

  /**
   * Migrations in `schema`, or in the connection's current schema (the first existing one on its
   * search_path). Always naming the schema matters: without it Kysely looks for its migration
   * table in every schema of the database and may find another application's.
   */
  static async open(db: Kysely<unknown>, schema?: string): Promise<Migrations> {
    if (schema) return new Migrations(db, schema);
    const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
    return new Migrations(db, rows[0]?.schema ?? 'public');
  }

  private constructor(db: Kysely<unknown>, schema: string) {
    this.#db = db;
    this.#schema = schema;
    this.#migrator = new Migrator({
      db,
      provider: { getMigrations: async () => ({ ...MIGRATIONS }) },
      migrationTableSchema: schema,
    });
  }

  /** Every known migration with its state, plus applied ones this build does not know. */
  async status(): Promise<{ migrations: MigrationStatus[]; unknown: UnknownMigration[] }> {
    const infos = await this.#migrator.getMigrations();
    const migrations = infos.map((m) => ({
      name: m.name,
      status: m.executedAt ? ('applied' as const) : ('pending' as const),
      appliedAt: m.executedAt ? new Date(m.executedAt).toISOString() : null,
    }));
    // Kysely lists only the provider's migrations; read the table for ones from a newer build.
    const applied = await this.#appliedNames();
    const unknown = applied.filter((a) => !(a.name in MIGRATIONS));
    return { migrations, unknown };
  }

  async pending(): Promise<string[]> {
    const { migrations } = await this.status();
    return migrations.filter((m) => m.status === 'pending').map((m) => m.name);
  }

  /** Applies every pending migration (one transaction each, under Kysely's advisory lock). */
  async up(): Promise<MigrationStep[]> {
    return this.#run(await this.#migrator.migrateToLatest());
  }

  /** Reverts the last applied migration. */
  async down(): Promise<MigrationStep[]> {
    return this.#run(await this.#migrator.migrateDown());
  }

  #run(set: MigrationResultSet): MigrationStep[] {
    const steps = (set.results ?? []).map((r) => ({
      name: r.migrationName,
      direction: r.direction === 'Up' ? ('up' as const) : ('down' as const),
      status: r.status === 'Success' ? ('done' as const) : r.status === 'Error' ? ('failed' as const) : ('skipped' as const),
    }));
    if (set.error) {
      const cause = set.error as Error;
      const failed = steps.find((s) => s.status === 'failed');
      throw Object.assign(
        new MigrationError(`migration ${failed ? `${failed.name} ` : ''}failed: ${cause?.message ?? String(cause)}`, { cause }),
        { steps },
      );
    }
    return steps;
  }

  async #appliedNames(): Promise<UnknownMigration[]> {
    try {
      const { rows } = await sql<{ name: string; timestamp: string }>`select name, timestamp from ${sql.table(this.#table())}`.execute(
        this.#db,
      );
      return rows.map((r) => ({ name: r.name, appliedAt: r.timestamp ?? null }));
    } catch (err) {
      // 42P01: the table does not exist yet (nothing applied). Anything else is real.
      if ((err as { code?: string }).code === '42P01') return [];
      throw err;
    }
  }

  #table(): string {
    return `"${this.#schema.replace(/"/g, '""')}".kysely_migration`;
  }
}
