// `chatd presence ls TENANT [--json]`: who is online in a tenant (`online_users:{tenantId}`), read
// from Redis when the config points at it, else from the running server's memory store through its
// admin listener (GET /admin/presence?tenantId=, src/app/admin/presence.ts). `--agents` lists the
// tenant's online agents instead (agent presence, its own set: what availability counts).
import type { Command } from 'commander';
import { ID_PATTERN, ID_SOURCE } from '../ids.js';
import { engineOf } from '../store/index.js';
import { byConnectedAt, type OnlineAgent, type OnlineUser } from '../store/ports.js';
import { adminGet, withStore } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson, printTable } from './common.js';

const COLUMNS = ['userId', 'sessionId', 'connectedAt', 'domain', 'origin', 'url'] as const;
const AGENT_COLUMNS = ['agentId', 'connectedAt'] as const;

export function registerPresenceCommands(program: Command): void {
  const presence = program.command('presence').description('Who is online.');
  presence
    .command('ls')
    .description('List the users online in a tenant (one row per user, from online_users:{tenantId}), or its agents.')
    .argument('<tenant>', 'tenant id')
    .option('--agents', 'list the agents online instead (one row per agent with a live socket on any node)')
    .option('--admin-url <url>', 'admin listener of the running server (default: admin.host:admin.port)')
    .addHelpText(
      'after',
      "\nExamples:\n  $ chatd presence ls acme\n  $ chatd presence ls acme --json | jq '.users | length'\n  $ chatd presence ls acme --agents",
    )
    .action(
      action(async (tenant: string, opts: { adminUrl?: string; agents?: boolean }, cmd: Command) => {
        if (!ID_PATTERN.test(tenant)) throw new CliError(`tenant "${tenant}" must match ${ID_SOURCE}`);
        const { config } = await loadCliConfig(cmd);
        if (opts.agents) {
          const agents = engineOf(config).shared
            ? await withStore(config, (store) => store.agentPresence.online(tenant))
            : (await adminGet<{ agents: OnlineAgent[] }>(config, `/admin/presence?tenantId=${encodeURIComponent(tenant)}&agents=1`, opts))
                .agents;
          if (globals(cmd).json) printJson({ tenantId: tenant, agents });
          else if (agents.length === 0) process.stdout.write(`no agent is online in tenant ${tenant}\n`);
          else printTable(agents as unknown as Record<string, unknown>[], AGENT_COLUMNS);
          return;
        }
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
