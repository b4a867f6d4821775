// Runs one test step as a child process, echoes its output live, and returns it for parsing.
import { spawn } from 'node:child_process';

export function runStep(label, command, args, options = {}) {
  return new Promise((resolve) => {
    process.stdout.write(`\n== ${label}: ${command} ${args.join(' ')}\n`);
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let out = '';
    child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
    child.stderr.on('data', (d) => { out += d; process.stderr.write(d); });
    child.on('error', (err) => resolve({ code: 127, out: out + String(err) }));
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), out }));
  });
}

/** The counts of a closing "N passed, N failed" line, or null. */
export function parsePassedFailed(text) {
  const m = [...text.matchAll(/^(\d+) passed, (\d+) failed/gm)].pop();
  return m ? { passed: Number(m[1]), failed: Number(m[2]) } : null;
}

/** The counts of tap's closing "# { total: N, pass: N, fail: N }" line, or null. */
export function parseTapSummary(text) {
  const m = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?/.exec(text);
  return m ? { passed: Number(m[2] ?? 0), failed: Number(m[3] ?? 0) } : null;
}
