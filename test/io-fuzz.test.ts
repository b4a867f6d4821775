/**
 * A sample of the safetensors fuzz campaign (the full one: bench/fuzz-safetensors.ts). Engine and
 * seed files: test/support/safetensors-fuzz.ts.
 */
import t from 'tap';
import { FileFormatError } from '../lib/errors.js';
import { parseSafetensors } from '../lib/io/safetensors.js';
import { Prng, caseSeed, checkBytes, classifyMessage, generateCase, runFuzz, seedFiles } from './support/safetensors-fuzz.js';

const CASES = 3000;
const SEED = Number(process.env.SVDQ_FUZZ_SEED ?? 20240601);

t.test('the engine is reproducible', async (t) => {
  const a = new Prng(42);
  const b = new Prng(42);
  const first = Array.from({ length: 5 }, () => a.next());
  t.same(Array.from({ length: 5 }, () => b.next()), first);
  t.not(new Prng(43).next(), first[0]);
  t.not(caseSeed(1, 0), caseSeed(1, 1));
  const seeds = seedFiles();
  for (const index of [0, 17, 2999]) {
    t.same(generateCase(SEED, index, seeds).bytes, generateCase(SEED, index, seeds).bytes, `case ${index} regenerates identically`);
  }
});

t.test('seed files are valid and varied', async (t) => {
  const seeds = seedFiles();
  const dtypes = new Set<string>();
  let withMetadata = 0;
  for (const bytes of seeds) {
    const parsed = parseSafetensors(bytes);
    parsed.tensors.forEach((x) => dtypes.add(x.dtype));
    if (Object.keys(parsed.metadata).length > 0) withMetadata++;
  }
  t.equal(dtypes.size, 12, 'all dtypes appear');
  t.ok(withMetadata >= 3, 'several seeds carry metadata');
});

t.test('the checker rejects what breaks the contract', async (t) => {
  const outcome = checkBytes(new Uint8Array(3));
  t.equal(outcome.ok, false);
  if (!outcome.ok) t.type(outcome.error, FileFormatError);
  t.equal(classifyMessage('malformed file \'x\': gap of 4 bytes before tensor "b"'), 'gap between tensors');
  t.match(classifyMessage('malformed file: something new'), /^other: something new/);
});

t.test(`${CASES} fuzz cases end in a consistent parse or a FileFormatError`, async (t) => {
  const directory = t.testdir();
  const summary = await runFuzz({ cases: CASES, seed: SEED, fileCheckEvery: 10, directory });
  for (const failure of summary.failures) {
    t.fail(`${failure.message} [reproduce: node --import tsx bench/fuzz-safetensors.ts --seed ${SEED} --case ${failure.fuzzCase?.index}]`);
  }
  t.equal(summary.failures.length, 0, 'no failures');
  t.equal(summary.cases, CASES);
  t.ok(summary.okReads > CASES * 0.05, `some cases parse successfully (${summary.okReads})`);
  const rejected = [...summary.errorClasses.values()].reduce((a, b) => a + b, 0);
  t.equal(summary.okReads + rejected, CASES, 'every case is either accepted or a FileFormatError');
  t.ok(summary.errorClasses.size >= 15, `many distinct error kinds are reached (${summary.errorClasses.size})`);
  t.same([...summary.errorClasses.keys()].filter((name) => name.startsWith('other')), [], 'every message has a known class');
  t.equal(summary.fileChecks, CASES / 10, 'file reader checked against the parser');
  // Durations are figures, not assertions (a loaded machine stretches them): npm run fuzz prints them.
  t.comment(`${summary.cases} cases, ${summary.okReads} accepted, ${summary.fileChecks} file checks, ${summary.elapsedMs.toFixed(0)} ms (slowest case ${summary.slowestCase.ms.toFixed(1)} ms)`);
});
