// The list of commands beyond serve and config, one file each. Adding a command = one import here.
import type { Command } from 'commander';
import { registerTokenCommands } from './token.js';
import { registerWebhooksDeadCommands } from './webhooks-dead.js';
import { registerPresenceCommands } from './presence.js';
import { registerWebhookCommands } from './webhooks.js';
import { registerMigrateCommand } from './migrate.js';
import { registerOpsCommands } from './ops.js';
import { registerKeysCommands } from './keys.js';
import { registerConversationsCommands } from './conversations.js';
import { registerEmailsCommands } from './emails.js';

export const extraCommands: ((program: Command) => void)[] = [
  registerTokenCommands,
  registerMigrateCommand,
  registerPresenceCommands,
  registerWebhookCommands,
  registerWebhooksDeadCommands,
  registerOpsCommands,
  registerKeysCommands,
  registerConversationsCommands,
  registerEmailsCommands,
];
