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
  t.match(r.stdout, /^LAYER\s+SHAPE \(NxK\)\s+ALPHA\s+RANK\s+RESIDUAL\s+ERR RTN\s+ERR SVDQUANT\s+IN-SAMPLE\s+TOKENS\s+TIME$/m);
  t.match(r.stdout, /on held-out calibration tokens \(never used for the statistics\)/);
  // The defaults (issue 20): α searched, GPTQ residual guarded by the held-out tokens (RTN where GPTQ is worse).
  t.match(r.stdout, /^scheme mxfp4, rank 8, smoothing alpha searched, residual GPTQ$/m);
  t.match(r.stdout, /^0\.attn\.to_q\s+64x64\s+(0\.\d|1)\s+8\s+(gptq|rtn \(gptq worse\))\s/m);
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

t.test('quantize --rtn --no-search-alpha, --alpha: round-to-nearest at a fixed alpha', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const parse = (stdout: string) => JSON.parse(stdout) as { layers: Array<{ residual: string; alpha: number; gptq: unknown; candidates: unknown[] }>; config: { searchAlpha: boolean; gptq: unknown } };
  const r = await svdquant(['quantize', model, '--calib', calib, '-o', join(dir, 'a.safetensors'), '--rtn', '--no-search-alpha', '--json', '-q']);
  t.equal(r.code, 0, r.stderr);
  const a = parse(r.stdout);
  t.equal(a.config.searchAlpha, false);
  t.equal(a.config.gptq, false);
  t.ok(a.layers.every((l) => l.residual === 'rtn' && l.alpha === 0.5 && l.gptq === null), 'every layer RTN at alpha 0.5');
  const f = await svdquant(['quantize', model, '--calib', calib, '-o', join(dir, 'b.safetensors'), '--alpha', '0.3', '--json', '-q']);
  t.equal(f.code, 0, f.stderr);
  const b = parse(f.stdout);
  t.equal(b.config.searchAlpha, false, 'a given --alpha is used as given');
  t.ok(b.layers.every((l) => l.alpha === 0.3), 'every layer at alpha 0.3');
});

t.test('quantize --json and --gptq, --search-alpha', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const out = join(dir, 'q.safetensors');
  const r = await svdquant(['quantize', model, '--calib', calib, '-o', out, '--gptq', '--search-alpha', '--alpha-candidates', '0.3,0.6', '--json', '-q']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', 'quiet');
  const report = JSON.parse(r.stdout) as {
    layers: Array<{ name: string; residual: string; alpha: number; candidates: unknown[]; errorBefore: number; errorAfter: number; heldOut: boolean;
      gptq: { fallback: boolean; rtnError: number; candidates: Array<{ relError: number }> } }>;
    skipped: unknown[]; config: { scheme: string; holdout: number };
  };
  t.equal(report.config.scheme, 'w4a4');
  t.equal(report.config.holdout, 0.25);
  t.equal(report.layers.length, 12);
  t.same(report.skipped, []);
  for (const l of report.layers) {
    t.ok(l.heldOut, `${l.name}: scored on held-out tokens`);
    // GPTQ is kept only where it beats RTN on the held-out tokens.
    const best = Math.min(...l.gptq.candidates.map((c) => c.relError));
    t.equal(l.residual, l.gptq.fallback ? 'rtn' : 'gptq');
    t.equal(l.gptq.fallback, !(best < l.gptq.rtnError), `${l.name}: GPTQ ${best} vs RTN ${l.gptq.rtnError}`);
    t.equal(l.errorAfter, l.gptq.fallback ? l.gptq.rtnError : best);
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
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out2, '--rtn', '--act-order']), 2, /--rtn excludes --gptq/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out2, '--search-alpha', '--no-search-alpha']), 2, /exclude each other/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out2, '--no-search-alpha', '--search-beta']), 2, /--search-beta needs the alpha search/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', model]), 2, /must name a new file/);
  assertOneLineError(t, await svdquant(['quantize', join(dir, 'missing.safetensors'), '--calib', calib, '-o', out2]), 1, /missing\.safetensors/);
});

t.test('bad outputs and options fail before any work: one line, no progress, no file (issue 18)', async (t) => {
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const files = readdirSync(dir).sort();
  // The one-line check (no progress line before the error) shows that nothing was quantized.
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', join(dir, 'missing-dir', 'x.safetensors')]), 1,
    /^svdquant: could not write '.*x\.safetensors': directory '.*missing-dir' does not exist\n$/);
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', dir, '--force']), 1, /it is a directory: expected a regular file or a new file name/);
  if (existsSync('/dev/full')) {
    assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', '/dev/full', '--force']), 1,
      /^svdquant: could not write '\/dev\/full': it is a character device: expected a regular file or a new file name\n$/);
    t.ok(statSync('/dev/full').isCharacterDevice(), '/dev/full is still the device');
  }
  if (process.platform === 'linux') {
    assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', '/proc/x.safetensors']), 1, /'\/proc' is on the kernel's proc pseudo file system/);
  }
  // A rank the layers cannot hold: refused, not clipped (a clipped layer was 4.3x its bf16 size).
  assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', join(dir, 'r.safetensors'), '--rank', '500']), 2,
    /^svdquant: quantize: --rank 500 is above min\(N, K\) = 64 of layer '0\.attn\.to_q' \(64x64\): give --rank 64 or less, or skip small layers with --min-dim or --exclude\n$/);
  t.same(readdirSync(dir).sort(), files, 'nothing written anywhere');
});

t.test('NaN or Inf in the calibration inputs: exit 1 naming the layer, token and channel; no file (issue 18)', async (t) => {
  const dir = t.testdir();
  const { model } = await exported(dir);
  for (const bad of [NaN, Infinity]) {
    const x = new Float32Array(4 * 64).fill(0.5);
    x[2 * 64 + 5] = bad;
    const calib = join(dir, `calib-${bad}.safetensors`);
    await writeSafetensors(calib, [{ name: '0.attn.to_k', dtype: 'F32', shape: [4, 64], data: x }]);
    const out = join(dir, `q-${bad}.safetensors`);
    assertOneLineError(t, await svdquant(['quantize', model, '--calib', calib, '-o', out, '-q']), 1,
      new RegExp(`^svdquant: tensor '0\\.attn\\.to_k \\(calibration input\\)' holds a non-finite value \\(${bad}\\) at flat index 133 \\(token 2, channel 5 of this batch\\): expected finite calibration inputs`));
    t.notOk(existsSync(out), 'no output');
  }
  t.same(readdirSync(dir).filter((f) => f.includes('svdq-tmp')), [], 'no temporary files');
});

t.test('Ctrl-C or SIGTERM while quantize writes leaves no temporary file (issue 18)', async (t) => {
  const { spawn } = await import('node:child_process');
  const { watch } = await import('node:fs');
  const { CLI } = await import('./support/cli.js');
  const dir = t.testdir();
  const { model, calib } = await exported(dir);
  const outDir = join(dir, 'out');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(outDir);
  let midWrite = 0;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGINT', 'SIGTERM'] as const) {
    const out = join(outDir, 'q.safetensors');
    // The signal goes out as soon as the temporary file appears: usually mid-write, sometimes just
    // after the rename (then the run completes). Either way nothing may be left behind.
    const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'quantize', model, '--calib', calib, '-o', out, '--force', '-q', '--rank', '8'], { stdio: 'ignore' });
      const watcher = watch(outDir, (_event, name) => {
        if (typeof name === 'string' && name.endsWith('.svdq-tmp')) {
          watcher.close();
          child.kill(signal);
        }
      });
      const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.on('exit', (code, sig) => {
        clearTimeout(guard);
        watcher.close();
        resolve({ code, signal: sig });
      });
    });
    const left = readdirSync(outDir);
    t.same(left.filter((f) => f.endsWith('.svdq-tmp')), [], `${signal}: no temporary file left (${outcome.signal ?? `exit ${outcome.code}`})`);
    if (outcome.signal !== signal) t.equal(outcome.code, 0, 'finished before the signal arrived');
    if (existsSync(out)) {
      // Renamed before the signal landed (on a busy machine the signal can arrive after the rename
      // and still end the process before it exits): the output must then be complete.
      const net = tinyDit(MODEL);
      t.equal((await loadCheckpoint(out, net)).replaced.length, 12, 'an output present is a complete checkpoint');
    } else {
      t.equal(outcome.signal, signal, 'no output only when the signal ended the run');
      midWrite++;
    }
    for (const f of readdirSync(outDir)) (await import('node:fs')).rmSync(join(outDir, f));
  }
  t.comment(`${midWrite} of 4 runs were interrupted before the rename`);
});
