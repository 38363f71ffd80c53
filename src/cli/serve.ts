// `chatd serve --role gateway|api|ws|all`.
import type { Command } from 'commander';
import { action, CliError, loadCliConfig } from './common.js';
import { ROLES, type Role } from '../config/schema.js';
import { resolveSecrets } from '../config/secrets.js';
import { secretValues } from '../config/redact.js';
import { createLogger } from '../observability/logger.js';
import { startChatd } from '../app/start.js';

export function parseRoles(values: readonly string[]): Role[] {
  const out = new Set<Role>();
  for (const value of values.flatMap((v) => v.split(','))) {
    const role = value.trim();
    if (role === 'all') ROLES.forEach((r) => out.add(r));
    else if ((ROLES as readonly string[]).includes(role)) out.add(role as Role);
    else throw new CliError(`unknown role "${role}": use gateway, api, ws or all`);
  }
  if (out.size === 0) throw new CliError('no role given: use --role gateway|api|ws|all');
  return ROLES.filter((r) => out.has(r));
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('Run one or more roles (gateway, api, ws) or all of them on one public listener.')
    .option('-r, --role <roles...>', 'roles to run: gateway, api, ws, all (repeatable or comma list)', ['all'])
    .addHelpText(
      'after',
      '\nExamples:\n  $ chatd serve --role all                  # everything on one port, embedded defaults\n  $ chatd serve --role api,ws --config chat-server.yaml\n  $ REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://localhost/chat chatd serve --role ws',
    )
    .action(
      action(async (opts: { role: string[] }, cmd: Command) => {
        const roles = parseRoles(opts.role);
        const loaded = await loadCliConfig(cmd);
        const { config, generated, file: secretsPath } = await resolveSecrets(loaded.config);
        const logger = createLogger({ level: config.log.level, format: config.log.format, secrets: secretValues(config) });
        if (generated.length > 0) {
          logger.warn({ file: secretsPath, generated }, 'generated secrets into the data folder (mode 0600); later commands read them from there');
        }
        if (config.tenants.length === 0 && config.auth.gatewayApiKey) {
          // The publishable key is public by nature (it is embedded in the widget): printing it is the point.
          process.stderr.write(`zero-config mode: any tenant id is accepted with the API key ${config.auth.gatewayApiKey} from any origin; configure tenants for production\n`);
        }
        const server = await startChatd({ config, roles, logger, configFile: loaded.file });
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) return;
          stopping = true;
          logger.info({ signal }, 'signal received');
          server.stop().then(
            () => {
              logger.flush?.();
              process.exit(0);
            },
            (err: unknown) => {
              logger.error({ err }, 'shutdown failed');
              process.exit(1);
            },
          );
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
        // SIGHUP: re-read the config (tenants, keys, origins, identity, webhook endpoints); a bad
        // file is logged with its key path and the running configuration stays.
        process.on('SIGHUP', () => {
          logger.info({ signal: 'SIGHUP' }, 'signal received: reloading the configuration');
          server.reload().catch((err: unknown) => logger.error({ err: { message: (err as Error).message } }, 'config reload refused'));
        });
        process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));
      }),
    );
}
