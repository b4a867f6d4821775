/**
 * Randomized against exact SVD at the layer level (issue 20 item 1):
 * `node --import tsx bench/svd.ts [--shapes NxK,...] [--decay P,...] [--rank R] [--threads T] [--json FILE]
 * [--reference exact|krylov:DEPTH,OVERSAMPLE]`.
 * For each output×input shape and power-law exponent P, a weight with singular values ~ (i+1)^-P
 * (random Gaussian factors), inputs with outlier channels (syntheticLayer), λ from α = 0.5; then the
 * top-R branch of Ŵ = W·diag(λ) by the default randomized SVD and by the exact one, each followed by
 * the same int4 RTN residual, and the deployed layer's ‖Y_q − Y‖/‖Y‖ on 512 held-out tokens.
 * Prints both SVD times (one run each: the exact one takes minutes at 12288×3072), their ratio, both
 * output errors and their relative difference. Never asserts. Default shapes 4096x1024,12288x3072.
 * `--reference krylov:20,64` replaces the exact SVD (hours at 12288×3072 on 2 busy cores) by a much
 * deeper randomized one as the reference.
 */
import { writeTextAtomic, jsonLines } from '../lib/bench/files.js';
import { parseCount } from '../lib/bench/options.js';
import {
  buildLayer, deployedError, matmulNT, SeededRandom, smoothingFactors, svdTopR, syntheticLayer, weightColumnAbsMax,
} from '../lib/quant/index.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const shapes = (opt('--shapes') ?? '4096x1024,12288x3072').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const decays = (opt('--decay') ?? '0.5').split(',').map(Number);
const rank = parseCount(opt('--rank') ?? '32', '--rank', 1, 4096);
const threads = parseCount(opt('--threads') ?? '2', '--threads', 1, 1024);
const jsonFile = opt('--json');
const refArg = opt('--reference') ?? 'exact';
const krylov = /^krylov:(\d+),(\d+)$/.exec(refArg);
if (refArg !== 'exact' && krylov === null) throw new Error(`--reference: 'exact' or 'krylov:DEPTH,OVERSAMPLE', got '${refArg}'`);
const reference = krylov === null
  ? { method: 'exact' as const }
  : { method: 'randomized' as const, powerIters: Number(krylov[1]), oversample: Number(krylov[2]) };
const fitTokens = 1024, scoreTokens = 512;

/** W [n, k] = G₁·diag((i+1)^-p)·G₂ / √k with Gaussian G₁ [n, m], G₂ [m, k], m = min(n, k). */
async function powerLawWeight(n: number, k: number, p: number, seed: number): Promise<Float32Array> {
  const m = Math.min(n, k);
  const rng = new SeededRandom(seed);
  const g1 = Float32Array.from({ length: n * m }, () => rng.normal());
  // G₂ stored transposed ([k, m]) for matmulNT: W = G₁ · (G₂ᵀ)ᵀ.
  const g2t = new Float32Array(k * m);
  for (let j = 0; j < k; j++) for (let i = 0; i < m; i++) g2t[j * m + i] = rng.normal() * (i + 1) ** -p / Math.sqrt(k);
  return matmulNT(g1, n, m, g2t, k, undefined, threads);
}

const records: object[] = [];
console.log(`| layer (N×K) | decay | rank | randomized s | reference (${refArg}) s | speed-up | error randomized | error reference | relative difference |`);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const [n, k] of shapes) {
  for (const p of decays) {
    const w = await powerLawWeight(n, k, p, 11);
    const xs = syntheticLayer({ outFeatures: 1, inFeatures: k, tokens: fitTokens + scoreTokens, seed: 5 }).x;
    const fit = xs.subarray(0, fitTokens * k), score = xs.slice(fitTokens * k);
    const absMax = new Float32Array(k);
    for (let t = 0; t < fitTokens; t++) for (let j = 0; j < k; j++) absMax[j] = Math.max(absMax[j], Math.abs(fit[t * k + j]));
    const lambda = smoothingFactors(absMax, weightColumnAbsMax(w, n, k), 0.5);
    const what = new Float32Array(n * k);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) what[i * k + j] = w[i * k + j] * lambda[j];
    const yRef = await matmulNT(score, scoreTokens, k, w, n, undefined, threads);
    const row: Record<string, number> = {};
    for (const [key, svd] of [['randomized', { method: 'randomized' as const }], ['exact', reference]] as const) {
      const t0 = performance.now();
      const lowRank = await svdTopR(what, n, k, rank, { ...svd, threads });
      row[`${key}Seconds`] = (performance.now() - t0) / 1000;
      const { layer } = await buildLayer(w, n, k, undefined, { scheme: 'w4a4', rule: 'even', rank, lambda, lowRank, threads });
      row[`${key}Error`] = await deployedError(layer, score, scoreTokens, yRef, threads);
    }
    const rec = {
      kind: 'svd', reference: refArg, outFeatures: n, inFeatures: k, decay: p, rank, threads, ...row,
      speedup: row.exactSeconds / row.randomizedSeconds, relativeDifference: row.randomizedError / row.exactError - 1,
    };
    records.push(rec);
    console.log(`| ${n}×${k} | ${p} | ${rank} | ${row.randomizedSeconds.toFixed(2)} | ${row.exactSeconds.toFixed(1)} | ${rec.speedup.toFixed(1)}× | ` +
      `${row.randomizedError.toFixed(6)} | ${row.exactError.toFixed(6)} | ${rec.relativeDifference.toExponential(2)} |`);
  }
}
if (jsonFile !== undefined) await writeTextAtomic(jsonFile, jsonLines(records));
