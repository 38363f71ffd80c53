// The OfflineStore contract on PGlite (a copy of the embedded template).
import fs from 'node:fs';
import pino from 'pino';
import { describeOfflineContract } from './offline.contract.js';
import { openDatabase } from './index.js';
import { freshPgliteDir } from '../../test/helpers/db/pglite-template.js';
import { testDbConfig } from '../../test/helpers/db/config.js';

describeOfflineContract('PGlite', async () => {
  const dir = await freshPgliteDir('offline');
  const db = await openDatabase(testDbConfig({ embeddedDir: dir }), pino({ level: 'silent' }));
  return { db, cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }) };
});
