/** `svdquant demo` (the image demo on the built-in model), run as a user would, with small settings. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

const SMALL = ['--schemes', 'w4a4', '--labels', 'Trouser,Sneaker', '--steps', '4', '--calib-images', '2', '--reps', '0'];

interface Row { config: string; method: string; psnrDb: number | null; ssim: number; accuracy: number | null; samplingMs: number; speedup: number; modelBytes: number; ratioToFp32: number }

t.test('demo --json: fp32, naive and SVDQuant rows, and the grid PNG', async (t) => {
  const out = join(t.testdir(), 'grid.png');
  const r = await svdquant(['demo', ...SMALL, '--json', '-o', out]);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { rows: Row[]; labels: number[]; calibration: { modelCalls: number; timestepMax: number; timestepMin: number }; grid: string };
  t.same(report.rows.map((row) => row.config), ['fp32', 'w4a4 naive', 'w4a4 SVDQuant']);
  t.same(report.labels, [1, 7]);
  t.same(report.calibration, { images: 2, steps: 4, modelCalls: 4, timestepMax: 750, timestepMin: 0 }, 'calibration covers the whole 4-step schedule');
  const [fp32, naive, svdq] = report.rows;
  t.equal(fp32.psnrDb, null, 'fp32 against itself: infinite PSNR (null in JSON)');
  t.equal(fp32.ssim, 1);
  t.equal(fp32.speedup, 1);
  for (const row of [naive, svdq]) {
    t.ok(row.psnrDb !== null && row.psnrDb > 5 && row.psnrDb < 60, `${row.config}: PSNR ${row.psnrDb}`);
    t.ok(row.ssim > 0 && row.ssim < 1, `${row.config}: SSIM ${row.ssim}`);
    t.ok(row.ratioToFp32 > 0.2 && row.ratioToFp32 < 0.6, `${row.config}: 4-bit layers shrink the model (${row.ratioToFp32})`);
    t.ok(row.samplingMs > 0 && row.speedup > 0);
  }
  t.ok(svdq.psnrDb! > naive.psnrDb!, `SVDQuant is closer to fp32 than naive 4-bit (${svdq.psnrDb} > ${naive.psnrDb} dB)`);
  t.ok(fp32.accuracy !== null, 'the built-in classifier scores the samples');
  const png = PNG.sync.read(readFileSync(out));
  t.ok(png.width > 2 * 28 && png.height > 3 * 28, `grid ${png.width}x${png.height}: 3 rows x 2 columns of 28x28 cells, enlarged and labelled`);
  t.match(r.stderr, /^demo: calibrating from pipeline runs: 2 images x 4 steps/m, 'progress on stderr');
});

t.test('demo prints the table and where the grid is', async (t) => {
  const out = join(t.testdir(), 'demo.png');
  const r = await svdquant(['demo', ...SMALL, '--quiet', '-o', out]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '');
  t.match(r.stdout, /^config\s+rank\s+PSNR\s+SSIM\s+classifier\s+sampling\s+speed-up\s+model\s+vs fp32$/m);
  t.match(r.stdout, /^fp32\s+-\s+inf\s+1\.000\s+\d+%\s+\d+ ms\s+1\.00x\s+[\d.]+ MiB\s+1\.00x$/m);
  t.match(r.stdout, /^w4a4 naive\s+0\s+[\d.]+ dB/m);
  t.match(r.stdout, /^w4a4 SVDQuant\s+32\s+[\d.]+ dB/m);
  t.match(r.stdout, new RegExp(`^grid: ${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(rows: fp32, w4a4 naive, w4a4 SVDQuant; columns: the labels\\)$`, 'm'));
});

t.test('demo usage errors: one line, exit code 2', async (t) => {
  assertOneLineError(t, await svdquant(['demo', '--schemes', 'w4a4,int3']), 2, /--schemes: unknown value 'int3'/);
  assertOneLineError(t, await svdquant(['demo', '--labels', 'cat']), 2, /--labels: 'cat' is not a class/);
  assertOneLineError(t, await svdquant(['demo', '--steps', '0']), 2, /--steps expects an integer in \[1, /);
  assertOneLineError(t, await svdquant(['demo', 'extra']), 2, /unexpected argument 'extra'/);
  assertOneLineError(t, await svdquant(['demo', '--model', 'no/such/dir']), 2, /--model: no such file or folder/);
});
