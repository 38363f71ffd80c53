// The OfflineStore contract on a real PostgreSQL, in its own schema.
import pino from 'pino';
import { describe } from 'vitest';
import { DATABASE_URL, dropSchema, has, uniqueSchema } from '../../test/helpers/services.js';
import { describeOfflineContract } from './offline.contract.js';
import { openDatabase } from './index.js';
import { testDbConfig } from '../../test/helpers/db/config.js';

describe.skipIf(!(await has('postgres')))('PostgreSQL', () => {
  describeOfflineContract('PostgreSQL', async () => {
    const schema = uniqueSchema('offl');
    const db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true }), pino({ level: 'silent' }));
    return { db, cleanup: () => dropSchema(schema) };
  });
});
