/**
 * Full fuzz run of the safetensors reader (the test suite runs a smaller sample).
 *
 *   node --import tsx bench/fuzz-safetensors.ts [--cases N] [--seed S] [--file-every K] [--case I]
 *
 * --case I prints and checks only case I of seed S (to reproduce a reported failure).
 * Exits 1 on any failure. The engine lives in test/support/safetensors-fuzz.ts.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { checkBytes, generateCase, runFuzz, seedFiles } from '../test/support/safetensors-fuzz.js';

function integerOption(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 0) {
    process.stderr.write(`fuzz-safetensors: --${name} must be a non-negative integer, got ${JSON.stringify(value)}\n`);
    process.exit(2);
  }
  return parsed;
}

const { values } = parseArgs({
  options: {
    cases: { type: 'string' },
    seed: { type: 'string' },
    'file-every': { type: 'string' },
    case: { type: 'string' },
  },
  strict: true,
});
const cases = integerOption(values.cases, 'cases', 100_000);
const seed = integerOption(values.seed, 'seed', 1);
const fileEvery = integerOption(values['file-every'], 'file-every', 250);

if (values.case !== undefined) {
  const index = integerOption(values.case, 'case', 0);
  const fuzzCase = generateCase(seed, index, seedFiles());
  const bytes = fuzzCase.bytes;
  process.stdout.write(`case ${index} of seed ${seed}: case seed ${fuzzCase.seed}, ${bytes.byteLength} bytes, mutations: ${fuzzCase.mutations.join(' > ') || 'none'}\n`);
  process.stdout.write(`first bytes: ${Buffer.from(bytes.subarray(0, 512)).toString('hex')}\n`);
  const outcome = checkBytes(bytes, fuzzCase);
  process.stdout.write(outcome.ok ? `accepted: ${outcome.parsed.tensors.length} tensors\n` : `rejected: ${outcome.error.message}\n`);
  process.exit(0);
}

const start = performance.now();
const directory = await mkdtemp(join(tmpdir(), 'svdquant-fuzz-'));
let exitCode = 0;
try {
  process.stdout.write(`fuzzing the safetensors reader: ${cases} cases, seed ${seed}, file reader every ${fileEvery} cases\n`);
  const summary = await runFuzz({
    cases,
    seed,
    fileCheckEvery: fileEvery,
    directory,
    progressEvery: 10_000,
    onProgress: (done, s) =>
      process.stdout.write(`  ${done} cases, ${s.okReads} accepted, ${s.failures.length} failures, ${((performance.now() - start) / 1000).toFixed(1)} s\n`),
  });
  const seconds = summary.elapsedMs / 1000;
  const rejected = [...summary.errorClasses.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`\ncases:         ${summary.cases}\n`);
  process.stdout.write(`ok reads:      ${summary.okReads}\n`);
  process.stdout.write(`typed errors:  ${rejected} FileFormatError\n`);
  for (const [name, count] of [...summary.errorClasses].sort((a, b) => b[1] - a[1])) {
    process.stdout.write(`  ${String(count).padStart(7)}  ${name}\n`);
  }
  process.stdout.write(`file checks:   ${summary.fileChecks} (openSafetensors agreed with parseSafetensors)\n`);
  process.stdout.write(`slowest case:  #${summary.slowestCase.index}, ${summary.slowestCase.ms.toFixed(1)} ms\n`);
  process.stdout.write(`elapsed:       ${seconds.toFixed(1)} s (${Math.round(summary.cases / seconds)} cases/s)\n`);
  if (summary.failures.length > 0) {
    exitCode = 1;
    process.stdout.write(`\nFAILURES: ${summary.failures.length}\n`);
    for (const failure of summary.failures) {
      const index = failure.fuzzCase?.index;
      process.stdout.write(`  ${failure.message}\n    reproduce: node --import tsx bench/fuzz-safetensors.ts --seed ${seed} --case ${index}\n`);
    }
  } else {
    process.stdout.write('\nno failures\n');
  }
  // Messages that no class matched would show up above as "other: ..."; flag them as a problem too.
  const unclassified = [...summary.errorClasses.keys()].filter((name) => name.startsWith('other: '));
  if (unclassified.length > 0) process.stdout.write(`note: ${unclassified.length} unclassified message kinds\n`);
} finally {
  await rm(directory, { recursive: true, force: true });
}
process.exitCode = exitCode;
