// `chatd serve --role gateway|api|ws|all`.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { action, CliError, loadCliConfig, parsePort } from './common.js';
import { ROLES, type Config, type Role } from '../config/schema.js';
import { resolveSecrets } from '../config/secrets.js';
import { listenerConflict } from '../config/listeners.js';
import { secretValues } from '../config/redact.js';
import { createLogger, type Logger } from '../observability/logger.js';
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
    .option('-p, --port <port>', 'port of the public listener (wins over PORT in the environment and the config file)')
    .option('--admin-port <port>', 'port of the admin listener (wins over admin.port)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ chatd serve --role all                  # everything on one port, embedded defaults\n  $ chatd serve --port 8080 --admin-port 9091\n  $ PORT=8080 chatd serve                   # the port a platform gives\n  $ chatd serve --role api,ws --config chat-server.yaml\n  $ REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://localhost/chat chatd serve --role ws',
    )
    .action(
      action(async (opts: { role: string[]; port?: string; adminPort?: string }, cmd: Command) => {
        const roles = parseRoles(opts.role);
        const loaded = await loadCliConfig(cmd, {
          roles,
          ...(opts.port !== undefined ? { port: parsePort(opts.port, '--port') } : {}),
          ...(opts.adminPort !== undefined ? { adminPort: parsePort(opts.adminPort, '--admin-port') } : {}),
        });
        // Two listeners of this process on one address and port: refused before anything is written or opened.
        const conflict = listenerConflict(loaded.config, roles);
        if (conflict) throw new CliError(conflict);
        const { config, generated, file: secretsPath } = await resolveSecrets(loaded.config);
        const logger = createLogger({ level: config.log.level, format: config.log.format, secrets: secretValues(config) });
        routeProcessWarnings(logger);
        if (generated.length > 0) {
          logger.warn(
            { file: secretsPath, generated },
            'generated secrets into the data folder (mode 0600); later commands read them from there',
          );
        }
        if (config.tenants.length === 0) announceZeroConfig(config, generated, logger);
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
        stopWhenOrphaned(() => stop('parent exited'));
      }),
    );
}

/**
 * Zero-config: the keys are printed once, when they were generated (this is the first start), as one
 * JSON line on stderr with the keys in fields. It is the only line that may carry them: it is
 * written by its own logger, without the scrubbing of the server's log, and never again; `chatd keys
 * show` prints them later. Every other start logs the mode without a key.
 */
function announceZeroConfig(config: Config, generated: readonly string[], logger: Logger): void {
  const newKeys = generated.includes('gatewayApiKey') || generated.includes('secretApiKey');
  const warning = (keys: string) =>
    `zero-config mode: no tenants configured, so any tenant id is accepted with ${keys} from any origin; configure tenants for production`;
  if (newKeys) {
    const notice = createLogger({ level: 'info', format: config.log.format, fd: 2 });
    notice.warn(
      {
        publishableKey: config.auth.gatewayApiKey,
        secretKey: config.auth.secretApiKey,
        hint: 'the publishable key goes in the widget (visitor tokens only); keep the secret key on servers (agent tokens, broadcast, online users). `chatd keys show` prints them again.',
      },
      warning('these keys (printed once)'),
    );
    notice.flush();
  } else {
    logger.warn(warning('the generated keys (`chatd keys show` prints them)'));
  }
}

/** Node's own warnings (deprecations, experimental features) as JSON log lines instead of plain stderr text. */
function routeProcessWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (w) => logger.warn({ warning: { name: w.name, message: w.message } }, 'node warning'));
}

/**
 * `npx chatd serve` runs npm → sh -c → node. npm forwards SIGTERM/SIGINT to the shell only: on
 * SIGTERM the shell dies without passing it on, and this process was left on its ports with PPID 1;
 * on SIGINT the shell holds it while it waits, and when the supervisor then kills npm the shell and
 * this process stayed. Under npm (it sets npm_command for what it runs) the launcher chain going
 * away is taken as the signal it was: the parent exiting, or the parent's own parent (npm, when the
 * parent is that shell). Not done outside npm, where `nohup chatd serve &` from a shell that exits
 * must keep running. (A Ctrl-C on a terminal reaches every process of the group, this one too.)
 */
function stopWhenOrphaned(stop: () => void): void {
  if (!process.env.npm_command && !process.env.npm_lifecycle_event) return;
  const parent = process.ppid;
  if (parent <= 1) return;
  const grandparent = parentOf(parent);
  const timer = setInterval(() => {
    if (process.ppid !== parent || (grandparent !== undefined && grandparent > 1 && parentOf(parent) !== grandparent)) {
      clearInterval(timer);
      stop();
    }
  }, 200);
  timer.unref();
}

/** The parent pid of `pid` from /proc (Linux), or undefined where there is no /proc or no such process. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) ? ppid : undefined;
  } catch {
    return undefined;
  }
}
