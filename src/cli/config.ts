// `chatd config check` and `chatd config print`.
import YAML from 'yaml';
import type { Command } from 'commander';
import path from 'node:path';
import { engineOf } from '../store/index.js';
import { action, CliError, globals, loadCliConfig, printJson } from './common.js';
import { parseRoles } from './serve.js';
import { coLocationProblem, listenerConflict, processListeners } from '../config/listeners.js';
import { redactConfig } from '../config/redact.js';
import { resolveSecrets } from '../config/secrets.js';

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('Validate or show the configuration.');

  config
    .command('check')
    .description('Validate the configuration (file, environment, defaults); exit non-zero on the first error.')
    .option('-r, --role <roles...>', 'the roles one process runs, whose listeners must not collide (as for serve)', ['all'])
    .addHelpText('after', '\nExamples:\n  $ chatd config check --config /etc/chatd/chat-server.yaml\n  $ chatd config check --role api,ws')
    .action(
      action(async (opts: { role: string[] }, cmd: Command) => {
        const roles = parseRoles(opts.role);
        const { config: c, file } = await loadCliConfig(cmd, { roles });
        const problem = listenerConflict(c, roles) ?? coLocationProblem(c, roles);
        if (problem)
          throw new CliError(`${file ? path.relative(process.cwd(), file) || path.basename(file) : '(environment)'}: ${problem}`);
        const listeners = processListeners(c, roles).map((l) => ({ name: l.name, host: l.host, port: l.port, roles: l.roles }));
        const mode = c.tenants.length === 0 ? 'zero-config (no tenants: any tenant id accepted)' : `${c.tenants.length} tenant(s)`;
        const store = engineOf(c).label;
        const db = c.database.url ? 'postgres' : 'embedded PGlite';
        if (globals(cmd).json) printJson({ ok: true, file: file ?? null, tenants: c.tenants.length, store, database: db, listeners });
        else {
          process.stdout.write(`ok: ${file ?? 'no config file (defaults and environment)'}; ${mode}; store ${store}; database ${db}\n`);
          for (const l of listeners) {
            const serves = l.roles.length > 0 ? l.roles.join(', ') : 'metrics, health, admin endpoints';
            process.stdout.write(`  listener ${l.name} on ${l.host}:${l.port} (${serves})\n`);
          }
        }
      }),
    );

  config
    .command('print')
    .description('Print the effective configuration with every secret redacted.')
    .addHelpText('after', '\nExample:\n  $ chatd config print --json')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const { config: c } = await loadCliConfig(cmd);
        // Show generated secrets as present (redacted) without creating them.
        const { config: resolved } = await resolveSecrets(c, { create: false });
        const redacted = redactConfig(resolved);
        if (globals(cmd).json) printJson(redacted);
        else process.stdout.write(YAML.stringify(redacted));
      }),
    );
}
