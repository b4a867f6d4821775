/** Runs the built CLI (dist/cli/main.js) as a user would, for the CLI tests. */
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Throws when dist/ is missing (npm test builds it with tsc -p tsconfig.build.json first). */
export function requireBuiltCli(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npx tsc -p tsconfig.build.json' first`);
}

export function svdquant(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, encoding: 'utf8', maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      });
  });
}

/** Exit code `code`, nothing on stdout, exactly one line on stderr starting with `svdquant: `. */
export function assertOneLineError(t: Test, result: CliResult, code: number, pattern: RegExp): void {
  t.equal(result.code, code, `exit code ${code}`);
  t.equal(result.stdout, '', 'nothing on stdout');
  t.match(result.stderr, /^svdquant: [^\n]*\n$/, 'exactly one line on stderr');
  t.match(result.stderr, pattern);
}
