// The list of commands beyond serve and config, one file each. Adding a command = one import here.
import type { Command } from 'commander';

export const extraCommands: ((program: Command) => void)[] = [];
