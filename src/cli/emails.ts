// `chatd emails ls [--tenant T] [--failed | --sent] [--limit N] [--json]`: the visitor reply emails
// and tenant notifications sent or refused for good, newest first, and how many are pending
// (offline continuity). With PostgreSQL it reads the database directly; with the embedded defaults
// the database lives in the server process, so it asks its admin listener (GET /admin/emails).
import type { Command } from 'commander';
import type { Config } from '../config/schema.js';
import { openDatabase } from '../db/index.js';
import type { EmailDelivery } from '../db/ports.js';
import { ID_PATTERN, ID_SOURCE } from '../ids.js';
import { createLogger } from '../observability/logger.js';
import { adminGet } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';

interface LsOptions {
  tenant?: string;
  failed?: boolean;
  sent?: boolean;
  limit: string;
  adminUrl?: string;
}

interface Listing {
  readonly pending: number;
  readonly deliveries: EmailDelivery[];
}

const COLUMNS = ['at', 'kind', 'tenantId', 'sessionId', 'recipient', 'status', 'messages', 'attempts', 'error'] as const;

export function registerEmailsCommands(program: Command): void {
  const emails = program.command('emails').description('Agent replies emailed to visitors who left, and tenant notifications.');
  emails
    .command('ls')
    .description('List the reply emails sent or refused for good (newest first), and how many are pending.')
    .option('--tenant <tenant>', 'only this tenant')
    .option('--failed', 'only emails refused for good (a 5xx, or retries exhausted)')
    .option('--sent', 'only emails sent')
    .option('--limit <n>', 'how many (1-1000)', '50')
    .option('--admin-url <url>', 'admin listener of the running server (embedded defaults)')
    .addHelpText('after', '\nExamples:\n  $ chatd emails ls --failed\n  $ chatd emails ls --tenant acme --json | jq .pending')
    .action(
      action(async (opts: LsOptions, cmd: Command) => {
        if (opts.tenant !== undefined && !ID_PATTERN.test(opts.tenant))
          throw new CliError(`--tenant "${opts.tenant}" must match ${ID_SOURCE}`);
        if (opts.failed && opts.sent) throw new CliError('--failed and --sent exclude each other');
        if (!/^[0-9]{1,4}$/.test(opts.limit) || Number(opts.limit) < 1 || Number(opts.limit) > 1000) {
          throw new CliError('--limit must be an integer from 1 to 1000');
        }
        const { config } = await loadCliConfig(cmd);
        const status = opts.failed ? ('failed' as const) : opts.sent ? ('sent' as const) : undefined;
        const listing = config.database.url ? await listDirect(config, opts, status) : await listAdmin(config, opts, status);
        if (globals(cmd).json) {
          printJson(listing);
          return;
        }
        process.stdout.write(`${listing.pending} pending\n`);
        if (listing.deliveries.length === 0) process.stdout.write('no email sent or refused yet\n');
        else printTable(listing.deliveries.map((d) => ({ ...d, error: d.error ?? '' })) as unknown as Record<string, unknown>[], COLUMNS);
      }),
    );
}

async function listDirect(config: Config, opts: LsOptions, status: 'sent' | 'failed' | undefined): Promise<Listing> {
  const db = await openDatabase(config, createLogger({ level: 'silent', format: 'json' }));
  try {
    const [pending, deliveries] = await Promise.all([
      db.offline.pendingEmails(),
      db.offline.listDeliveries({
        limit: Number(opts.limit),
        ...(opts.tenant ? { tenantId: opts.tenant } : {}),
        ...(status ? { status } : {}),
      }),
    ]);
    return { pending, deliveries };
  } finally {
    await db.close();
  }
}

function listAdmin(config: Config, opts: LsOptions, status: 'sent' | 'failed' | undefined): Promise<Listing> {
  const q = new URLSearchParams({ limit: opts.limit });
  if (opts.tenant) q.set('tenantId', opts.tenant);
  if (status) q.set('status', status);
  return adminGet<Listing>(config, `/admin/emails?${q.toString()}`, opts);
}
