/**
 * Quantization time of one 3072 → 12288 layer (issue 20 item 5 targets: ≤ 3 s RTN, ≤ 20 s with the
 * α search, ≤ 20 s with GPTQ): `node --import tsx bench/quantize-time.ts [--threads 2] [--runs 3]`.
 * Prints, per run kind, the median wall time and the median process CPU time of quantizeLinear
 * (rank 32, 1024 calibration tokens, 25% held out) and of its randomized SVD alone, with the load
 * average before and after: on a shared machine the wall time grows with the load, while CPU time
 * divided by the threads estimates the wall time of an idle machine. Never asserts.
 */
import { loadavg } from 'node:os';
import { parseCount } from '../lib/bench/options.js';
import { Tensor } from '../lib/index.js';
import { LayerStatsCollector, quantizeLinear, svdTopR, syntheticLayer } from '../lib/quant/index.js';
import type { SVDQuantConfigInput } from '../lib/quant/index.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const threads = parseCount(opt('--threads') ?? '2', '--threads', 1, 1024);
const runs = parseCount(opt('--runs') ?? '3', '--runs', 1, 100);
const n = 12288, k = 3072, m = 1024, rank = 32;

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
async function timed(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const c0 = process.cpuUsage(), t0 = performance.now();
  await fn();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

console.log(`load average before: ${loadavg().map((x) => x.toFixed(1)).join(' ')}; ${threads} threads, median of ${runs} runs`);
const syn = syntheticLayer({ outFeatures: n, inFeatures: k, tokens: m, seed: 3, spikes: 8, tailDof: 4 });
const stats = new LayerStatsCollector(k, { hessian: true, maxSamples: m, holdout: 0.25, threads });
await stats.observeAsync(Tensor.fromStorage(syn.x, [m, k], 'f32'));
const w = Tensor.fromStorage(syn.weight, [n, k], 'f32');
const bias = Tensor.fromStorage(syn.bias!, [n], 'f32');

const kinds: [string, number, () => Promise<unknown>][] = [
  ['randomized SVD alone (top 32 of 12288×3072)', NaN, () => svdTopR(syn.weight, n, k, rank, { threads })],
  ...([
    ['fixed α, RTN', 3, { searchAlpha: false, gptq: false }],
    ['10-candidate α search, RTN', 20, { searchAlpha: true, gptq: false }],
    ['fixed α, GPTQ (guarded)', 20, { searchAlpha: false, gptq: true }],
    ['α search + GPTQ (the default)', NaN, {}],
  ] as [string, number, SVDQuantConfigInput][]).map(([name, target, extra]): [string, number, () => Promise<unknown>] =>
    [name, target, () => quantizeLinear(w, bias, stats, { rank, threads, ...extra }, 'bench.ff')]),
];
console.log('\n| run | wall s | CPU s | CPU s / threads | target s |\n|---|---|---|---|---|');
for (const [name, target, fn] of kinds) {
  const samples: { wall: number; cpu: number }[] = [];
  for (let i = 0; i < runs; i++) samples.push(await timed(fn));
  const wall = median(samples.map((s) => s.wall)), cpu = median(samples.map((s) => s.cpu));
  console.log(`| ${name} | ${wall.toFixed(2)} | ${cpu.toFixed(2)} | ${(cpu / threads).toFixed(2)} | ${Number.isNaN(target) ? '—' : target} |`);
}
console.log(`\nload average after: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
