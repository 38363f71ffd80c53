// `chatd migrate up|down|status`: the database schema, against database.url (PostgreSQL) or the
// embedded folder when no running server holds it (a running server has migrated it at start).
import type { Command } from 'commander';
import type { Kysely } from 'kysely';
import pino from 'pino';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';
import { embeddedDir, openKysely, type DatabaseConfig } from '../db/index.js';
import { lockHolder } from '../db/dir-lock.js';
import { Migrations, MigrationError, type MigrationStep } from '../db/migrations.js';
import { isInitialised } from '../db/pglite.js';

type Verb = 'up' | 'down' | 'status';

export function registerMigrateCommand(program: Command): void {
  const migrate = program
    .command('migrate')
    .description('Apply, revert or list database migrations (PostgreSQL at database.url, or the embedded folder).')
    .addHelpText(
      'after',
      '\nExamples:\n  $ DATABASE_URL=postgres://chatd@db/chat chatd migrate status\n  $ chatd migrate up --config chat-server.yaml\n  $ chatd migrate down --json\n\nThe embedded database (no database.url) migrates itself when `chatd serve` starts.',
    );
  migrate
    .command('status')
    .description('List migrations as applied or pending.')
    .option('--check', 'exit with code 2 when migrations are pending (for scripts)')
    .action(action(async (opts: { check?: boolean }, cmd: Command) => run('status', cmd, opts.check === true)));
  migrate
    .command('up')
    .description('Apply every pending migration.')
    .action(action(async (_opts: unknown, cmd: Command) => run('up', cmd, false)));
  migrate
    .command('down')
    .description('Revert the last applied migration (drops its tables and their data).')
    .action(action(async (_opts: unknown, cmd: Command) => run('down', cmd, false)));
}

async function run(verb: Verb, cmd: Command, check: boolean): Promise<void> {
  const { config } = await loadCliConfig(cmd);
  const json = globals(cmd).json === true;
  // Log lines go to stderr so stdout stays the table or the JSON.
  const logger = pino({ level: 'warn' }, pino.destination(2));

  if (!config.database.url) {
    const handled = embeddedPreflight(verb, config, json);
    if (handled) return;
  }

  const opened = await openKysely(config, logger);
  try {
    const migrations = await Migrations.open(opened.kysely as Kysely<unknown>, opened.schema);
    const where = { database: opened.location, dialect: opened.dialect, ...(opened.schema ? { schema: opened.schema } : {}) };
    if (verb === 'status') {
      const { migrations: list, unknown } = await migrations.status();
      const pending = list.filter((m) => m.status === 'pending').length;
      if (json) printJson({ ...where, migrations: list, unknown, pending });
      else {
        printTable(
          list.map((m) => ({ name: m.name, status: m.status, 'applied at': m.appliedAt })),
          ['name', 'status', 'applied at'],
        );
        for (const u of unknown) process.stdout.write(`note: ${u.name} is applied but unknown to this chatd (a newer version?)\n`);
        process.stdout.write(`${pending === 0 ? 'up to date' : `${pending} pending: run \`chatd migrate up\``} (${describe(where)})\n`);
      }
      if (check && pending > 0) process.exitCode = 2;
      return;
    }
    let steps: MigrationStep[];
    try {
      steps = verb === 'up' ? await migrations.up() : await migrations.down();
    } catch (err) {
      if (err instanceof MigrationError) {
        const failedSteps = (err as MigrationError & { steps?: MigrationStep[] }).steps ?? [];
        if (json) printJson({ ...where, steps: failedSteps, error: err.message });
        else if (failedSteps.length > 0) printTable(failedSteps, ['name', 'direction', 'status']);
      }
      throw err;
    }
    if (json) printJson({ ...where, steps });
    else if (steps.length === 0) {
      process.stdout.write(`${verb === 'up' ? 'nothing to apply: up to date' : 'nothing to revert'} (${describe(where)})\n`);
    } else {
      printTable(steps, ['name', 'direction', 'status']);
    }
  } finally {
    await opened.kysely.destroy().catch(() => undefined);
    opened.release();
  }
}

const describe = (w: { database: string; schema?: string }) => `${w.database}${w.schema ? `, schema ${w.schema}` : ''}`;

/**
 * The embedded folder: a running server holds it (and migrated it at start); a folder that does
 * not exist yet is created by the first `chatd serve` (or by `migrate up`). Returns true when the
 * command was answered here.
 */
function embeddedPreflight(verb: Verb, config: DatabaseConfig, json: boolean): boolean {
  const dir = embeddedDir(config);
  const holder = lockHolder(dir);
  if (holder !== null) {
    if (verb === 'down') {
      throw new CliError(
        `the embedded database in ${dir} is in use by a running chatd (pid ${holder}); stop it before reverting a migration`,
      );
    }
    const note = `the embedded database in ${dir} is in use by a running chatd (pid ${holder}), which applied every migration when it started`;
    if (json) printJson({ database: dir, dialect: 'pglite', heldBy: holder, upToDate: true, note });
    else process.stdout.write(`${note}; nothing to do\n`);
    return true;
  }
  if (!isInitialised(dir) && verb !== 'up') {
    if (verb === 'down') throw new CliError(`there is no embedded database in ${dir} yet: nothing to revert`);
    const note = `there is no embedded database in ${dir} yet; \`chatd serve\` creates and migrates it at its first start`;
    if (json) printJson({ database: dir, dialect: 'pglite', exists: false, note });
    else process.stdout.write(`${note}\n`);
    return true;
  }
  return false;
}
