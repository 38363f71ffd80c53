// Opens the database chosen by config: PostgreSQL when database.url is set, else embedded PGlite.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Database } from './ports.js';

export async function openDatabase(config: Config, logger: Logger): Promise<Database> {
  throw new Error(`the database is not built yet (issue 3): ${config.database.url ? 'postgres' : 'pglite'} ${typeof logger}`);
}
