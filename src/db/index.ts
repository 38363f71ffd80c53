// Opens the database chosen by config: PostgreSQL when database.url is set, else embedded PGlite
// in database.embeddedDir (default <dataDir>/data). The embedded database migrates itself; a
// PostgreSQL database only with database.autoMigrate, otherwise start-up stops on pending
// migrations and says to run `chatd migrate up`.
import path from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import type { PGliteOptions } from '@electric-sql/pglite';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { DependencyError } from '../errors.js';
import { dbFlushDuration, dbFlushSize } from '../observability/metrics.js';
import { KyselyDatabase, type Dialect } from './database.js';
import { withCatalogIntrospector } from './dialect.js';
import { DatabaseLockedError, lockDir, lockHolder } from './dir-lock.js';
import { Migrations, MigrationError } from './migrations.js';
import { createPglite, isInitialised } from './pglite.js';
import { createPostgresPool, redactUrl } from './postgres.js';
import type { Tables } from './schema.js';

export type { Database } from './ports.js';
export { KyselyDatabase } from './database.js';
export { MigrationError } from './migrations.js';
export { DatabaseLockedError };

/** What the database needs from the config (tests and the CLI pass just this). */
export type DatabaseConfig = Pick<Config, 'database' | 'dataDir'>;

export interface OpenOptions {
  /** Extra PGlite options (the single binary's assets, tests' tuning). */
  readonly pglite?: Partial<PGliteOptions>;
  /** Called after each group-commit flush with its size and duration (metrics, benchmark). */
  readonly onFlush?: (size: number, ms: number) => void;
}

/** The embedded database's folder. */
export const embeddedDir = (config: DatabaseConfig) => path.resolve(config.database.embeddedDir ?? path.join(config.dataDir, 'data'));

/** Kysely on the configured dialect, before any migration check (used by `chatd migrate`). */
export interface OpenedKysely {
  readonly kysely: Kysely<Tables>;
  readonly dialect: Dialect;
  /** The schema migrations and tables live in (PostgreSQL `database.schema`). */
  readonly schema: string | undefined;
  /** Where the data is: the redacted URL or the folder. */
  readonly location: string;
  /** Releases whatever the open took beyond Kysely (the folder lock). */
  readonly release: () => void;
}

export async function openKysely(config: DatabaseConfig, logger: Logger, opts: OpenOptions = {}): Promise<OpenedKysely> {
  const url = config.database.url;
  if (url) {
    const pool = createPostgresPool({ ...config.database, url }, logger);
    const kysely = new Kysely<Tables>({ dialect: withCatalogIntrospector(new PostgresDialect({ pool })) });
    const location = redactUrl(url);
    try {
      const client = await pool.connect();
      client.release();
    } catch (err) {
      await kysely.destroy().catch(() => undefined);
      throw new DependencyError('postgres', `cannot connect to ${location}: ${(err as Error).message}`, { cause: err });
    }
    return { kysely, dialect: 'postgres', schema: config.database.schema, location, release: () => undefined };
  }
  const dir = embeddedDir(config);
  const lock = lockDir(dir);
  try {
    const first = !isInitialised(dir);
    if (first) logger.info({ dir }, 'creating the embedded database (PGlite); the first start takes a few seconds');
    const started = Date.now();
    const pglite = await createPglite(dir, opts.pglite);
    logger.debug({ dir, ms: Date.now() - started, first }, 'embedded database open');
    const kysely = new Kysely<Tables>({ dialect: withCatalogIntrospector(new PGliteDialect(pglite)) });
    return { kysely, dialect: 'pglite', schema: undefined, location: dir, release: () => lock.release() };
  } catch (err) {
    lock.release();
    throw err;
  }
}

export async function openDatabase(config: DatabaseConfig, logger: Logger, opts: OpenOptions = {}): Promise<KyselyDatabase> {
  const log = logger.child({ component: 'db' });
  const opened = await openKysely(config, log, opts);
  const { kysely, dialect, schema, location } = opened;
  try {
    const migrations = await Migrations.open(kysely as Kysely<unknown>, schema);
    const { migrations: list, unknown } = await migrations.status();
    if (unknown.length > 0) {
      log.warn(
        { unknown: unknown.map((u) => u.name) },
        'the database has migrations this chatd does not know (a newer version migrated it); continuing',
      );
    }
    const pending = list.filter((m) => m.status === 'pending').map((m) => m.name);
    if (pending.length > 0) {
      if (dialect === 'pglite' || config.database.autoMigrate) {
        const steps = await migrations.up();
        log.info({ applied: steps.map((s) => s.name), location }, 'database migrated');
      } else {
        throw pendingError(location, schema, pending);
      }
    }
  } catch (err) {
    await kysely.destroy().catch(() => undefined);
    opened.release();
    if (err instanceof MigrationError) throw err;
    throw err instanceof DependencyError
      ? err
      : new DependencyError('postgres', `cannot prepare ${location}: ${(err as Error).message}`, { cause: err });
  }
  log.info({ dialect, location }, 'database ready');
  return new KyselyDatabase(kysely, dialect, log, {
    onClose: opened.release,
    // Accept flushes in flight: all of the pool but one connection, kept for reads and the relay.
    maxInFlight: Math.max(1, config.database.poolSize - 1),
    onFlush: (size, ms) => {
      dbFlushSize.observe(size);
      dbFlushDuration.observe(ms / 1000);
      opts.onFlush?.(size, ms);
    },
  });
}

/**
 * A quick check before `serve` starts listening, for the two faults waiting cannot cure: the
 * embedded folder held by another process, and a PostgreSQL database with pending migrations and no
 * database.autoMigrate. Both throw (serve stops with the message). A PostgreSQL that cannot be
 * reached is not fatal here: the node starts, reports not ready, and opens the database when it can.
 */
export async function checkDatabase(config: DatabaseConfig, logger: Logger): Promise<void> {
  if (!config.database.url) {
    const dir = embeddedDir(config);
    const holder = lockHolder(dir);
    if (holder !== null && holder !== process.pid) throw new DatabaseLockedError(dir, holder);
    return;
  }
  if (config.database.autoMigrate) return;
  let opened: OpenedKysely;
  try {
    opened = await openKysely(config, logger);
  } catch (err) {
    if (err instanceof DependencyError) return;
    throw err;
  }
  try {
    const pending = await (await Migrations.open(opened.kysely as Kysely<unknown>, opened.schema)).pending();
    if (pending.length > 0) {
      throw pendingError(opened.location, opened.schema, pending);
    }
  } catch (err) {
    if (err instanceof MigrationError) throw err;
    logger.warn({ err: { message: (err as Error).message } }, 'could not check the database migrations at start; continuing');
  } finally {
    await opened.kysely.destroy().catch(() => undefined);
  }
}

function pendingError(location: string, schema: string | undefined, pending: readonly string[]): MigrationError {
  return new MigrationError(
    `the database ${location}${schema ? ` (schema ${schema})` : ''} has ${pending.length} pending migration(s): ${pending.join(', ')}; ` +
      'run `chatd migrate up` (or set database.autoMigrate: true) and start again',
  );
}
