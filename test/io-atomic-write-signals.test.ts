// Ctrl-C (SIGINT), SIGTERM or SIGHUP during an atomic write removes the temporary file and ends the
// process by that signal (issue 18: `svdquant quantize` interrupted while writing left a hidden
// file the size of the model, 2 runs in 5). The child holds the write open until the signal comes,
// so every run interrupts a write in progress.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './support/cli.js';

const OLD = 'the previous file';

interface ChildOutcome {
  temp: string;
  tempExisted: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
}

/** Runs the child on `target`, sends `signal` once it is mid-write, and waits for it to end. */
function interrupt(target: string, signal: NodeJS.Signals, mode = 'plain'): Promise<ChildOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join('test', 'support', 'atomic-write-child.ts'), target, mode], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    let temp = '';
    let tempExisted = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      const match = /^writing (.*)$/m.exec(stdout);
      if (match !== null && temp === '') {
        temp = match[1];
        tempExisted = existsSync(temp);
        child.kill(signal);
      }
    });
    // A child that ignores the signal would hang the suite: end it after a minute (the test then
    // fails on the signal it reports, SIGKILL).
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code, sig) => {
      clearTimeout(guard);
      resolve({ temp, tempExisted, code, signal: sig, stdout });
    });
  });
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  t.test(`${signal} mid-write: the temporary file is removed and the process ends by ${signal}`, async (t) => {
    const dir = t.testdir({ 'model.safetensors': OLD });
    const target = join(dir, 'model.safetensors');
    const outcome = await interrupt(target, signal);
    t.ok(outcome.tempExisted, `the write was in progress (${outcome.temp})`);
    t.equal(outcome.signal, signal, `ended by ${signal} (a shell reports status 128 + its number)`);
    t.equal(outcome.code, null);
    t.same(readdirSync(dir), ['model.safetensors'], 'no temporary file left');
    t.equal(readFileSync(target, 'utf8'), OLD, 'the previous file is untouched');
  });
}

t.test("an application's own SIGTERM handler decides; the temporary file is removed when it exits", async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'new.bin');
  writeFileSync(join(dir, 'keep.txt'), 'x');
  const outcome = await interrupt(target, 'SIGTERM', 'own-handler');
  t.ok(outcome.tempExisted);
  t.match(outcome.stdout, /application handler/);
  t.equal(outcome.code, 42, "the application's exit status");
  t.same(readdirSync(dir), ['keep.txt'], 'no temporary file, no target');
});
