/** The table of CLI subcommands. To add one, write lib/cli/commands/<name>.ts and list it here. */

import type { CliCommand } from '../command.js';
import { benchCommand } from './bench.js';
import { calibrateCommand } from './calibrate.js';
import { demoCommand } from './demo.js';
import { doctorCommand } from './doctor.js';
import { generateCommand } from './generate.js';
import { inspectCommand } from './inspect.js';
import { quantizeCommand } from './quantize.js';
import { serveCommand } from './serve.js';
import { workerCommand } from './worker.js';

export const COMMANDS: ReadonlyArray<CliCommand> = [demoCommand, quantizeCommand, calibrateCommand, inspectCommand, benchCommand, doctorCommand, generateCommand, serveCommand, workerCommand];
