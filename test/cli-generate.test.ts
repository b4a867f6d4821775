/** `svdquant generate`, run as a user would (spawned dist/cli/main.js), on the built-in model. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

t.test('generate writes one labelled PNG of the images asked for', async (t) => {
  const out = join(t.testdir(), 'shoes.png');
  const r = await svdquant(['generate', '--labels', 'Sneaker,1', '--steps', '3', '--seed', '5', '-o', out, '--json']);
  t.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { labels: number[]; classNames: string[]; seeds: number[]; quantized: boolean; out: string };
  t.same(report.labels, [7, 1]);
  t.same(report.classNames, ['Sneaker', 'Trouser']);
  t.same(report.seeds, [5, 6]);
  t.equal(report.quantized, false);
  const png = PNG.sync.read(readFileSync(out));
  t.ok(png.width >= 2 * 28 && png.height >= 28, `${png.width}x${png.height}`);
  t.match(r.stderr, /generate: \[3\/3\] sampling steps/, 'progress per step on stderr');
});

t.test('generate --scheme quantizes from pipeline runs; the saved checkpoint gives the same images', async (t) => {
  const dir = t.testdir();
  const [first, second, fp32] = ['q.png', 'q2.png', 'fp32.png'].map((f) => join(dir, f));
  const checkpoint = join(dir, 'w4a4.safetensors');
  const q = await svdquant(['generate', '--scheme', 'w4a4', '--rank', '8', '--labels', '0,9', '--steps', '3', '--save', checkpoint, '-o', first, '--json']);
  t.equal(q.code, 0, q.stderr);
  t.equal((JSON.parse(q.stdout) as { quantized: boolean }).quantized, true);
  t.match(q.stderr, /generate: quantizing \(w4a4, rank 8\) from 3 captured model calls/, 'calibration: 10 labels in one run x 3 steps');
  const again = await svdquant(['generate', '--model', checkpoint, '--labels', '0,9', '--steps', '3', '-o', second]);
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, /^wrote 2 image\(s\) to .*q2\.png \(T-shirt\/top, Ankle boot; seeds 0\.\.1\)$/m);
  t.match(again.stdout, /model [\d.]+ MiB \(quantized\)/);
  t.same(readFileSync(second), readFileSync(first), 'the checkpoint reproduces the images bit for bit');
  const plain = await svdquant(['generate', '--labels', '0,9', '--steps', '3', '-o', fp32]);
  t.equal(plain.code, 0, plain.stderr);
  t.notSame(readFileSync(fp32), readFileSync(first), 'and they differ from fp32 (the quantized model really ran)');
});

t.test('generate usage errors: one line, exit code 2', async (t) => {
  assertOneLineError(t, await svdquant(['generate', '--labels', 'cat']), 2, /--labels: 'cat' is not a class: expected an id in \[0, 10\) or a name/);
  assertOneLineError(t, await svdquant(['generate', '--rank', '4']), 2, /--rank needs --scheme/);
  assertOneLineError(t, await svdquant(['generate', '--save', 'x.safetensors']), 2, /--save needs --scheme/);
  assertOneLineError(t, await svdquant(['generate', '--model', 'no/such/dir']), 2, /--model: no such file or folder/);
  assertOneLineError(t, await svdquant(['generate', 'extra']), 2, /unexpected argument 'extra'/);
  assertOneLineError(t, await svdquant(['generate', '--steps', 'x']), 2, /--steps expects an integer/);
});
