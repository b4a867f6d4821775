/**
 * What a CLI subcommand looks like, and the error it throws for bad usage. Each subcommand lives in
 * lib/cli/commands/<name>.ts and is listed in lib/cli/commands/index.ts.
 */

import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Where a command writes; main.ts binds these to process.stdout/stderr, tests may capture them. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Whether stderr is a terminal (progress bars redraw one line); false or absent: plain lines. */
  readonly stderrIsTTY?: boolean;
}

export interface CliCommand {
  readonly name: string;
  /** One line for the command list in `svdquant --help`. */
  readonly summary: string;
  /** Full help text for `svdquant <name> --help` (ends with a newline). */
  readonly help: string;
  /** Example command lines shown by `svdquant --help`. */
  readonly examples?: readonly string[];
  /** Runs the command with the arguments after its name; resolves to the exit code. */
  run(args: readonly string[], io: CliIo): Promise<number>;
}

/** Bad command line (unknown option, missing argument): reported in one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** util.parseArgs, with its errors turned into UsageError. */
export function parseCommandArgs(
  command: string,
  args: readonly string[],
  options: NonNullable<ParseArgsConfig['options']>,
): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
    return { values, positionals };
  } catch (error) {
    const message = error instanceof Error ? error.message.split('. ')[0].replace(/\s+/g, ' ') : String(error);
    throw new UsageError(`${command}: ${message} (see 'svdquant ${command} --help')`);
  }
}
