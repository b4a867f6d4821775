/** `svdquant demo --synthetic` (the layer-level benchmark), run as a user would (spawned dist/cli/main.js), on a small synthetic model. */
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

const SMALL = ['--synthetic', '--dim', '64', '--heads', '4', '--blocks', '1', '--tokens', '64', '--calib', '64', '--reps', '1'];

t.test('demo prints one table with every scheme asked for, progress on stderr', async (t) => {
  const r = await svdquant(['demo', ...SMALL, '--schemes', 'w4a4,mxfp4,w8a8']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^scheme\s+rel\.err ref\s+rel\.err native\s+PSNR\s+model\s+vs fp32\s+linears\s+vs fp32\s+low-rank\s+weights\s+vs bf16$/m);
  for (const s of ['fp32', 'w4a4', 'mxfp4', 'w8a8']) t.match(r.stdout, new RegExp(`^${s}\\s+\\d`, 'm'), `row ${s}`);
  t.notMatch(r.stdout, /^nvfp4/m, 'only the schemes asked for');
  t.match(r.stdout, /\d+\.\d ms/, 'times with units');
  t.match(r.stdout, /\d+\.\d dB/, 'PSNR with units');
  t.match(r.stdout, /^time: [\d.]+ s in all: building the model [\d.]+ s, fp32 runs [\d.]+ s, calibration \+ quantization [\d.]+ s, reference path [\d.]+ s, native runs [\d.]+ s$/m,
    'says where the time went');
  t.match(r.stderr, /^demo: \[1\/3\] w4a4: calibrating/m, 'progress lines');
  t.match(r.stdout, /^machine: .+, \d+ CPUs; load average [\d.]+ [\d.]+ [\d.]+ at the start, [\d.]+ [\d.]+ [\d.]+ at the end\.\nTimes depend on this machine and its load/m,
    'says what the times depend on (issue 18)');
});

t.test('demo --json: a report whose figures are consistent', async (t) => {
  const r = await svdquant(['demo', ...SMALL, '--schemes', 'w4a4,w8a8', '--json', '--quiet']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', '--quiet: nothing on stderr');
  const report = JSON.parse(r.stdout) as {
    rows: Array<{ scheme: string; relErrorReference: number; relErrorNative: number; psnrDb: number | null; modelMs: number; speedupModel: number; weightBytes: number; ratioToBf16: number }>;
    model: { dim: number; linearLayers: number }; seconds: { total: number };
    machine: { cpu: string; cpus: number; loadAverageStart: number[]; loadAverageEnd: number[] };
  };
  t.equal(report.machine.loadAverageStart.length, 3, 'the load the times were measured under');
  t.ok(report.machine.cpus >= 1);
  t.same(report.rows.map((row) => row.scheme), ['fp32', 'w4a4', 'w8a8']);
  t.equal(report.model.dim, 64);
  t.equal(report.model.linearLayers, 6);
  const [fp32, w4a4, w8a8] = report.rows;
  t.equal(fp32.psnrDb, null, 'exact fp32: PSNR infinite (null in JSON)');
  t.equal(fp32.speedupModel, 1);
  t.equal(fp32.ratioToBf16, 2, 'fp32 weights are twice bf16');
  for (const row of [w4a4, w8a8]) {
    t.ok(row.relErrorNative > 0 && row.relErrorNative < 1, `${row.scheme}: error in (0, 1): ${row.relErrorNative}`);
    t.ok(Math.abs(row.relErrorNative - row.relErrorReference) < 0.01 * row.relErrorReference + 1e-4,
      `${row.scheme}: native ${row.relErrorNative} agrees with the reference path ${row.relErrorReference}`);
    t.ok(row.modelMs > 0 && row.weightBytes > 0);
  }
  t.ok(w8a8.relErrorNative < w4a4.relErrorNative, 'w8a8 is more accurate than w4a4');
  t.ok(w4a4.ratioToBf16 < w8a8.ratioToBf16, 'w4a4 is smaller than w8a8');
});

t.test('demo --export writes the model and calibration files', async (t) => {
  const dir = join(t.testdir(), 'files');
  const r = await svdquant(['demo', '--export', dir, '--dim', '32', '--heads', '2', '--blocks', '1', '--calib', '16']);
  t.equal(r.code, 0, r.stderr);
  t.ok(existsSync(join(dir, 'model.safetensors')) && existsSync(join(dir, 'calib.safetensors')));
  t.match(r.stdout, /wrote the built-in model \(6 linear layers\)/);
  const inspect = await svdquant(['inspect', join(dir, 'calib.safetensors'), '--json']);
  const info = JSON.parse(inspect.stdout) as { tensors: Array<{ name: string; shape: number[] }> };
  t.same(info.tensors.find((x) => x.name === '0.mlp.fc2')?.shape, [16, 128], 'fc2 inputs: 16 tokens of 4·dim');
});

t.test('demo usage errors: one line, exit code 2', async (t) => {
  assertOneLineError(t, await svdquant(['demo', '--synthetic', '--schemes', 'w4a4,int3']), 2, /--schemes: unknown value 'int3'/);
  assertOneLineError(t, await svdquant(['demo', '--synthetic', '--tokens', '0']), 2, /--tokens expects an integer in \[1, /);
  assertOneLineError(t, await svdquant(['demo', '--synthetic', '--dim', '64', '--heads', '5']), 2, /--heads 5 must divide --dim 64/);
  assertOneLineError(t, await svdquant(['demo', '--synthetic', 'extra']), 2, /unexpected argument 'extra'/);
  assertOneLineError(t, await svdquant(['demo', '--synthetic', '--quiet', '--verbose']), 2, /exclude each other/);
  assertOneLineError(t, await svdquant(['demo', '--synthetic', '--frobnicate']), 2, /demo: Unknown option '--frobnicate'/);
});

t.test('demo --export to an unusable folder fails at once, never hangs (issue 18)', async (t) => {
  const dir = t.testdir({ file: 'x', files: { 'model.safetensors': {} } });
  // `demo --export /proc/foo` used to spin forever in Node's recursive mkdir.
  if (process.platform === 'linux') {
    assertOneLineError(t, await svdquant(['demo', '--export', '/proc/svdquant-test']), 1,
      /^svdquant: could not create the directory '\/proc\/svdquant-test': '\/proc' is on the kernel's proc pseudo file system: expected a directory on an ordinary file system\n$/);
  }
  assertOneLineError(t, await svdquant(['demo', '--export', join(dir, 'file', 'sub')]), 1, /'.*file' is a regular file, not a directory/);
  assertOneLineError(t, await svdquant(['demo', '--export', '/dev/null']), 1, /'\/dev\/null' is a character device, not a directory/);
  assertOneLineError(t, await svdquant(['demo', '--export', join(dir, 'files')]), 1, /could not write '.*model\.safetensors': it is a directory/);
  t.same(readdirSync(dir).sort(), ['file', 'files']);
});
