#!/usr/bin/env node
// `npm run test:gpu`: the tests that need a real GPU. Probes the GPU backends through the addon
// (SVDQUANT_CUDA_LIB / SVDQUANT_HIP_LIB when set, else build-gpu/libsvdquant_{cuda,hip}.so). With no
// backend that has a device it prints "no GPU: <reasons> — GPU tests skipped" and exits 0. Otherwise,
// for each usable backend, it runs the native GPU tests (build-gpu/test_gpu_<platform>, built by
// `npm run build:<platform>`) and the tap tests test/gpu-*.test.ts with SVDQUANT_TEST_REAL_GPU=1,
// and closes with one line "N passed, N failed".
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import { runStep, parsePassedFailed, parseTapSummary } from './run-step.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const ENV = { cuda: 'SVDQUANT_CUDA_LIB', hip: 'SVDQUANT_HIP_LIB' };
let passed = 0;
let failed = 0;

function loadAddon() {
  const explicit = process.env.SVDQUANT_ADDON;
  return explicit ? require(resolve(explicit)) : require('node-gyp-build')(root);
}

function libraryPath(platform) {
  const explicit = process.env[ENV[platform]];
  return explicit ? resolve(explicit) : resolve(root, 'build-gpu', `libsvdquant_${platform}.so`);
}

async function main() {
  let addon;
  try {
    addon = loadAddon();
  } catch (e) {
    console.error(`test:gpu: the native addon could not be loaded (${e instanceof Error ? e.message : e}); run \`npm install\` first`);
    failed += 1;
    return;
  }
  const usable = [];
  const reasons = [];
  for (const platform of ['cuda', 'hip']) {
    const path = libraryPath(platform);
    const r = await addon.gpuProbe(platform, path);
    if (r.available) {
      console.log(`${platform}: ${r.devices.length} device(s) (${r.devices.map((d) => `${d.name} ${d.arch}`).join(', ')}) via ${path}`);
      usable.push({ platform, path });
    } else {
      reasons.push(`${platform}: ${r.reason}`);
    }
  }
  if (usable.length === 0) {
    console.log(`no GPU: ${reasons.join('; ')} — GPU tests skipped`);
    return;
  }
  if (reasons.length > 0) console.log(`not tested: ${reasons.join('; ')}`);

  for (const { platform, path } of usable) {
    const env = { ...process.env, [ENV[platform]]: path, SVDQUANT_TEST_REAL_GPU: '1', SVDQUANT_TEST_GPU_PLATFORM: platform };
    const binary = resolve(root, 'build-gpu', `test_gpu_${platform}`);
    if (existsSync(binary)) {
      const nat = await runStep(`native GPU tests (${platform})`, binary, [], { cwd: root, env });
      const counts = parsePassedFailed(nat.out);
      if (counts) {
        passed += counts.passed;
        failed += counts.failed;
        if (nat.code !== 0 && counts.failed === 0) failed += 1;
      } else {
        failed += 1;
      }
    } else {
      console.error(`test:gpu: ${binary} is missing: run \`npm run build:${platform}\` first`);
      failed += 1;
    }
    const tap = await runStep(`GPU tap tests (${platform})`, resolve(root, 'node_modules', '.bin', 'tap'), ['test/gpu-*.test.ts'], { cwd: root, env });
    const summary = parseTapSummary(tap.out);
    if (summary) {
      passed += summary.passed;
      failed += summary.failed;
      if (tap.code !== 0 && summary.failed === 0) failed += 1;
    } else {
      failed += 1;
    }
  }
}

await main();
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
