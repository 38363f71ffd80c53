// Tests' embedded databases: PGlite's initdb takes ~5 s and ~800 MB, so it runs once per content of
// the schema — one initialised, migrated template folder (keyed by PGlite's version and the source
// of migrations.ts, accept-batch-sql.ts and pglite.ts), copied for each test that needs a database.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import pino from 'pino';
import { openDatabase } from '../../../src/db/index.js';
import { LOCK_FILE } from '../../../src/db/dir-lock.js';
import { testDbConfig } from './config.js';

const here = path.dirname(new URL(import.meta.url).pathname);

function templateKey(): string {
  const require = createRequire(import.meta.url);
  const pkgPath = path.join(path.dirname(require.resolve('@electric-sql/pglite')), '..', 'package.json');
  const h = createHash('sha256');
  h.update(fs.readFileSync(pkgPath));
  for (const f of ['src/db/migrations.ts', 'src/db/accept-batch-sql.ts', 'src/db/pglite.ts'])
    h.update(fs.readFileSync(path.join(here, '../../..', f)));
  return h.digest('hex').slice(0, 16);
}

let template: Promise<string> | undefined;

/** The template folder, created once (concurrent test files race safely: build, then rename). */
export function pgliteTemplate(): Promise<string> {
  template ??= (async () => {
    const dir = path.join(os.tmpdir(), `chatd-pglite-template-${templateKey()}`);
    if (fs.existsSync(path.join(dir, 'READY'))) return dir;
    const build = `${dir}.build-${process.pid}-${randomBytes(3).toString('hex')}`;
    const db = await openDatabase(testDbConfig({ embeddedDir: build }), pino({ level: 'silent' }));
    await db.close();
    fs.rmSync(path.join(build, LOCK_FILE), { force: true });
    fs.writeFileSync(path.join(build, 'READY'), new Date().toISOString());
    try {
      fs.renameSync(build, dir);
    } catch {
      // Another test file won the race: use its template.
      fs.rmSync(build, { recursive: true, force: true });
    }
    if (!fs.existsSync(path.join(dir, 'READY'))) throw new Error(`PGlite template ${dir} is incomplete`);
    return dir;
  })();
  return template;
}

/** A fresh, migrated embedded database folder (a copy of the template); remove it after the test. */
export async function freshPgliteDir(label = 'db'): Promise<string> {
  const src = await pgliteTemplate();
  const dest = fs.mkdtempSync(path.join(os.tmpdir(), `chatd-${label}-`));
  fs.cpSync(src, dest, { recursive: true });
  fs.rmSync(path.join(dest, 'READY'), { force: true });
  return dest;
}
