// A database config for tests: the schema's defaults plus what the test sets.
import type { Config } from '../../../src/config/schema.js';
import type { DatabaseConfig } from '../../../src/db/index.js';

export function testDbConfig(database: Partial<Config['database']>, dataDir = '/nonexistent'): DatabaseConfig {
  return {
    dataDir,
    database: { poolSize: 10, connectTimeoutMs: 5000, statementTimeoutMs: 10000, autoMigrate: false, ...database },
  };
}
