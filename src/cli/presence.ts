// `chatd presence ls TENANT [--json]`: who is online in a tenant (`online_users:{tenantId}`), read
// from Redis when the config points at it, else from the running server's memory store through its
// admin listener (GET /admin/presence?tenantId=, src/app/admin/presence.ts).
import type { Command } from 'commander';
import { ID_PATTERN, ID_SOURCE } from '../ids.js';
import { engineOf } from '../store/index.js';
import { byConnectedAt, type OnlineUser } from '../store/ports.js';
import { adminGet, withStore } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';

const COLUMNS = ['userId', 'sessionId', 'connectedAt', 'domain', 'origin', 'url'] as const;

export function registerPresenceCommands(program: Command): void {
  const presence = program.command('presence').description('Who is online.');
  presence
    .command('ls')
    .description('List the users online in a tenant (one row per user, from online_users:{tenantId}).')
    .argument('<tenant>', 'tenant id')
    .option('--admin-url <url>', 'admin listener of the running server (default: admin.host:admin.port)')
    .addHelpText('after', "\nExamples:\n  $ chatd presence ls acme\n  $ chatd presence ls acme --json | jq '.users | length'")
    .action(
      action(async (tenant: string, opts: { adminUrl?: string }, cmd: Command) => {
        if (!ID_PATTERN.test(tenant)) throw new CliError(`tenant "${tenant}" must match ${ID_SOURCE}`);
        const { config } = await loadCliConfig(cmd);
        const users = engineOf(config).shared
          ? await withStore(config, (store) => store.presence.list(tenant))
          : (await adminGet<{ users: OnlineUser[] }>(config, `/admin/presence?tenantId=${encodeURIComponent(tenant)}`, opts)).users;
        const rows = byConnectedAt(users);
        if (globals(cmd).json) printJson({ tenantId: tenant, users: rows });
        else if (rows.length === 0) process.stdout.write(`no one is online in tenant ${tenant}\n`);
        else printTable(rows as unknown as Record<string, unknown>[], COLUMNS);
      }),
    );
}
