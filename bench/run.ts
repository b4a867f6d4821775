/**
 * `npm run bench`: measures this machine's peaks (fp32 FMA, int8 dot products, DRAM read), then the
 * CPU kernels at FLUX.1-like shapes, alone and through the public API, and prints Markdown tables
 * with absolute figures and ratios against baselines measured in the same run (the peaks, the fp32
 * GEMM at the same shape, rank 0, the kernel beside its API), the targets of issue 17, and the
 * flags of any figure the run cannot trust (lib/bench/reliability.ts).
 * `--json FILE` writes one JSON record per measurement. Benchmarks never assert. The harness itself
 * lives in lib/bench/ (so the installed `svdquant bench` runs it too); this is its script wrapper.
 *
 * Options:
 *   --json FILE         write JSON lines (one record per measurement)
 *   --plot FILE.svg     write an SVG plot of GOP/s against M (lib/bench/plot-svg.ts)
 *   --threads 1,2       thread counts (default: 1 and the physical cores)
 *   --quick             a small subset (M in {1, 1024}, K=N=3072, w4a4 and mxfp4)
 *   --schemes a,b       schemes to run (w4a4, mxfp4, nvfp4, w8a8, w4a16)
 *   --m 1,16,...        token counts        --reps N   timed runs per measurement (default 5)
 *   --shapes KxN,...    layer shapes (default 3072x3072,3072x12288,12288x3072)
 *   --suite quality     the quantizer's quality study and timings instead (bench/quality.ts; takes
 *                       --json FILE, --threads N, --no-timings, --large)
 *   --suite flux-blocks one Flux double-stream and one single-stream block, fp32 vs w4a4/mxfp4/nvfp4,
 *                       with the share of time outside the linear layers (bench/flux-blocks.ts; takes
 *                       --tokens IMG,TXT, --hidden N, --reps N, --schemes LIST, --threads N, --quick)
 */
import { benchMachine, resolveThreads, runKernelBench } from '../lib/bench/kernels.js';
import { jsonLines, writeTextAtomic } from '../lib/bench/files.js';
import { KernelMarkdownWriter } from '../lib/bench/markdown.js';
import {
  DEFAULT_KERNEL_BENCH,
  QUICK_KERNEL_BENCH,
  parseCount,
  parseCountList,
  parseSchemes,
  parseShapes,
  type KernelBenchConfig,
} from '../lib/bench/options.js';
import { kernelPlotSvg } from '../lib/bench/plot-svg.js';

interface Options {
  config: KernelBenchConfig;
  json?: string;
  plot?: string;
}

function parseArgs(argv: string[]): Options {
  let quick = false;
  const explicit: Partial<KernelBenchConfig> = {};
  const o: Partial<Options> = {};
  const value = (i: number, what: string): string => {
    const s = argv[i];
    if (s === undefined || s === '') throw new Error(`option ${what} needs a value`);
    return s;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = value(++i, a);
    else if (a === '--plot') o.plot = value(++i, a);
    else if (a === '--threads') explicit.threads = parseCountList(value(++i, a), a, 1, 1024);
    else if (a === '--m') explicit.ms = parseCountList(value(++i, a), a);
    else if (a === '--reps') explicit.reps = parseCount(value(++i, a), a, 1, 100000);
    else if (a === '--schemes') explicit.schemes = parseSchemes(value(++i, a), a);
    else if (a === '--shapes') explicit.shapes = parseShapes(value(++i, a), a);
    else if (a === '--quick') quick = true;
    else throw new Error(`unknown option ${a}: expected --json FILE, --plot FILE.svg, --threads LIST, --m LIST, --shapes LIST, --schemes LIST, --reps N, --quick`);
  }
  const config: KernelBenchConfig = {
    ...structuredClone(DEFAULT_KERNEL_BENCH),
    ...(quick ? structuredClone(QUICK_KERNEL_BENCH) : {}),
    ...explicit,
  };
  return { ...o, config };
}

async function main(): Promise<void> {
  const opt = parseArgs(process.argv.slice(2));
  const machine = benchMachine();
  const config = { ...opt.config, threads: resolveThreads(opt.config.threads, machine) };
  const markdown = new KernelMarkdownWriter((text) => process.stdout.write(text), { isa: machine.isa, threads: config.threads, reps: config.reps });
  const records = await runKernelBench(config, { onRecord: (record) => markdown.record(record) }, machine);
  markdown.finish();
  if (opt.json) {
    await writeTextAtomic(opt.json, jsonLines(records));
    console.log(`\nwrote ${records.length} records to ${opt.json}`);
  }
  if (opt.plot) {
    await writeTextAtomic(opt.plot, kernelPlotSvg(records));
    console.log(`\nwrote the plot to ${opt.plot}`);
  }
}

const suite = process.argv.indexOf('--suite');
if (suite >= 0) {
  const name = process.argv[suite + 1];
  process.argv.splice(suite, 2);
  if (name === 'quality') await import('./quality.js');
  else if (name === 'flux-blocks') await import('./flux-blocks.js');
  else if (name !== 'kernels') throw new Error(`unknown --suite ${name}: expected kernels, quality or flux-blocks`);
  else await main();
} else {
  await main();
}
