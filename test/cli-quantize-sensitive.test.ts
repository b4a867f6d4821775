/**
 * `svdquant quantize --keep-sensitive BYTES|PERCENT% --keep-as w8a8|fp32` (issue 20 item 4 on the
 * command line), run as a user would on the exported built-in synthetic model.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tinyDit } from '../lib/models/tiny-dit.js';
import { loadCheckpoint } from '../lib/runtime/checkpoint.js';
import { ErrorCorrectedLinear } from '../lib/quant/error-corrected-linear.js';
import { Linear } from '../lib/graph/layers.js';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

const MODEL = { dim: 64, heads: 4, blocks: 1, seed: 7 };
// Fast settings: what is tested is the choice, not the quantizer's own options.
const FAST = ['--rtn', '--no-search-alpha', '--rank', '4', '--json', '-q'];

async function exported(dir: string): Promise<{ model: string; calib: string }> {
  const r = await svdquant(['demo', '--export', dir, '--dim', String(MODEL.dim), '--heads', String(MODEL.heads), '--blocks', String(MODEL.blocks),
    '--seed', String(MODEL.seed), '--calib', '96']);
  if (r.code !== 0) throw new Error(r.stderr);
  return { model: join(dir, 'model.safetensors'), calib: join(dir, 'calib.safetensors') };
}

interface Report {
  layers: Array<{ name: string; errorAfter: number }>;
  skipped: Array<{ name: string; reason: string }>;
  sensitivity: null | { keepAs: string; budgetBytes: number; usedBytes: number;
    layers: Array<{ name: string; errorQuantized: number; errorKept: number; extraBytes: number; kept: boolean; reason: string }> };
}

t.test('--keep-sensitive BYTES --keep-as w8a8: the layers with most error removed per byte, within the budget', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const base = JSON.parse((await svdquant(['quantize', model, '--calib', calib, '-o', join(dir, 'q0.safetensors'), ...FAST])).stdout) as Report;
  t.equal(base.sensitivity, null, 'off by default');
  const out = join(dir, 'q.safetensors');
  const r = await svdquant(['quantize', model, '--calib', calib, '-o', out, ...FAST, '--keep-sensitive', '20000']);
  t.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as Report;
  const s = rep.sensitivity!;
  t.equal(s.keepAs, 'w8a8');
  t.equal(s.budgetBytes, 20000);
  t.equal(s.layers.length, base.layers.length, 'every quantized layer ranked');
  const kept = s.layers.filter((l) => l.kept);
  t.ok(kept.length >= 1 && kept.length < s.layers.length, `${kept.length} kept`);
  t.equal(s.usedBytes, kept.reduce((a, l) => a + l.extraBytes, 0));
  t.ok(s.usedBytes <= 20000);
  // The ranking: kept layers remove at least as much error per byte as any layer not kept that would fit.
  const perByte = (l: (typeof s.layers)[number]) => (l.errorQuantized - l.errorKept) / l.extraBytes;
  const worstKept = Math.min(...kept.map(perByte));
  for (const l of s.layers.filter((x) => !x.kept && x.extraBytes <= 20000 - s.usedBytes)) t.ok(perByte(l) <= worstKept, `${l.name} not kept`);
  for (const l of kept) {
    t.ok(l.errorKept < l.errorQuantized, `${l.name}: w8a8 ${l.errorKept} < 4-bit ${l.errorQuantized}`);
    t.equal(rep.layers.find((x) => x.name === l.name)!.errorAfter, l.errorKept, `${l.name}: the w8a8 layer is written`);
  }
  const net = tinyDit(MODEL);
  await loadCheckpoint(out, net);
  for (const l of s.layers) {
    const m = net.getSubmodule(l.name) as ErrorCorrectedLinear;
    t.equal(m.scheme, l.kept ? 'w8a8' : 'w4a4', `${l.name} in the checkpoint`);
  }
  const text = await svdquant(['quantize', model, '--calib', calib, '-o', join(dir, 'q1.safetensors'), '--rtn', '--no-search-alpha', '--rank', '4', '-q', '--keep-sensitive', '20000']);
  t.match(text.stdout, new RegExp(`--keep-sensitive: ${kept.length} layer\\(s\\) kept at w8a8, ${s.usedBytes} of 20000 extra bytes`));
});

t.test('--keep-sensitive PERCENT% --keep-as fp32: kept layers stay the original tensors', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const out = join(dir, 'q.safetensors');
  const r = await svdquant(['quantize', model, '--calib', calib, '-o', out, ...FAST, '--keep-sensitive', '30%', '--keep-as', 'fp32']);
  t.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as Report;
  const s = rep.sensitivity!;
  const kept = s.layers.filter((l) => l.kept);
  t.ok(kept.length >= 1, `${kept.length} kept`);
  t.ok(s.usedBytes <= s.budgetBytes && s.budgetBytes > 0);
  for (const l of kept) {
    t.equal(l.errorKept, 0);
    t.match(rep.skipped.find((x) => x.name === l.name)?.reason, /^--keep-sensitive: kept at the original precision/);
    t.notOk(rep.layers.some((x) => x.name === l.name));
  }
  const net = tinyDit(MODEL);
  await loadCheckpoint(out, net);
  for (const l of kept) t.ok(net.getSubmodule(l.name) instanceof Linear && !(net.getSubmodule(l.name) instanceof ErrorCorrectedLinear), `${l.name} stays a Linear`);
});

t.test('bad --keep-sensitive / --keep-as: one-line usage errors, no file', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const out = join(dir, 'q.safetensors');
  const run = (...extra: string[]) => svdquant(['quantize', model, '--calib', calib, '-o', out, ...extra]);
  assertOneLineError(t, await run('--keep-sensitive', 'lots'), 2, /--keep-sensitive expects extra bytes \(an integer >= 0\) or a percentage in \[0, 100\] ending in %, got 'lots'/);
  assertOneLineError(t, await run('--keep-sensitive', '150%'), 2, /--keep-sensitive expects/);
  assertOneLineError(t, await run('--keep-sensitive', '1.5'), 2, /--keep-sensitive expects/);
  assertOneLineError(t, await run('--keep-sensitive', '100', '--keep-as', 'fp16'), 2, /--keep-as expects w8a8 or fp32, got 'fp16'/);
  assertOneLineError(t, await run('--keep-as', 'fp32'), 2, /--keep-as needs --keep-sensitive/);
  assertOneLineError(t, await run('--scheme', 'w8a8', '--keep-sensitive', '100'), 2, /--keep-as w8a8 keeps nothing with --scheme w8a8/);
  t.notOk(existsSync(out));
});
