// `chatd token issue`: mints a JWT from the config (and the generated secrets file, so a token
// minted here is accepted by a server started from the same folder) — for curl, tests and agents'
// scripts. `--admin` mints role agent (sub `cli-agent` unless --user); `--user` alone a verified user
// token; neither, a visitor token (bound to --session when given).
import type { Command } from 'commander';
import { action, CliError, globals, loadCliConfig, printJson } from './common.js';
import { resolveSecrets } from '../config/secrets.js';
import { TOKEN_TTL_SECONDS } from '../config/schema.js';
import { createAuth } from '../auth/index.js';
import { parseTtl, type PrincipalRole } from '../auth/jwt.js';
import { ID_PATTERN, ID_SOURCE, USER_ID_PATTERN, USER_ID_SOURCE } from '../ids.js';

interface IssueOptions {
  tenant: string;
  user?: string;
  session?: string;
  admin?: boolean;
  ttl?: string;
  name?: string;
}

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('Mint JWTs from the configuration.');
  token
    .command('issue')
    .description('Mint a token: a visitor token, a user token (--user), or an agent token (--admin).')
    .requiredOption('-t, --tenant <tenant>', 'tenant id (any id when no tenants are configured)')
    .option('-u, --user <userId>', 'sub: the user (or the agent with --admin)')
    .option('-s, --session <sessionId>', 'sid: the session the token acts on')
    .option('--admin', 'role agent (sub defaults to cli-agent)')
    .option('--name <name>', 'agent display name')
    .option('--ttl <duration>', 'lifetime: 3600, 90s, 15m, 1h, 7d (default: auth.visitorTokenTtlSeconds / agentTokenTtlSeconds)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ chatd token issue --tenant acme --admin --json\n  $ chatd token issue --tenant acme --session s-123 --ttl 15m',
    )
    .action(
      action(async (opts: IssueOptions, cmd: Command) => {
        const { config: loaded } = await loadCliConfig(cmd);
        // Reads (and if needed creates) the same secrets file the server uses.
        const { config } = await resolveSecrets(loaded);
        const auth = createAuth(config);
        if (!ID_PATTERN.test(opts.tenant)) throw new CliError(`--tenant "${opts.tenant}" must match ${ID_SOURCE}`);
        if (!auth.tenants.get(opts.tenant)) throw new CliError(`--tenant "${opts.tenant}" is not a configured tenant`);
        if (opts.user !== undefined && !USER_ID_PATTERN.test(opts.user))
          throw new CliError(`--user "${opts.user}" must match ${USER_ID_SOURCE}`);
        if (opts.session !== undefined && !ID_PATTERN.test(opts.session))
          throw new CliError(`--session "${opts.session}" must match ${ID_SOURCE}`);
        const role: PrincipalRole = opts.admin ? 'agent' : opts.user ? 'user' : 'visitor';
        const subject = opts.admin ? (opts.user ?? 'cli-agent') : opts.user;
        let ttlSeconds = role === 'agent' ? config.auth.agentTokenTtlSeconds : config.auth.visitorTokenTtlSeconds;
        if (opts.ttl !== undefined) {
          try {
            ttlSeconds = parseTtl(opts.ttl);
          } catch (err) {
            throw new CliError(`--ttl: ${(err as Error).message}`);
          }
          // The same bounds as auth.visitorTokenTtlSeconds / agentTokenTtlSeconds.
          if (ttlSeconds < TOKEN_TTL_SECONDS.min || ttlSeconds > TOKEN_TTL_SECONDS.max) {
            throw new CliError(
              `--ttl ${opts.ttl} is ${ttlSeconds} s: it must be from ${TOKEN_TTL_SECONDS.min} s (1m) to ${TOKEN_TTL_SECONDS.max} s (30d)`,
            );
          }
        }
        const minted = await auth.tokens.mint({
          tenantId: opts.tenant,
          role,
          ...(subject ? { subject } : {}),
          ...(opts.session ? { sessionId: opts.session } : {}),
          ...(opts.name ? { name: opts.name } : {}),
          ttlSeconds,
        });
        if (globals(cmd).json) printJson({ token: minted.token, expiresIn: minted.expiresIn });
        else process.stdout.write(`${minted.token}\n`);
      }),
    );
}
