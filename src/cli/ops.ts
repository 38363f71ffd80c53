// Operations commands:
//   chatd config reload                      → POST /admin/config/reload on the running server
//   chatd erase --tenant T (--session S | --user U) [--dry-run] [--json]
//   chatd token revoke --tenant T --user U [--json]
// With PostgreSQL and Redis configured, erase and revoke act on them directly (every node shares
// them; a revoke is recorded in PostgreSQL, then stored in Redis); otherwise (the embedded defaults,
// or Redis beside the embedded database) the data lives inside the server process, so they go
// through its admin listener with the admin token (POST /admin/erase, /admin/token/revoke:
// src/app/admin/ops.ts).
import type { Command } from 'commander';
import { eraseSubject, parseEraseRequest, type EraseReport } from '../chat/erase.js';
import type { Config } from '../config/schema.js';
import { openDatabase } from '../db/index.js';
import { createLogger } from '../observability/logger.js';
import { revokeSubject } from '../ops/revocation.js';
import type { ReloadResult } from '../ops/reload.js';
import { engineOf } from '../store/index.js';
import { ID_PATTERN, ID_SOURCE, USER_ID_PATTERN, USER_ID_SOURCE } from '../ids.js';
import { adminPost, withStore } from './admin-client.js';
import { action, CliError, globals, loadCliConfig, printJson } from './common.js';

const direct = (config: Config) => engineOf(config).shared && Boolean(config.database.url);

export function registerOpsCommands(program: Command): void {
  const configCmd = program.commands.find((c) => c.name() === 'config') ?? program.command('config');
  configCmd
    .command('reload')
    .description('Make the running server re-read its config file (like SIGHUP): tenants, keys, origins, identity, webhook endpoints.')
    .option('--admin-url <url>', 'admin listener of the running server (default: admin.host:admin.port)')
    .addHelpText('after', '\nExample:\n  $ chatd config reload   # or: systemctl reload chatd / kill -HUP <pid>')
    .action(
      action(async (opts: { adminUrl?: string }, cmd: Command) => {
        const { config } = await loadCliConfig(cmd);
        let r: ReloadResult;
        try {
          r = await adminPost<ReloadResult>(config, '/admin/config/reload', {}, opts);
        } catch (err) {
          // The server refused the new file: say why (its key path) and fail.
          throw new CliError((err as Error).message.replace(/^admin listener at \S+ answered 400: /, ''));
        }
        if (globals(cmd).json) printJson(r);
        else {
          process.stdout.write(
            `reloaded ${r.file ?? '(defaults and environment)'}: ${r.tenants.length} tenant(s); applied: ${r.applied.join(', ')}\n`,
          );
          if (r.ignored.length > 0) process.stdout.write(`ignored until a restart: ${r.ignored.join(', ')}\n`);
        }
      }),
    );

  program
    .command('erase')
    .description(
      "Erase a session's or a user's data: conversations, messages, read pointers, session record, token bindings, presence, pending webhook jobs.",
    )
    .requiredOption('--tenant <id>', 'tenant id')
    .option('--session <id>', 'the session (conversation) to erase')
    .option('--user <id>', 'erase every conversation owned by this user')
    .option('--dry-run', 'count what would be removed; remove nothing')
    .option('--admin-url <url>', 'admin listener of the running server (embedded defaults)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ chatd erase --tenant acme --session s-123 --dry-run\n  $ chatd erase --tenant acme --user u-42 --json',
    )
    .action(
      action(async (opts: { tenant: string; session?: string; user?: string; dryRun?: boolean; adminUrl?: string }, cmd: Command) => {
        const request = { tenantId: opts.tenant, sessionId: opts.session, userId: opts.user, dryRun: opts.dryRun === true };
        try {
          parseEraseRequest(request);
        } catch (err) {
          throw new CliError((err as Error).message.replace('sessionId', '--session').replace('userId', '--user'));
        }
        const { config } = await loadCliConfig(cmd);
        const report = direct(config)
          ? await eraseDirect(config, request)
          : await adminPost<EraseReport>(config, '/admin/erase', request, opts);
        if (globals(cmd).json) printJson(report);
        else printReport(report);
      }),
    );

  const token = program.commands.find((c) => c.name() === 'token') ?? program.command('token');
  token
    .command('revoke')
    .description("Revoke a user's or agent's tokens issued until now, on every node, and close its connected sockets.")
    .requiredOption('--tenant <id>', 'tenant id')
    .requiredOption('--user <id>', "the agent's (or user's) id: the tokens' subject")
    .option('--admin-url <url>', 'admin listener of the running server (embedded defaults)')
    .addHelpText('after', '\nExample:\n  $ chatd token revoke --tenant acme --user agent-7   # then mint a new token a second later')
    .action(
      action(async (opts: { tenant: string; user: string; adminUrl?: string }, cmd: Command) => {
        if (!ID_PATTERN.test(opts.tenant)) throw new CliError(`--tenant "${opts.tenant}" must match ${ID_SOURCE}`);
        if (!USER_ID_PATTERN.test(opts.user)) throw new CliError(`--user "${opts.user}" must match ${USER_ID_SOURCE}`);
        const { config } = await loadCliConfig(cmd);
        const r = direct(config)
          ? await revokeDirect(config, opts.tenant, opts.user)
          : await adminPost<{ tenantId: string; userId: string; revokedAt: string }>(
              config,
              '/admin/token/revoke',
              { tenantId: opts.tenant, userId: opts.user },
              opts,
            );
        if (globals(cmd).json) printJson(r);
        else
          process.stdout.write(
            `revoked: tokens of ${r.userId} in tenant ${r.tenantId} issued before ${r.revokedAt} are refused; its sockets are being closed\n`,
          );
      }),
    );
}

async function eraseDirect(config: Config, request: Parameters<typeof eraseSubject>[1]): Promise<EraseReport> {
  const db = await openDatabase(config, createLogger({ level: 'silent', format: 'json' }));
  try {
    return await withStore(config, (store) => eraseSubject({ messages: db.messages, erasure: store.erasure }, request));
  } finally {
    await db.close();
  }
}

async function revokeDirect(config: Config, tenantId: string, userId: string) {
  const db = await openDatabase(config, createLogger({ level: 'silent', format: 'json' }));
  try {
    return await withStore(config, (store) =>
      revokeSubject({ log: db.revocations, revocations: store.revocations, bus: store.bus }, tenantId, userId),
    );
  } finally {
    await db.close();
  }
}

function printReport(r: EraseReport): void {
  const who = 'sessionId' in r.subject ? `session ${r.subject.sessionId}` : `user ${r.subject.userId}`;
  process.stdout.write(
    `${r.dryRun ? 'dry run: would remove' : 'removed'} for ${who} in tenant ${r.tenantId}` +
      ` (sessions: ${r.sessionIds.join(', ') || 'none'})\n`,
  );
  const width = Math.max(...Object.keys(r.removed).map((k) => k.length));
  for (const [k, v] of Object.entries(r.removed)) process.stdout.write(`  ${k.padEnd(width)}  ${v}\n`);
}
