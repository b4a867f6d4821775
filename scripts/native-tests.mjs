#!/usr/bin/env node
// Builds and runs the native C++ tests with CMake: `node scripts/native-tests.mjs [--sanitize]`.
// --sanitize builds them with AddressSanitizer + UndefinedBehaviorSanitizer (in build-asan/).
// Ends with the test binary's own "N passed, N failed" line; exit status 1 on any failure.
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { runStep, parsePassedFailed } from './run-step.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sanitize = process.argv.includes('--sanitize');
const dir = resolve(root, sanitize ? 'build-asan' : 'build-tests');
const configure = ['-S', root, '-B', dir, '-DSVDQUANT_TESTS=ON',
  sanitize ? '-DSVDQUANT_SANITIZE=ON' : '-DSVDQUANT_SANITIZE=OFF', `-DCMAKE_BUILD_TYPE=${sanitize ? 'Debug' : 'Release'}`];

async function main() {
  const c = await runStep('configure native tests', 'cmake', configure);
  if (c.code !== 0) return fail('cmake configure failed (is cmake >= 3.20 installed?)');
  const b = await runStep('build native tests', 'cmake', ['--build', dir, '-j', '2']);
  if (b.code !== 0) return fail('native test build failed');
  const env = { ...process.env };
  if (sanitize) {
    env.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0:halt_on_error=1';
    env.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  }
  const r = await runStep(sanitize ? 'native tests (ASan+UBSan)' : 'native tests', resolve(dir, 'svdquant_native_tests'), [], { env });
  const counts = parsePassedFailed(r.out);
  if (r.code !== 0 && counts && counts.failed === 0) return fail(`native tests exited with status ${r.code} (sanitizer report?)`);
  if (!counts) return fail(`native tests printed no summary (exit status ${r.code})`);
  process.exitCode = r.code === 0 ? 0 : 1;
}

function fail(why) {
  console.error(`native tests: ${why}`);
  console.log('0 passed, 1 failed');
  process.exitCode = 1;
}

await main();
