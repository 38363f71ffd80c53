// The PostgreSQL side: a `pg` pool configured from `database.*`. Kysely gets only the pool.
import pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';

/** The URL with its password hidden, for messages and logs. */
export const redactUrl = (url: string) => url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');

export function createPostgresPool(db: Config['database'] & { url: string }, logger: Logger): pg.Pool {
  const options = [
    // database.schema is validated as [a-z_][a-z0-9_]* (no quoting needed).
    ...(db.schema ? [`-c search_path=${db.schema}`] : []),
    // A transaction left open (a publish that hangs while the outbox sweep holds its rows) must not
    // hold locks forever.
    '-c idle_in_transaction_session_timeout=60000',
  ].join(' ');
  const pool = new pg.Pool({
    connectionString: db.url,
    max: db.poolSize,
    connectionTimeoutMillis: db.connectTimeoutMs,
    ...(db.statementTimeoutMs > 0 ? { statement_timeout: db.statementTimeoutMs } : {}),
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'chatd',
    options,
  });
  // Without listeners, an error on an idle connection (server restart, network drop) or on a
  // checked-out one between queries would crash the process. The failed query itself still rejects.
  pool.on('error', (err) =>
    logger.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'PostgreSQL connection lost'),
  );
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.debug({ err: { message: err.message } }, 'PostgreSQL client error'));
  });
  return pool;
}
