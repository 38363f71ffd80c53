// The RevocationLog contract on PGlite (a copy of the embedded template).
import fs from 'node:fs';
import pino from 'pino';
import { describeRevocationContract } from './revocations.contract.js';
import { openDatabase } from './index.js';
import { freshPgliteDir } from '../../test/helpers/db/pglite-template.js';
import { testDbConfig } from '../../test/helpers/db/config.js';

describeRevocationContract('PGlite', async () => {
  const dir = await freshPgliteDir('revocations');
  const db = await openDatabase(testDbConfig({ embeddedDir: dir }), pino({ level: 'silent' }));
  return { db, cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }) };
});
