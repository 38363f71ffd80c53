// The RevocationLog contract on a real PostgreSQL, in its own schema.
import pino from 'pino';
import { describe } from 'vitest';
import { DATABASE_URL, dropSchema, has, uniqueSchema } from '../../test/helpers/services.js';
import { describeRevocationContract } from './revocations.contract.js';
import { openDatabase } from './index.js';
import { testDbConfig } from '../../test/helpers/db/config.js';

describe.skipIf(!(await has('postgres')))('PostgreSQL', () => {
  describeRevocationContract('PostgreSQL', async () => {
    const schema = uniqueSchema('revo');
    const db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true }), pino({ level: 'silent' }));
    return { db, cleanup: () => dropSchema(schema) };
  });
});
