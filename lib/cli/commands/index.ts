/** The table of CLI subcommands. To add one, write lib/cli/commands/<name>.ts and list it here. */

import type { CliCommand } from '../command.js';
import { inspectCommand } from './inspect.js';

export const COMMANDS: ReadonlyArray<CliCommand> = [inspectCommand];
