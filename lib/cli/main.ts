#!/usr/bin/env node
/** Entry point of the `svdquant` command (package.json "bin" -> dist/cli/main.js). */

import { runCli } from './run.js';

// A closed pipe (`svdquant inspect x | head`) is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

// exitCode rather than process.exit(), so buffered output to pipes is flushed before exiting.
process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  stderrIsTTY: process.stderr.isTTY === true,
});
