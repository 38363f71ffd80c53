// `chatd conversations ls TENANT [--status S] [--assignee A] [--limit N] [--before CURSOR] [--json]`:
// a tenant's inbox, newest activity first (the same list as GET /api/chat/conversations with a
// secret key). With PostgreSQL and a shared store it reads them directly; with the embedded defaults
// the database lives in the server process, so it asks its admin listener (GET /admin/conversations).
import type { Command } from 'commander';
import { createTenantDirectory } from '../auth/tenants.js';
import { createInbox, type InboxPage } from '../chat/inbox.js';
import type { Config } from '../config/schema.js';
import { openDatabase } from '../db/index.js';
import { ID_PATTERN, ID_SOURCE } from '../ids.js';
import { createLogger } from '../observability/logger.js';
import { engineOf } from '../store/index.js';
import { adminGet, withStore } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';

interface LsOptions {
  status?: string;
  assignee?: string;
  limit?: string;
  before?: string;
  adminUrl?: string;
}

const COLUMNS = ['sessionId', 'status', 'assignee', 'visitor', 'unread', 'messages', 'online', 'lastActivityAt', 'lastMessage'] as const;

export function registerConversationsCommands(program: Command): void {
  const conversations = program.command('conversations').description("The agents' inbox: a tenant's conversations.");
  conversations
    .command('ls')
    .description("List a tenant's conversations, newest activity first (status, assignee, unread count, last message).")
    .argument('<tenant>', 'tenant id')
    .option('--status <status>', 'open | pending | resolved | all', 'all')
    .option('--assignee <agent>', 'an agent id, or none for unassigned ones')
    .option('--limit <n>', 'how many (1-200)', '50')
    .option('--before <cursor>', 'the next page: the cursor the previous page printed')
    .option('--admin-url <url>', 'admin listener of the running server (embedded defaults)')
    .addHelpText(
      'after',
      "\nExamples:\n  $ chatd conversations ls acme --status open --assignee none\n  $ chatd conversations ls acme --assignee agent-7 --json | jq '.conversations[].sessionId'",
    )
    .action(
      action(async (tenant: string, opts: LsOptions, cmd: Command) => {
        if (!ID_PATTERN.test(tenant)) throw new CliError(`tenant "${tenant}" must match ${ID_SOURCE}`);
        if (opts.assignee === 'me') throw new CliError('--assignee me means the calling agent: give an agent id (or none)');
        if (!/^[0-9]{1,3}$/.test(opts.limit ?? '') || Number(opts.limit) < 1 || Number(opts.limit) > 200) {
          throw new CliError('--limit must be an integer from 1 to 200');
        }
        const { config } = await loadCliConfig(cmd);
        const page =
          engineOf(config).shared && config.database.url ? await listDirect(config, tenant, opts) : await listAdmin(config, tenant, opts);
        if (globals(cmd).json) {
          printJson({ tenantId: tenant, ...page });
          return;
        }
        if (page.conversations.length === 0) process.stdout.write(`no conversation in tenant ${tenant} matches\n`);
        else
          printTable(
            page.conversations.map((c) => ({
              sessionId: c.sessionId,
              status: c.status,
              assignee: c.assignee ?? '-',
              visitor: c.visitor.name ?? c.visitor.email ?? c.visitor.userId ?? '-',
              unread: c.unreadCount,
              messages: c.messageCount,
              online: c.online ? 'yes' : 'no',
              lastActivityAt: c.lastActivityAt,
              lastMessage: c.lastMessage ? oneLine(c.lastMessage.text, 40) : '',
            })),
            COLUMNS,
          );
        if (page.nextCursor) process.stdout.write(`more: --before ${page.nextCursor}\n`);
      }),
    );
}

const oneLine = (text: string, max: number) => {
  const flat = text.replace(/\s+/g, ' ').trim();
  const chars = [...flat];
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : flat;
};

const query = (tenant: string, o: LsOptions) => ({
  tenantId: tenant,
  status: o.status,
  assignee: o.assignee,
  before: o.before,
  limit: Number(o.limit),
});

async function listDirect(config: Config, tenant: string, opts: LsOptions): Promise<InboxPage> {
  const db = await openDatabase(config, createLogger({ level: 'silent', format: 'json' }));
  try {
    return await withStore(config, (store) =>
      createInbox({
        tenants: () => createTenantDirectory(config),
        conversations: db.conversations,
        // Listing publishes nothing.
        relay: { publishNow: () => undefined, publishUpdateNow: () => undefined },
        presence: store.presence,
      }).list({ kind: 'secret', tenantId: tenant }, query(tenant, opts)),
    );
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (e.code === 'validation_failed' || e.code === 'invalid_id') throw new CliError(e.message);
    throw err;
  } finally {
    await db.close();
  }
}

async function listAdmin(config: Config, tenant: string, opts: LsOptions): Promise<InboxPage> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query(tenant, opts))) if (v !== undefined) q.set(k, String(v));
  return adminGet<InboxPage>(config, `/admin/conversations?${q.toString()}`, opts);
}
