/**
 * The CLI dispatcher: global options, then a subcommand from the table in commands/index.ts.
 * Exit codes: 0 success, 1 runtime error (`svdquant: <message>`), 2 bad usage.
 */

import { COMMANDS } from './commands/index.js';
import { UsageError, type CliCommand, type CliIo } from './command.js';
import { formatTable } from './format.js';
import { packageVersion } from './version.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function usage(commands: ReadonlyArray<CliCommand>): string {
  // Each command's examples, in the order of the command list.
  const examples = commands.flatMap((command) => command.examples ?? []);
  return (
    'Usage: svdquant <command> [options]\n' +
    '       svdquant --help | --version\n\n' +
    'Commands:\n' +
    formatTable(commands.map((command) => [command.name, command.summary]), '  ') +
    (examples.length > 0 ? '\nExamples:\n' + examples.map((example) => `  ${example}\n`).join('') : '') +
    "\nRun 'svdquant <command> --help' for a command's options.\n"
  );
}

/** Runs the CLI with `argv` (the arguments after the program name); resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo, commands: ReadonlyArray<CliCommand> = COMMANDS): Promise<number> {
  try {
    const [first, ...rest] = argv;
    if (first === undefined) throw new UsageError("missing command (see 'svdquant --help')");
    if (first === '--help' || first === '-h' || first === 'help') {
      io.stdout(usage(commands));
      return EXIT_OK;
    }
    if (first === '--version' || first === '-v') {
      io.stdout(packageVersion() + '\n');
      return EXIT_OK;
    }
    if (first.startsWith('-')) throw new UsageError(`unknown option '${first}' (see 'svdquant --help')`);
    const command = commands.find((candidate) => candidate.name === first);
    if (command === undefined) {
      const names = commands.map((candidate) => candidate.name).join(', ');
      throw new UsageError(`unknown command ${JSON.stringify(first)}: expected one of ${names} (see 'svdquant --help')`);
    }
    return await command.run(rest, io);
  } catch (error) {
    const isUsage = error instanceof UsageError;
    const message = error instanceof Error ? error.message : String(error);
    io.stderr(`svdquant: ${message.replace(/\s*[\r\n]+\s*/g, ' ')}\n`);
    return isUsage ? EXIT_USAGE : EXIT_FAILURE;
  }
}
