#!/usr/bin/env node
// `npm test`: compiles lib/ to dist/ (the CLI tests run the built command), runs the tap tests in
// test/ and the native C++ tests, and closes with one line "N passed, N failed" over all of them.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { runStep, parsePassedFailed } from './run-step.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => resolve(root, 'node_modules', '.bin', name);
// --no-native skips the C++ tests; other arguments go to tap (for example a list of test files).
const args = process.argv.slice(2);
const skipNative = args.includes('--no-native');
const tapArgs = args.filter((a) => a !== '--no-native');
let passed = 0;
let failed = 0;

async function main() {
  if (!existsSync(resolve(root, 'build', 'Release', 'svdquant.node'))) {
    console.error('svdquant: the native addon is not built (build/Release/svdquant.node); run `npm install` first');
    failed += 1;
    return;
  }
  // Type-check everything (tests and bench included: tap only transpiles), then emit dist/.
  const check = await runStep('type-check', bin('tsc'), ['-p', 'tsconfig.json', '--noEmit'], { cwd: root });
  if (check.code !== 0) failed += 1;
  const tsc = await runStep('compile TypeScript', bin('tsc'), ['-p', 'tsconfig.build.json'], { cwd: root });
  if (tsc.code !== 0) failed += 1;

  const tap = await runStep('tap tests', bin('tap'), tapArgs, { cwd: root });
  const summary = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?/.exec(tap.out);
  if (summary) {
    passed += Number(summary[2] ?? 0);
    failed += Number(summary[3] ?? 0);
    if (tap.code !== 0 && !summary[3]) failed += 1; // a crash or timeout tap did not count
  } else {
    failed += 1;
  }

  if (skipNative) return;
  const nat = await runStep('native tests', process.execPath, [resolve(root, 'scripts', 'native-tests.mjs')], { cwd: root });
  const counts = parsePassedFailed(nat.out);
  if (counts) {
    passed += counts.passed;
    failed += counts.failed;
  } else {
    failed += 1;
  }
  if (nat.code !== 0 && (!counts || counts.failed === 0)) failed += 1;
}

await main();
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
