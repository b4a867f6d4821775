/** `svdquant calibrate`, run as a user would: the grid, the ranking, results.json and summary.txt. */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

interface Cell {
  position: number; scheme: string; residual: string; samples: number; samplesUsed: number; alphaSearch: boolean; meanError: number; maxError: number;
  meanInSampleError: number; gptqFallbacks: number; layers: Array<{ name: string; error: number; inSampleError: number; residual: string }>;
}
interface Results { cells: Cell[]; best: Cell; bestCommand: string; layers: string[]; holdout: number }

t.test('calibrate on the built-in model: every cell scored, ranked, files written', async (t) => {
  const dir = t.testdir();
  const r = await svdquant(['calibrate', '--dim', '32', '--heads', '2', '--tokens', '96', '--schemes', 'w4a4,w8a8', '--residual', 'rtn,gptq',
    '--samples', '16,all', '--alpha-search', 'off', '--rank', '4', '-o', dir]);
  t.equal(r.code, 0, r.stderr);
  const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as Results;
  t.equal(results.cells.length, 2 * 2 * 2 * 1, 'scheme x residual x samples x alpha search');
  t.same(results.cells.map((c) => c.position), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (let i = 1; i < results.cells.length; i++) t.ok(results.cells[i - 1].meanError <= results.cells[i].meanError, 'ranked by mean error');
  for (const c of results.cells) {
    t.equal(c.layers.length, 6, 'every layer scored');
    t.ok(c.meanError > 0 && c.meanError <= c.maxError, `${c.scheme} ${c.residual}: mean ${c.meanError} <= max ${c.maxError}`);
    t.equal(c.samplesUsed, c.samples === 0 ? 72 : 16, 'all = the 75% training split of 96 tokens');
    t.ok(c.layers.every((l) => l.inSampleError > 0), 'in-sample errors reported');
    t.equal(c.gptqFallbacks, c.layers.filter((l) => c.residual === 'gptq' && l.residual === 'rtn').length, 'fall-backs counted');
  }
  t.equal(results.best.scheme, 'w8a8', '8-bit beats 4-bit');
  t.same(results.best, results.cells[0]);
  t.match(results.bestCommand, /svdquant demo --export demo-files --dim 32 --blocks 1 --heads 2 --seed 42 --calib 96 && svdquant quantize demo-files\/model\.safetensors --calib demo-files\/calib\.safetensors --scheme w8a8 --rank 4/);
  const summary = readFileSync(join(dir, 'summary.txt'), 'utf8');
  t.equal(r.stdout, summary, 'stdout is the summary');
  t.match(summary, /^#\s+SCHEME\s+RESIDUAL\s+SAMPLES\s+ALPHA SEARCH\s+MEAN ERR\s+MAX ERR\s+IN-SAMPLE\s+TIME$/m);
  t.match(summary, /^best per scheme:\n\s+w8a8:.*\n\s+w4a4:/m);
  t.match(summary, /^best configuration: w8a8 /m);
  t.match(r.stderr, /^calibrate: \[8\/8\] /m, 'progress');
});

t.test('calibrate on files, with --layers and --json', async (t) => {
  const dir = t.testdir();
  const files = join(dir, 'files');
  t.equal((await svdquant(['demo', '--export', files, '--dim', '32', '--heads', '2', '--blocks', '1', '--calib', '64'])).code, 0);
  const model = join(files, 'model.safetensors'), calib = join(files, 'calib.safetensors');
  const r = await svdquant(['calibrate', model, '--calib', calib, '--layers', '0.attn.*', '--schemes', 'mxfp4', '--residual', 'rtn',
    '--samples', 'all', '--alpha-search', 'off,on', '--rank', '4', '-o', join(dir, 'out'), '--json', '-q']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '');
  const results = JSON.parse(r.stdout) as Results;
  t.same(results.layers, ['0.attn.to_q', '0.attn.to_k', '0.attn.to_v', '0.attn.to_out']);
  t.equal(results.cells.length, 2);
  t.match(results.bestCommand, new RegExp(`^svdquant quantize ${model.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} --calib .* --scheme mxfp4 --rank 4`));
});

t.test('calibrate usage errors', async (t) => {
  assertOneLineError(t, await svdquant(['calibrate', 'model.safetensors']), 2, /MODEL needs --calib/);
  assertOneLineError(t, await svdquant(['calibrate', '--samples', '0']), 2, /--samples expects an integer in \[1, /);
  assertOneLineError(t, await svdquant(['calibrate', '--holdout', '1']), 2, /--holdout expects a number in \[0\.01, 0\.9\]/);
  assertOneLineError(t, await svdquant(['calibrate', '--residual', 'awq']), 2, /--residual: unknown value 'awq'/);
  assertOneLineError(t, await svdquant(['calibrate', '--dim', '32', '--heads', '2', '--layers', 'nothing.*', '-q']), 2, /no layer matches --layers nothing\.\*/);
});

t.test('calibrate -o an unusable folder fails before the grid runs (issue 18)', async (t) => {
  const dir = t.testdir({ file: 'x' });
  // One line on stderr and nothing else: the grid (progress lines) never started.
  if (process.platform === 'linux') {
    assertOneLineError(t, await svdquant(['calibrate', '-o', '/proc/svdquant-test']), 1, /^svdquant: could not create the directory '\/proc\/svdquant-test': '\/proc' is on the kernel's proc pseudo file system/);
  }
  assertOneLineError(t, await svdquant(['calibrate', '-o', join(dir, 'file')]), 1, /'.*file' is a regular file, not a directory/);
  t.same(readdirSync(dir), ['file']);
});
