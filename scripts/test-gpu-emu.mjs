#!/usr/bin/env node
// `npm run test:gpu-emu`: the GPU kernels proven on the CPU under the emulator (native/gpu/emu).
//   node scripts/test-gpu-emu.mjs [--arch=sm_80,gfx942] [--no-build] [--seed=N] [--sanitize]
// For every emulator flavour (default: all of native/gpu/build.json's emu_flavours; CUDA sm_80 and
// sm_90a paths, HIP gfx90a, gfx940, gfx942): the emulator's self-tests (test_emu), then the GPU
// backend's own tests (test_gpu, unchanged) in sequential order and in a random order. Then the
// guards, which must FAIL for the emulator to be worth anything:
//   - a wrong fragment layout (SVDQ_EMU_FAULT=layout) makes test_emu's spot checks fail on every
//     flavour, and test_gpu fail on a CUDA and an AMD flavour;
//   - barriers that wait for nobody (SVDQ_EMU_FAULT=no-barrier) go unnoticed in sequential order
//     (threads run in lockstep) but make test_gpu fail in a random order: random orders expose races.
// The tap GPU tests (test/gpu-real-*.test.ts: the addon, DeviceTensor, the toggles) then run against
// the emulated library of a CUDA and an AMD flavour, as `npm run test:gpu` would on a device, and
// once more with the emulated device claiming a target the library lacks (it must be refused).
// --sanitize runs test_gpu of the first flavour once more, built with AddressSanitizer + UBSan (out-
// of-bounds device-memory and shared-memory accesses, as compute-sanitizer's memcheck would).
// Closes with one line "N passed, N failed" (each guard counts as one test).
import { readFileSync } from 'node:fs';
import { dirname, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runStep, parsePassedFailed, parseTapSummary } from './run-step.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cfg = JSON.parse(readFileSync(join(root, 'native/gpu/build.json'), 'utf8'));
const args = process.argv.slice(2);
const opt = (name) => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : undefined;
};
const flavours = (opt('arch') ?? process.env.SVDQUANT_EMU_ARCHS ?? cfg.emu_flavours).split(',').map((s) => s.trim()).filter(Boolean);
const seed = Number(opt('seed') ?? process.env.SVDQ_EMU_SEED ?? 1) || 1;
const sanitize = args.includes('--sanitize');
let passed = 0;
let failed = 0;

function emuDir(arch, asan = false) {
  return join(root, 'build-gpu', `${asan ? 'emu-asan' : 'emu'}-${arch}`);
}

// A test executable that must pass: adds its counts.
async function mustPass(label, binary, env = {}) {
  const r = await runStep(label, binary, [], { cwd: root, env: { ...process.env, ...env } });
  const counts = parsePassedFailed(r.out);
  if (!counts) {
    failed += 1;
    return;
  }
  passed += counts.passed;
  failed += counts.failed;
  if (r.code !== 0 && counts.failed === 0) failed += 1;
}

// A run that must fail with reported test failures (not a crash): one guard test.
async function mustFail(label, binary, env) {
  const r = await runStep(`guard: ${label}`, binary, [], { cwd: root, env: { ...process.env, ...env } });
  const counts = parsePassedFailed(r.out);
  const ok = r.code !== 0 && counts !== null && counts.failed > 0;
  console.log(ok ? `guard ok: ${label} fails (${counts.failed} failures)` : `GUARD BROKEN: ${label} did not fail as it must`);
  if (ok) passed += 1;
  else failed += 1;
}

async function tapStep(label, files, env) {
  const tap = await runStep(label, join(root, 'node_modules', '.bin', 'tap'), files, { cwd: root, env });
  const summary = parseTapSummary(tap.out);
  if (summary) {
    passed += summary.passed;
    failed += summary.failed;
    if (tap.code !== 0 && summary.failed === 0) failed += 1;
  } else {
    failed += 1;
  }
}

async function main() {
  if (!args.includes('--no-build')) {
    const b = await runStep('build the emulator flavours', process.execPath, [join(root, 'scripts/build-gpu.mjs'), 'emu', `--arch=${flavours.join(',')}`], { cwd: root });
    if (b.code !== 0) {
      failed += 1;
      return;
    }
    if (sanitize) {
      const s = await runStep('build the first flavour with sanitizers', process.execPath, [join(root, 'scripts/build-gpu.mjs'), 'emu', `--arch=${flavours[0]}`, '--sanitize'], { cwd: root });
      if (s.code !== 0) {
        failed += 1;
        return;
      }
    }
  }
  const sequential = { SVDQ_EMU_SCHEDULE: 'sequential', SVDQ_EMU_FAULT: '' };
  for (const [i, a] of flavours.entries()) {
    const dir = emuDir(a);
    await mustPass(`emulator self-tests (${a})`, join(dir, 'test_emu'), sequential);
    await mustPass(`GPU tests under the emulator (${a}, sequential order)`, join(dir, 'test_gpu'), sequential);
    await mustPass(`GPU tests under the emulator (${a}, random order, seed ${seed + i})`, join(dir, 'test_gpu'),
      { SVDQ_EMU_SCHEDULE: `random:${seed + i}`, SVDQ_EMU_FAULT: '' });
  }
  for (const a of flavours)
    await mustFail(`wrong fragment layouts break the spot checks (${a})`, join(emuDir(a), 'test_emu'), { ...sequential, SVDQ_EMU_FAULT: 'layout' });
  const cudaFlavour = flavours.find((a) => a.startsWith('sm_'));
  const amdFlavour = [...flavours].reverse().find((a) => a.startsWith('gfx'));
  for (const a of [cudaFlavour, amdFlavour].filter(Boolean))
    await mustFail(`wrong fragment layouts break test_gpu (${a})`, join(emuDir(a), 'test_gpu'), { ...sequential, SVDQ_EMU_FAULT: 'layout' });
  const raceFlavour = cudaFlavour ?? flavours[0];
  await mustPass(`barriers that wait for nobody, sequential order: threads in lockstep hide it (${raceFlavour})`,
    join(emuDir(raceFlavour), 'test_gpu'), { SVDQ_EMU_SCHEDULE: 'sequential', SVDQ_EMU_FAULT: 'no-barrier' });
  await mustFail(`barriers that wait for nobody, random order (${raceFlavour})`, join(emuDir(raceFlavour), 'test_gpu'),
    { SVDQ_EMU_SCHEDULE: `random:${seed}`, SVDQ_EMU_FAULT: 'no-barrier' });
  // The tap GPU tests on each, then the refusal of a device the library holds no code for (the
  // emulated device claims another target).
  for (const a of [cudaFlavour, amdFlavour].filter(Boolean)) {
    const platform = a.startsWith('sm_') ? 'cuda' : 'hip';
    const lib = join(emuDir(a), `libsvdquant_${platform}.so`);
    const env = { ...process.env, SVDQ_EMU_SCHEDULE: `random:${seed}`, SVDQ_EMU_FAULT: '', SVDQ_EMU_DEVICE_ARCH: '',
      SVDQUANT_TEST_REAL_GPU: '1', SVDQUANT_TEST_GPU_PLATFORM: platform, [platform === 'cuda' ? 'SVDQUANT_CUDA_LIB' : 'SVDQUANT_HIP_LIB']: lib };
    await tapStep(`GPU tap tests against the emulated ${platform} backend (${a})`, ['test/gpu-real-*.test.ts'], env);
    const other = platform === 'cuda' ? 'sm_75' : 'gfx950';
    await tapStep(`a ${other} device is refused by the ${a} library`, ['test/gpu-real-arch.test.ts'], { ...env, SVDQ_EMU_DEVICE_ARCH: other });
  }
  if (sanitize) {
    await mustPass(`GPU tests under the emulator with ASan + UBSan (${flavours[0]}, random order)`, join(emuDir(flavours[0], true), 'test_gpu'),
      { SVDQ_EMU_SCHEDULE: `random:${seed}`, SVDQ_EMU_FAULT: '', ASAN_OPTIONS: 'detect_leaks=1:halt_on_error=1', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' });
  }
}

await main();
console.log(`\n${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
