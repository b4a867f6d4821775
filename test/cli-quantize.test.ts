/**
 * `svdquant quantize` and `svdquant inspect` of its checkpoint, run as a user would, on the built-in
 * model exported with `svdquant demo --export`; the checkpoint is then loaded with loadCheckpoint.
 */
import t from 'tap';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../lib/io/safetensors.js';
import { tinyDit, tinyDitInputs } from '../lib/models/tiny-dit.js';
import { loadCheckpoint } from '../lib/runtime/checkpoint.js';
import { ErrorCorrectedLinear } from '../lib/quant/error-corrected-linear.js';
import { relativeError } from '../lib/quant/ops.js';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

const MODEL = { dim: 64, heads: 4, blocks: 2, seed: 7 };

async function exported(dir: string): Promise<{ model: string; calib: string }> {
  const r = await svdquant(['demo', '--export', dir, '--dim', String(MODEL.dim), '--heads', String(MODEL.heads), '--blocks', String(MODEL.blocks),
    '--seed', String(MODEL.seed), '--calib', '96']);
  if (r.code !== 0) throw new Error(r.stderr);
  return { model: join(dir, 'model.safetensors'), calib: join(dir, 'calib.safetensors') };
}

t.test('quantize writes a checkpoint that inspect lists and loadCheckpoint restores', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const out = join(dir, 'q.safetensors');
  const r = await svdquant(['quantize', model, '--calib', calib, '-o', out, '--scheme', 'mxfp4', '--rank', '8', '--exclude', '1.mlp.*']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^LAYER\s+SHAPE \(NxK\)\s+ALPHA\s+RANK\s+RESIDUAL\s+ERR RTN\s+ERR SVDQUANT\s+TOKENS\s+TIME$/m);
  t.match(r.stdout, /^0\.attn\.to_q\s+64x64\s+0\.5\s+8\s+rtn\s/m);
  t.match(r.stdout, /10 layers quantized, 2 skipped, \d+ other tensors carried over/);
  t.match(r.stdout, /skipped 1\.mlp\.fc1:\s+excluded by pattern '1\.mlp\.\*'/);
  t.match(r.stderr, /^quantize: \[10\/10\] 1\.attn\.to_out done/m, 'plain progress lines when stderr is not a terminal');

  const inspect = await svdquant(['inspect', out]);
  t.equal(inspect.code, 0, inspect.stderr);
  t.match(inspect.stdout, /svdquant checkpoint \(format version 2\): 10 quantized layers/);
  t.match(inspect.stdout, /^\s+0\.mlp\.fc1\s+svdquant\s+mxfp4\s+mxfp4\s+32\s+8\s+256x64\s+yes\s+yes\s+[\d.]+ KiB\s+0\.\d+x$/m);
  const info = JSON.parse((await svdquant(['inspect', out, '--json'])).stdout) as { checkpoint: { quantizedLayers: number; layers: Array<{ name: string; scheme: string; rank: number; group: number }> } };
  t.equal(info.checkpoint.quantizedLayers, 10);
  t.match(info.checkpoint.layers.find((l) => l.name === '1.attn.to_v'), { name: '1.attn.to_v', scheme: 'mxfp4', rank: 8, group: 32 });

  // The checkpoint loads onto the same architecture and the quantized model stays close to fp32.
  const fp32 = tinyDit(MODEL);
  const net = tinyDit(MODEL);
  const report = await loadCheckpoint(out, net);
  t.equal(report.replaced.length, 10);
  t.ok(net.getSubmodule('0.attn.to_q') instanceof ErrorCorrectedLinear);
  t.notOk(net.getSubmodule('1.mlp.fc1') instanceof ErrorCorrectedLinear, 'the excluded layer stays a Linear');
  const x = tinyDitInputs(32, MODEL.dim, 5);
  const err = relativeError((await net.call(x)).data, (await fp32.call(x)).data);
  t.ok(err > 0 && err < 0.5, `quantized model output error ${err}`);
});

t.test('quantize --json and --gptq, --search-alpha', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const out = join(dir, 'q.safetensors');
  const r = await svdquant(['quantize', model, '--calib', calib, '-o', out, '--gptq', '--search-alpha', '--alpha-candidates', '0.3,0.6', '--json', '-q']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', 'quiet');
  const report = JSON.parse(r.stdout) as { layers: Array<{ name: string; residual: string; alpha: number; candidates: unknown[]; errorBefore: number; errorAfter: number }>; skipped: unknown[]; config: { scheme: string } };
  t.equal(report.config.scheme, 'w4a4');
  t.equal(report.layers.length, 12);
  t.same(report.skipped, []);
  for (const l of report.layers) {
    t.equal(l.residual, 'gptq');
    t.ok(l.alpha === 0.3 || l.alpha === 0.6, `${l.name}: alpha from the candidates`);
    t.equal(l.candidates.length, 2);
  }
  const mean = (k: 'errorBefore' | 'errorAfter') => report.layers.reduce((s, l) => s + l[k], 0) / report.layers.length;
  t.ok(mean('errorAfter') < mean('errorBefore'), `SVDQuant (${mean('errorAfter')}) beats plain RTN (${mean('errorBefore')}) on average`);
});

t.test('quantize refuses to overwrite without --force, and bad input leaves no file', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const out = join(dir, 'q.safetensors');
  t.equal((await svdquant(['quantize', model, '--calib', calib, '-o', out, '-q'])).code, 0);
  const before = statSync(out).mtimeMs;
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out]), 2, /exists \(pass --force to replace it\)/);
  t.equal(statSync(out).mtimeMs, before, 'the existing file is untouched');
  t.equal((await svdquant(['quantize', model, '--calib', calib, '-o', out, '--force', '-q', '--scheme', 'w8a8'])).code, 0, '--force replaces it');

  // A calibration tensor that names no layer: a runtime error (exit 1) naming it; nothing written.
  const badCalib = join(dir, 'bad-calib.safetensors');
  await writeSafetensors(badCalib, [{ name: '0.attn.to_z', dtype: 'F32', shape: [2, 64], data: new Float32Array(128) }]);
  const out2 = join(dir, 'q2.safetensors');
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', badCalib, '-o', out2]), 1, /tensor '0\.attn\.to_z' names no linear layer of the model/);
  t.notOk(existsSync(out2), 'no output file');
  const wrongK = join(dir, 'wrong-k.safetensors');
  await writeSafetensors(wrongK, [{ name: '0.mlp.fc2', dtype: 'F32', shape: [2, 64], data: new Float32Array(128) }]);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', wrongK, '-o', out2]), 1, /expected F32\/F16\/BF16 inputs \[tokens, 256\] for layer '0\.mlp\.fc2'/);
  t.same(readdirSync(dir).filter((f) => f.includes('svdq-tmp')), [], 'no temporary files left');

  assertOneLineError(t, await svdquant(['quantize', model, '-o', out2]), 2, /--calib CALIB\.safetensors is required/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib]), 2, /-o OUT\.safetensors is required/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out2, '--scheme', 'w3a3']), 2, /--scheme: unknown value 'w3a3'/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out2, '--alpha', '1.5']), 2, /--alpha expects a number in \[0, 1\]/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out2, '--act-order']), 2, /need --gptq/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', model]), 2, /must name a new file/);
  assertOneLineError(t, await svdquant(['quantize', join(dir, 'missing.safetensors'), '--calib', calib, '-o', out2]), 1, /missing\.safetensors/);
});
