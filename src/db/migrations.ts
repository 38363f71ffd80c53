// The one set of migrations for both dialects (PostgreSQL and PGlite speak the same SQL), provided in
// code so the single binary needs no migration folder. Names sort in the order they apply; never
// edit an applied migration: add the next one.
import { ACCEPT_BATCH_SQL, ACCEPT_BATCH_SQL_0006 } from './accept-batch-sql.js';
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
  '0003_conversations_inbox': {
    // The agents' side of a conversation (DESIGN.md "Conversations"): status open|pending|resolved
    // (the old 'closed' becomes 'resolved'), an assignee, both read pointers with the unread counts
    // they imply, the inbox summary's counters, the contact fields, and the keyset indexes of the
    // inbox list — every one starting with the tenant. last_activity_at stays null until the first
    // message or change, so a widget that connected and never wrote is not in the inbox.
    up: statements([
      `alter table conversations drop constraint if exists conversations_status_check`,
      `update conversations set status = 'resolved' where status = 'closed'`,
      `alter table conversations add constraint conversations_status_check check (status in ('open', 'pending', 'resolved'))`,
      `alter table conversations
        add column assignee text,
        add column agents_read_seq integer not null default 0,
        add column visitor_read_seq integer not null default 0,
        add column unread_by_agents integer not null default 0,
        add column unread_by_visitor integer not null default 0,
        add column message_count integer not null default 0,
        add column last_message_id uuid,
        add column last_activity_at timestamptz,
        add column contact_email text,
        add column contact_name text`,
      // Existing conversations: counters from their messages, pointers from the per-reader ones.
      `update conversations c set
        message_count = s.n,
        last_message_id = s.last_id,
        last_activity_at = s.last_at
      from (
        select conversation_id,
               count(*) filter (where sender_type <> 'system') as n,
               (array_agg(id order by seq desc) filter (where sender_type <> 'system'))[1] as last_id,
               max(created_at) as last_at
        from messages group by conversation_id
      ) s
      where s.conversation_id = c.id`,
      `update conversations c set
        agents_read_seq = coalesce((select max(r.seq) from read_pointers r
                                    where r.conversation_id = c.id and r.reader_id like 'agent:%'), 0),
        visitor_read_seq = coalesce((select max(r.seq) from read_pointers r
                                     where r.conversation_id = c.id and r.reader_id not like 'agent:%'), 0)`,
      `update conversations c set
        unread_by_agents = (select count(*) from messages m where m.conversation_id = c.id
                            and m.sender_type in ('visitor', 'user') and m.seq > c.agents_read_seq),
        unread_by_visitor = (select count(*) from messages m where m.conversation_id = c.id
                             and m.sender_type = 'agent' and m.seq > c.visitor_read_seq)`,
      // The inbox list: one index per filter shape, newest activity first, id as the tie-break.
      `create index conversations_inbox_activity_idx on conversations (tenant_id, last_activity_at desc, id desc)
        where last_activity_at is not null`,
      `create index conversations_inbox_status_idx on conversations (tenant_id, status, last_activity_at desc, id desc)
        where last_activity_at is not null`,
      `create index conversations_inbox_assignee_idx on conversations (tenant_id, assignee, last_activity_at desc, id desc)
        where last_activity_at is not null`,
      `create index conversations_inbox_assignee_status_idx
        on conversations (tenant_id, assignee, status, last_activity_at desc, id desc)
        where last_activity_at is not null`,
      // conversation_updated events waiting to be published: the summary taken inside the
      // transaction that changed the conversation, relayed like the message outbox.
      `create table conversation_outbox (
        id uuid primary key,
        tenant_id text not null,
        conversation_id uuid not null references conversations (id) on delete cascade,
        version integer not null,
        summary jsonb not null,
        created_at timestamptz not null default now()
      )`,
      `create index conversation_outbox_created_at_idx on conversation_outbox (created_at)`,
      `create index conversation_outbox_conversation_idx on conversation_outbox (conversation_id)`,
      // Auto-assignment's round-robin position per tenant; its row lock serialises a tenant's
      // automatic assignments (caps are then counted without a race).
      `create table auto_assign_cursor (
        tenant_id text primary key,
        last_agent_id text not null,
        updated_at timestamptz not null default now()
      )`,
    ]),
    down: statements([
      'drop table if exists auto_assign_cursor',
      'drop table if exists conversation_outbox',
      'drop index if exists conversations_inbox_assignee_status_idx',
      'drop index if exists conversations_inbox_assignee_idx',
      'drop index if exists conversations_inbox_status_idx',
      'drop index if exists conversations_inbox_activity_idx',
      `alter table conversations
        drop column if exists assignee,
        drop column if exists agents_read_seq,
        drop column if exists visitor_read_seq,
        drop column if exists unread_by_agents,
        drop column if exists unread_by_visitor,
        drop column if exists message_count,
        drop column if exists last_message_id,
        drop column if exists last_activity_at,
        drop column if exists contact_email,
        drop column if exists contact_name`,
      `alter table conversations drop constraint if exists conversations_status_check`,
      `update conversations set status = 'closed' where status <> 'open'`,
      `alter table conversations add constraint conversations_status_check check (status in ('open', 'closed'))`,
    ]),
  },
  '0004_offline_email': {
    // Offline continuity (DESIGN.md): agent replies emailed to visitors who left. One job row per
    // conversation (the lease that keeps nodes from racing: claimed with FOR UPDATE SKIP LOCKED and
    // a lease id), `emailed_seq` = the last agent message already emailed (what was sent, so a
    // retry sends nothing twice), a log of every email sent or refused, and the unsubscribed
    // addresses per tenant. Jobs and the log go with their conversation (erasure, retention of the
    // conversation); unsubscribes outlive it, so an erased visitor who opted out stays out.
    up: statements([
      `create table email_jobs (
        conversation_id uuid primary key references conversations (id) on delete cascade,
        tenant_id text not null,
        pending boolean not null default true,
        due_at timestamptz not null,
        attempts integer not null default 0,
        lease_id uuid,
        lease_until timestamptz,
        emailed_seq integer not null default 0,
        requests integer not null default 0,
        last_error text,
        updated_at timestamptz not null default now()
      )`,
      `create index email_jobs_due_idx on email_jobs (due_at) where pending`,
      `create table email_deliveries (
        id uuid primary key,
        tenant_id text not null,
        conversation_id uuid not null references conversations (id) on delete cascade,
        session_id text not null,
        recipient text not null,
        status text not null check (status in ('sent', 'failed')),
        first_seq integer not null,
        last_seq integer not null,
        messages integer not null,
        attempts integer not null,
        error text,
        created_at timestamptz not null default now()
      )`,
      `create index email_deliveries_created_idx on email_deliveries (created_at desc, id)`,
      `create index email_deliveries_conversation_idx on email_deliveries (conversation_id)`,
      `create table email_unsubscribes (
        tenant_id text not null,
        email text not null,
        created_at timestamptz not null default now(),
        primary key (tenant_id, email)
      )`,
    ]),
    down: statements([
      'drop table if exists email_unsubscribes',
      'drop table if exists email_deliveries',
      'drop table if exists email_jobs',
    ]),
  },
  '0005_tenant_notify': {
    // A second kind of email job per conversation: the tenant's notification address told that a
    // visitor wrote while nobody was available. Same lease and debounce machinery; `emailed_seq` of
    // a 'tenant' job is the last visitor message notified. Deliveries say which kind they were.
    up: statements([
      `alter table email_jobs add column kind text not null default 'visitor' check (kind in ('visitor', 'tenant'))`,
      'alter table email_jobs drop constraint email_jobs_pkey',
      'alter table email_jobs add primary key (conversation_id, kind)',
      `alter table email_deliveries add column kind text not null default 'visitor' check (kind in ('visitor', 'tenant'))`,
    ]),
    down: statements([
      `delete from email_jobs where kind = 'tenant'`,
      `delete from email_deliveries where kind = 'tenant'`,
      'alter table email_deliveries drop column kind',
      'alter table email_jobs drop constraint email_jobs_pkey',
      'alter table email_jobs drop column kind',
      'alter table email_jobs add primary key (conversation_id)',
    ]),
  },
  '0006_accept_batch': {
    // The message path's durable half as one function (accept.ts): a group-commit flush is one
    // autocommit call, one round trip, whatever its size, so several flushes can be in flight on
    // separate connections. See ACCEPT_BATCH_SQL.
    up: statements([ACCEPT_BATCH_SQL_0006]),
    down: statements(['drop function if exists chatd_accept_batch(text, json, json, text, text, jsonb)']),
  },
  '0007_conversation_version': {
    // conversation_updated's version as a counter of its own: one more, under the conversation's row
    // lock, on every change that writes an event (a message, a status or assignee change, the agents'
    // read, the contact, retention). The last seq it was before did not move on a read or a contact,
    // so two different summaries shared a version and a client keeping the highest could keep the
    // stale one. It starts at the last seq, the highest version any event had.
    up: statements([
      'alter table conversations add column version integer not null default 0',
      'update conversations set version = last_seq',
      ACCEPT_BATCH_SQL,
    ]),
    down: statements([ACCEPT_BATCH_SQL_0006, 'alter table conversations drop column if exists version']),
  },
  '0008_revocations': {
    // `chatd token revoke`: the durable record of each subject's revocation instant (the store holds
    // the copy every node reads; src/ops/revocation.ts writes here first and restores the store from
    // here). One row per (tenant, subject); the instant only moves forward (upsert with greatest()).
    up: statements([
      `create table revocations (
        tenant_id text not null,
        user_id text not null,
        revoked_at timestamptz not null,
        updated_at timestamptz not null default now(),
        primary key (tenant_id, user_id)
      )`,
    ]),
    down: statements(['drop table if exists revocations']),
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
