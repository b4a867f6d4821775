/**
 * `svdquant doctor`, run as a user would (node dist/cli/main.js; the test runner builds dist/ first):
 * without GPU libraries, and with SVDQUANT_CUDA_LIB / SVDQUANT_HIP_LIB pointing at the fake backend
 * (native/tests/fake_gpu_backend.cpp, compiled here with g++).
 */
import t from 'tap';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFakeGpuBackend } from './support/fake-gpu.js';
import { requireBuiltCli, svdquant as run, type CliResult } from './support/cli.js';

const svdquant = (env: Record<string, string>, ...args: string[]): Promise<CliResult> => run(args, { env: { ...process.env, ...env } });
t.before(requireBuiltCli);


const dir = mkdtempSync(join(tmpdir(), 'svdq-doctor-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const FAKE = buildFakeGpuBackend(dir);
const FAKE_HIP = join(dir, 'libsvdquant_hip.so');
copyFileSync(FAKE, FAKE_HIP);
const NONE = { SVDQUANT_CUDA_LIB: join(dir, 'none', 'libsvdquant_cuda.so'), SVDQUANT_HIP_LIB: join(dir, 'none', 'libsvdquant_hip.so') };


interface DoctorJson {
  version: string;
  cpu: { threads: number; logicalCores: number; isa: { active: string; detected: string }; sched: { sliceMs: number; source: string; error: string; threadSliceMs: number } };
  gpu: Record<'cuda' | 'hip', { available: boolean; reason: string; path: string; source: string; builtArchs: string[]; devices: { index: number; name: string; arch: string; totalMemory: number }[] }>;
}

t.test('no GPU: a report with the reasons, exit 0', async (t) => {
  const r = await svdquant(NONE, 'doctor');
  t.equal(r.code, 0);
  t.equal(r.stderr, '');
  t.match(r.stdout, /^svdquant \d+\.\d+\.\d+ \(node v/);
  t.match(r.stdout, /\ncpu: available\n {2}model: .*\n {2}isa: +(portable|avx2|avx512) \(detected: (portable|avx2|avx512); chosen by: .*\)\n {2}threads: +\d+ \(physical cores; \d+ logical\)\n {2}scheduler: +(no hint|compute threads ask for a [\d.]+ ms slice)[^\n]*\n/);
  t.match(r.stdout, /\ncuda: not available\n {2}reason: +libsvdquant_cuda\.so not found at .*none\/libsvdquant_cuda\.so \(from SVDQUANT_CUDA_LIB\)\n {2}library: +.*none\/libsvdquant_cuda\.so \(from \$SVDQUANT_CUDA_LIB\)\n/);
  t.match(r.stdout, /\nhip: not available\n {2}reason: +libsvdquant_hip\.so not found at /);
  t.match(r.stdout, /\nnative inference 'auto' would use: cpu\n$/);

  const j = await svdquant(NONE, 'doctor', '--json');
  t.equal(j.code, 0);
  t.equal(j.stderr, '');
  const report = JSON.parse(j.stdout) as DoctorJson;
  t.ok(report.cpu.threads >= 1);
  t.ok(['portable', 'avx2', 'avx512'].includes(report.cpu.isa.active));
  t.same({ ...report.cpu.sched, threadSliceMs: 0 }, { sliceMs: 100, source: 'default', error: '', threadSliceMs: 0 });
  if (process.platform === 'linux') t.ok(report.cpu.sched.threadSliceMs >= 0, 'Linux reports the slice (0 before 6.12)');
  if (report.cpu.sched.threadSliceMs > 0) t.equal(report.cpu.sched.threadSliceMs, 100, 'a kernel with custom slices grants it');
  for (const p of ['cuda', 'hip'] as const) {
    t.equal(report.gpu[p].available, false);
    t.equal(report.gpu[p].source, 'env');
    t.match(report.gpu[p].reason, new RegExp(`libsvdquant_${p}\\.so not found at `));
    t.same(report.gpu[p].devices, []);
  }
});

t.test('SVDQUANT_SCHED_SLICE_MS: 0 turns the scheduler hint off; an invalid value is an error at load', async (t) => {
  const off = await svdquant({ ...NONE, SVDQUANT_SCHED_SLICE_MS: '0' }, 'doctor');
  t.equal(off.code, 0);
  t.match(off.stdout, /\n {2}scheduler: +no hint \(SVDQUANT_SCHED_SLICE_MS=0\)\n/);
  const ten = await svdquant({ ...NONE, SVDQUANT_SCHED_SLICE_MS: '10' }, 'doctor', '--json');
  const sched = (JSON.parse(ten.stdout) as DoctorJson).cpu.sched;
  t.equal(sched.sliceMs, 10);
  if (sched.threadSliceMs > 0) t.equal(sched.threadSliceMs, 10);
  for (const bad of ['fast', '-1', '250']) {
    const r = await svdquant({ ...NONE, SVDQUANT_SCHED_SLICE_MS: bad }, 'doctor');
    t.equal(r.code, 1, `SVDQUANT_SCHED_SLICE_MS=${bad}`);
    t.match(r.stderr, new RegExp(`invalid SVDQUANT_SCHED_SLICE_MS="${bad}": expected milliseconds in \\[0, 100\\]`));
  }
});

t.test('with the fake backend: available, library, archs and devices', async (t) => {
  const env = { SVDQUANT_CUDA_LIB: FAKE, SVDQUANT_HIP_LIB: FAKE_HIP, SVDQ_FAKE_GPU_DEVICES: '2' };
  const r = await svdquant(env, 'doctor');
  t.equal(r.code, 0);
  t.equal(r.stderr, '');
  t.match(r.stdout, /\ncuda: available\n {2}library: +.*libsvdquant_cuda\.so \(from \$SVDQUANT_CUDA_LIB\)\n {2}built for: +fake_sm_00, fake_sm_01\n {2}devices: +2\n {2}\[0\] svdquant fake GPU 0 \(fake_sm_00\), 16\.0 GiB total, 16\.0 GiB free, 4 multiprocessors, driver 12040, runtime 12040, matrix path portable\n {2}\[1\] svdquant fake GPU 1/);
  t.match(r.stdout, /\nhip: available\n/);
  t.match(r.stdout, /\nnative inference 'auto' would use: cuda \(device 0\)\n$/);
  const j = await svdquant(env, 'doctor', '--json');
  t.equal(j.code, 0);
  const report = JSON.parse(j.stdout) as DoctorJson;
  t.equal(report.gpu.cuda.available, true);
  t.equal(report.gpu.cuda.reason, '');
  t.equal(report.gpu.cuda.path, FAKE);
  t.same(report.gpu.cuda.builtArchs, ['fake_sm_00', 'fake_sm_01']);
  t.same(report.gpu.cuda.devices.map((d) => [d.index, d.name, d.arch, d.totalMemory]), [
    [0, 'svdquant fake GPU 0', 'fake_sm_00', 16 * 2 ** 30],
    [1, 'svdquant fake GPU 1', 'fake_sm_00', 16 * 2 ** 30],
  ]);
  t.equal(report.gpu.hip.available, true);

  // Failures the fake can produce show up as reasons; the exit code stays 0.
  const abi = await svdquant({ ...env, SVDQ_FAKE_GPU_ABI: '7' }, 'doctor', '--json');
  t.equal(abi.code, 0);
  t.match((JSON.parse(abi.stdout) as DoctorJson).gpu.cuda.reason, /ABI version mismatch: .* version 7, this addon expects version 1/);
  const none = await svdquant({ ...env, SVDQ_FAKE_GPU_DEVICES: '0' }, 'doctor');
  t.equal(none.code, 0);
  t.match(none.stdout, /\ncuda: not available\n {2}reason: +no device: the cuda driver reports 0 devices/);
});

t.test('usage errors and help', async (t) => {
  const extra = await svdquant(NONE, 'doctor', 'now');
  t.equal(extra.code, 2);
  t.equal(extra.stdout, '');
  t.match(extra.stderr, /^svdquant: doctor: expected no arguments, got "now"/);
  const bad = await svdquant(NONE, 'doctor', '--yaml');
  t.equal(bad.code, 2);
  t.match(bad.stderr, /^svdquant: doctor: Unknown option '--yaml'/);
  const help = await svdquant(NONE, 'doctor', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: svdquant doctor \[--json\]\n/);
  t.match(help.stdout, /SVDQUANT_CUDA_LIB/);
  const top = await svdquant(NONE, '--help');
  t.match(top.stdout, /\n {2}doctor +report the CPU engine and the GPU backends this machine can use\n/);
});
