/** `svdquant calibrate` on the built-in pipeline: layers calibrated from pipeline runs, cells also scored on images. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

interface Cell { position: number; scheme: string; meanError: number; layers: Array<{ name: string }>; image: { psnrDb: number | null; ssim: number } }
interface Results { cells: Cell[]; best: Cell; bestByImages: Cell; bestCommand: string; layers: string[]; images: { labels: number[]; steps: number } }

t.test('calibrate (default: the built-in model): layer error and image scores per cell', async (t) => {
  const dir = t.testdir();
  const r = await svdquant(['calibrate', '--schemes', 'w4a4,w8a8', '--residual', 'rtn', '--samples', 'all', '--alpha-search', 'off', '--rank', '8',
    '--images', '2', '--steps', '3', '--labels', 'Trouser,Bag', '-o', dir]);
  t.equal(r.code, 0, r.stderr);
  const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as Results;
  t.equal(results.layers.length, 36, 'attention and feed-forward linears of 6 blocks (the DiT preset keeps the rest in high precision)');
  t.ok(results.layers.every((name) => /^transformer_blocks\.\d\.(attn1\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))$/.test(name)), 'only quantizable layers');
  t.same(results.images, { labels: [1, 8], seed: 0, steps: 3, guidance: 4 });
  t.equal(results.cells.length, 2);
  const [w8a8, w4a4] = [...results.cells].sort((a, b) => (a.scheme === 'w8a8' ? -1 : 1) - (b.scheme === 'w8a8' ? -1 : 1));
  for (const c of results.cells) t.ok(c.image.psnrDb !== null && c.image.psnrDb > 10 && c.image.ssim > 0 && c.image.ssim <= 1, `${c.scheme}: PSNR ${c.image.psnrDb} dB, SSIM ${c.image.ssim}`);
  t.ok(w8a8.image.psnrDb! > w4a4.image.psnrDb!, '8-bit images are closer to fp32 than 4-bit ones');
  t.ok(w8a8.meanError < w4a4.meanError, 'and so are its layer outputs');
  t.equal(results.bestByImages.scheme, 'w8a8');
  // RTN and fixed α need their flags since α search + GPTQ are the defaults (issue 20).
  t.match(results.bestCommand, /^svdquant generate --scheme w8a8 --rank 8 --rtn --no-search-alpha --save OUT\.safetensors -o OUT\.png$/);
  t.match(r.stdout, /^#\s+SCHEME\s+RESIDUAL\s+SAMPLES\s+ALPHA SEARCH\s+MEAN ERR\s+MAX ERR\s+IN-SAMPLE\s+PSNR\s+SSIM\s+TIME$/m);
  t.match(r.stdout, /^best by images: w8a8 rtn samples=all alpha-search=off \(PSNR [\d.]+ dB, SSIM [\d.]+, #1 by layer error\)$/m);
});

t.test('--no-images: layer error only', async (t) => {
  const dir = t.testdir();
  const r = await svdquant(['calibrate', '--schemes', 'w4a4', '--residual', 'rtn', '--samples', 'all', '--alpha-search', 'off', '--rank', '4',
    '--images', '1', '--steps', '2', '--no-images', '--layers', 'transformer_blocks.0.**', '-o', dir, '--json', '-q']);
  t.equal(r.code, 0, r.stderr);
  const results = JSON.parse(r.stdout) as Results;
  t.equal(results.layers.length, 6);
  t.equal(results.images, undefined);
  t.equal(results.cells[0].image, undefined);
});

t.test('calibrate pipeline usage errors', async (t) => {
  assertOneLineError(t, await svdquant(['calibrate', '--synthetic', '--images', '3']), 2, /--images applies to a pipeline, not the synthetic model/);
  assertOneLineError(t, await svdquant(['calibrate', '--dim', '32', '--steps', '3']), 2, /--steps applies to a pipeline/);
  assertOneLineError(t, await svdquant(['calibrate', 'm.safetensors', '--calib', 'c.safetensors', '--images', '2']), 2, /--images applies without MODEL\.safetensors only/);
  assertOneLineError(t, await svdquant(['calibrate', '--labels', 'cat']), 2, /--labels: 'cat' is not a class/);
});
