// The list of commands beyond serve and config, one file each. Adding a command = one import here.
import type { Command } from 'commander';
import { registerTokenCommands } from './token.js';

export const extraCommands: ((program: Command) => void)[] = [registerTokenCommands];
