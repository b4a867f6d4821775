/**
 * DiT-XL/2-256 forward benchmark (issue 13 item 7): `npm run bench:dit [-- --reps N --batch B
 * --layers L --schemes w4a4,mxfp4 --threads T]`.
 *
 * Builds a DiTTransformer2DModel from DiT-XL/2-256's real config (28 blocks, hidden 1152, 16 heads,
 * 256 tokens per image; random weights, std 0.02 as DiT's initialiser, which gives the same shapes
 * and work as the trained model), then times `model.call` for fp32 and for each 4-bit scheme with
 * native inference. Batch 2 by default: one image under classifier-free guidance. For each
 * configuration it prints the median forward time over --reps runs, the speed-up against fp32
 * measured in the same run, and the share of time spent outside the Linear layers (every Linear's
 * forward is timed by wrapping it; the rest is the graph's ops and glue), in wall time and in the
 * process's CPU time (all threads), which a loaded machine disturbs far less, and V8's major GCs per
 * forward. A row whose runs disagree is flagged 'spread' (lib/bench/reliability.ts), as is its
 * speed-up. Benchmarks never assert.
 */
import os from 'node:os';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import {
  buildModel, quantize, enableNativeInference, Linear, NativeLinear, Tensor, type Module,
} from '../lib/index.js';
import { Flags, flagLegend, marked, type Flag } from '../lib/bench/reliability.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const reps = Number(opt('--reps', '5'));
const batch = Number(opt('--batch', '2'));
const layers = Number(opt('--layers', '28'));
const threads = Number(opt('--threads', '2'));
const schemes = opt('--schemes', 'w4a4,mxfp4,nvfp4').split(',');

const config = {
  _class_name: 'DiTTransformer2DModel', activation_fn: 'gelu-approximate', attention_bias: true,
  attention_head_dim: 72, dropout: 0.0, in_channels: 4, norm_elementwise_affine: false, norm_eps: 1e-6,
  norm_num_groups: 32, norm_type: 'ada_norm_zero', num_attention_heads: 16, num_embeds_ada_norm: 1000,
  num_layers: layers, out_channels: 8, patch_size: 2, sample_size: 32, upcast_attention: false,
};

let seed = 1;
function gaussian(n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const u = (seed + 1) / 4294967297;
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const v = seed / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

function randomModel(): Module {
  const model = buildModel(config);
  for (const [name, p] of [...model.namedParameters()]) {
    model.setParameterByPath(name, Tensor.fromArray(gaussian(p.numel, 0.02), p.shape));
  }
  return model;
}

function inputs(): Record<string, Tensor> {
  return {
    hidden_states: Tensor.fromArray(gaussian(batch * 4 * 32 * 32, 1), [batch, 4, 32, 32]),
    timestep: Tensor.fromIntegers(Array.from({ length: batch }, (_, i) => 500 + i)),
    class_labels: Tensor.fromIntegers(Array.from({ length: batch }, (_, i) => (i % 2 === 0 ? 207 : 1000))),
  };
}

/**
 * Wraps every Linear's forward (fp32 or native) to measure the time spent inside the linear layers:
 * wall time and the process's CPU time (all threads) in those intervals.
 */
function timeLinears(model: Module): { ms: () => number; cpuMs: () => number; reset: () => void } {
  // Attention runs to_q/to_k/to_v concurrently: count the union of the intervals, not their sum.
  let total = 0, cpuTotal = 0, active = 0, since = 0;
  let cpuSince = process.cpuUsage();
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof Linear) && !(m instanceof NativeLinear)) continue;
    const forward = m.forward.bind(m) as (...a: unknown[]) => Promise<unknown>;
    (m as { forward: unknown }).forward = async (...a: unknown[]) => {
      if (active++ === 0) {
        since = performance.now();
        cpuSince = process.cpuUsage();
      }
      try { return await forward(...a); } finally {
        if (--active === 0) {
          total += performance.now() - since;
          const c = process.cpuUsage(cpuSince);
          cpuTotal += (c.user + c.system) / 1000;
        }
      }
    };
  }
  return { ms: () => total, cpuMs: () => cpuTotal, reset: () => { total = 0; cpuTotal = 0; } };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// V8's major GCs: they stop the JavaScript thread and their marking threads compete with the
// kernels; an unexpected number of them is how the forward's GC problems showed (README, DiT-XL/2).
let majorGcs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if ((e as { detail?: { kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) majorGcs++;
  }
}).observe({ entryTypes: ['gc'] });
/** The observer's entries arrive on a later turn of the event loop. */
const settled = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

interface Measured { ms: number; linearShare: number; cpuOutside: number; majorGcs: number; flags: Flag[] }

async function measure(label: string, model: Module, x: Record<string, Tensor>): Promise<Measured> {
  const timer = timeLinears(model);
  await model.call(x as never); // warm-up: packs, pools, page faults
  await settled();
  const gcsBefore = majorGcs;
  const times: number[] = [];
  const shares: number[] = [], cpuOutside: number[] = [];
  for (let r = 0; r < reps; r++) {
    timer.reset();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = (await model.call(x as never)) as { sample: Tensor };
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    out.sample.dispose();
    times.push(ms);
    shares.push(timer.ms() / ms);
    const cpuMs = (c.user + c.system) / 1000;
    cpuOutside.push((cpuMs - timer.cpuMs()) / cpuMs);
  }
  await settled();
  const result = {
    ms: median(times), linearShare: median(shares), cpuOutside: median(cpuOutside), majorGcs: (majorGcs - gcsBefore) / reps,
    flags: new Flags().spread(times).list(),
  };
  process.stderr.write(`  ${label}: ${times.map((t) => t.toFixed(0)).join(' ')} ms\n`);
  return result;
}

async function main(): Promise<void> {
  const load = os.loadavg();
  console.log(`# DiT-XL/2-256 forward (${layers} blocks, hidden 1152, 16 heads, ${batch}×256 tokens), ${threads} threads, median of ${reps}`);
  console.log(`machine: ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} logical CPUs, load ${load.map((l) => l.toFixed(2)).join(' ')} at start\n`);
  const x = inputs();
  const rows: [string, Measured][] = [];
  const fp32 = randomModel();
  const base = await measure('fp32', fp32, x);
  rows.push(['fp32 (native fp32 GEMM)', base]);
  // One calibration batch: the benchmark measures speed, not quality; rank 32 as the paper.
  const calibration = [inputs()];
  for (const scheme of schemes) {
    const model = randomModel();
    const t0 = performance.now();
    await quantize(model, { scheme: scheme as never, rank: 32, searchAlpha: false, gptq: false }, calibration);
    process.stderr.write(`  quantized ${scheme} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    await enableNativeInference(model, { backend: 'cpu', threads });
    rows.push([`${scheme} native`, await measure(scheme, model, x)]);
  }
  console.log('| model | forward ms | speed-up vs fp32 | time in Linear layers | outside Linear (ops + glue) | CPU time outside Linear | major GCs per forward |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const [name, r] of rows) {
    const both = [...new Set([...r.flags, ...base.flags])];
    console.log(`| ${name} | ${marked(r.ms.toFixed(1), r.flags)} | ${marked(`${(base.ms / r.ms).toFixed(2)}×`, both)} | ${(r.linearShare * 100).toFixed(1)}% | ${((1 - r.linearShare) * 100).toFixed(1)}% | ${(r.cpuOutside * 100).toFixed(1)}% | ${r.majorGcs.toFixed(1)} |`);
  }
  for (const [flag, text] of flagLegend(rows.map(([, r]) => ({ flags: r.flags })))) console.log(`\n! ${flag}: ${text} (not a result)`);
  console.log(`\nload at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

await main();
