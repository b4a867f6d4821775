// How fast the `svdquant` command rejects an output it cannot write (issue 18): each bad output is
// checked before any work, so the time should be the command's start-up time, not minutes of
// quantizing or measuring. Prints, per case, the median wall time over --runs runs next to the same
// run's baseline, `svdquant --version` (start-up only), and the ratio. Never asserts: on a loaded
// machine every figure stretches (the tests check the order of events instead: test/cli-*.test.ts).
// Needs the built command (npm test or `npx tsc -p tsconfig.build.json`).
// Run: node --import tsx bench/fail-fast.ts [--runs 5]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const i = process.argv.indexOf('--runs');
const runs = i >= 0 ? Number(process.argv[i + 1]) : 5;
if (!Number.isInteger(runs) || runs < 1) {
  console.error('--runs must be an integer >= 1');
  process.exit(2);
}
if (!existsSync(CLI)) {
  console.error(`${CLI} is missing: run 'npx tsc -p tsconfig.build.json' first`);
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'svdquant-fail-fast-'));
const missing = join(dir, 'missing', 'out');
const cases: Array<{ label: string; args: string[] }> = [
  { label: 'baseline: --version', args: ['--version'] },
  { label: 'bench --plot in a missing folder', args: ['bench', '--quick', '--plot', `${missing}.svg`] },
  { label: 'bench --plot /proc/x.svg', args: ['bench', '--quick', '--plot', '/proc/x.svg'] },
  { label: 'demo --export /proc/foo', args: ['demo', '--export', '/proc/foo'] },
  { label: 'calibrate -o /proc/foo', args: ['calibrate', '-o', '/proc/foo'] },
  { label: 'quantize -o in a missing folder', args: ['quantize', 'model.safetensors', '--calib', 'calib.safetensors', '-o', `${missing}.safetensors`] },
  { label: 'quantize -o /dev/full --force', args: ['quantize', 'model.safetensors', '--calib', 'calib.safetensors', '-o', '/dev/full', '--force'] },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const load = loadavg().map((v) => v.toFixed(2)).join(' ');
console.log(`svdquant fail-fast: wall time until the command exits, median of ${runs} runs; ${availableParallelism()} CPUs, load average ${load} at the start`);
const rows: string[][] = [['CASE', 'EXIT', 'MEDIAN', 'MAX', 'VS BASELINE']];
let baseline = 0;
try {
  for (const c of cases) {
    const times: number[] = [];
    let status: number | null = null;
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      // A timeout, so a hang (the old `demo --export /proc/foo`) shows up as a figure, not a stuck bench.
      const result = spawnSync(process.execPath, [CLI, ...c.args], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
      times.push(performance.now() - t0);
      status = result.status;
    }
    const med = median(times);
    if (baseline === 0) baseline = med;
    rows.push([c.label, status === null ? 'killed' : String(status), `${med.toFixed(0)} ms`, `${Math.max(...times).toFixed(0)} ms`, `${(med / baseline).toFixed(2)}x`]);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
for (const row of rows) console.log(row.map((cell, col) => cell.padEnd(widths[col])).join('  ').trimEnd());
console.log(`load average ${loadavg().map((v) => v.toFixed(2)).join(' ')} at the end`);
