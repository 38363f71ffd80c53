// The chatd CLI: one file per command; this one only assembles them.
import { Command } from 'commander';
import { registerServeCommand } from './serve.js';
import { registerConfigCommands } from './config.js';
import { extraCommands } from './commands.js';
import { VERSION, BUILD_COMMIT } from '../version.js';

export function buildProgram(): Command {
  const program = new Command('chatd')
    .description('chatd: authentication, message storage and real-time delivery for a website chat widget.')
    .version(`chatd ${VERSION}${BUILD_COMMIT ? ` (${BUILD_COMMIT})` : ''} node ${process.version}`, '-V, --version')
    .option('-c, --config <file>', 'config file (default: chat-server.yaml found from the current folder)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .option('--json', 'machine-readable output')
    // Commander's own errors (a missing required option, an unknown option or command) are one
    // `chatd: …` line and exit 1, like every other error (src/cli/common.ts `action`).
    .configureOutput({
      outputError: (message, write) => write(`chatd: ${message.replace(/^error: /, '').trim()} (see --help)\n`),
    })
    .addHelpText('after', '\nExample:\n  $ chatd serve --role all');
  registerServeCommand(program);
  registerConfigCommands(program);
  for (const register of extraCommands) register(program);
  return program;
}

/** Entry point of bin/chatd and of the single binary. */
export async function run(argv: readonly string[] = process.argv): Promise<void> {
  await buildProgram().parseAsync([...argv]);
}
