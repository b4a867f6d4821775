/**
 * `npm run bench`: measures this machine's peaks (fp32 FMA, int8 dot products, DRAM read), then the
 * CPU kernels at FLUX.1-like shapes, and prints Markdown tables with absolute figures and ratios
 * against baselines measured in the same run (the peaks, and the fp32 GEMM at the same shape).
 * `--json FILE` writes one JSON record per measurement. Benchmarks never assert.
 *
 * Options:
 *   --json FILE         write JSON lines (one record per measurement)
 *   --threads 1,2       thread counts (default: 1 and the physical cores)
 *   --quick             a small subset (M in {1, 1024}, K=N=3072, w4a4 and mxfp4)
 *   --schemes a,b       schemes to run (w4a4, mxfp4, nvfp4, w8a8, w4a16)
 *   --m 1,16,...        token counts        --reps N   timed runs per measurement (default 5)
 *   --suite quality     the quantizer's quality study and timings instead (bench/quality.ts; takes
 *                       --json FILE, --threads N, --no-timings, --large)
 */
import { readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { cpuIsa, native } from '../lib/native.js';

const ISA_LEVEL: Record<string, number> = { portable: 0, avx2: 1, avx512: 2 };
const SCHEME_CODE = { w4a4: 0, mxfp4: 1, nvfp4: 2, w8a8: 3, w4a16: 4 } as const;
type SchemeName = keyof typeof SCHEME_CODE;
const MODES = ['fused', 'side', 'unfused'] as const;
type Mode = (typeof MODES)[number];

interface Options {
  json?: string;
  threads: number[];
  schemes: SchemeName[];
  ms: number[];
  shapes: Array<[number, number]>;
  reps: number;
}

interface Peak { fp32Gflops: number; int8Gops: number; dramGBps: number }

interface KernelRecord {
  kind: 'kernel';
  kernel: 'svdquant_layer' | 'gemm_f32';
  scheme: SchemeName | 'f32';
  isa: string;
  M: number;
  K: number;
  N: number;
  rank: number;
  lowRank: Mode | 'none';
  threads: number;
  ms: number;
  msAll: number[];
  gops: number;
  peakFraction: number;
  bytes: number;
  bf16Bytes?: number;
  weightGBps?: number;
  dramFraction?: number;
  speedupVsF32?: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    threads: [],
    schemes: ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'],
    ms: [1, 16, 256, 1024, 4096],
    shapes: [[3072, 3072], [3072, 12288], [12288, 3072]],
    reps: 5,
  };
  const list = (s: string | undefined, what: string): string[] => {
    if (s === undefined || s === '') throw new Error(`option ${what} needs a value`);
    return s.split(',');
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = argv[++i];
    else if (a === '--threads') o.threads = list(argv[++i], a).map(Number);
    else if (a === '--m') o.ms = list(argv[++i], a).map(Number);
    else if (a === '--reps') o.reps = Number(argv[++i]);
    else if (a === '--schemes') o.schemes = list(argv[++i], a) as SchemeName[];
    else if (a === '--quick') {
      o.ms = [1, 1024];
      o.shapes = [[3072, 3072]];
      o.schemes = ['w4a4', 'mxfp4'];
    } else throw new Error(`unknown option ${a}: expected --json FILE, --threads LIST, --m LIST, --schemes LIST, --reps N, --quick`);
  }
  for (const s of o.schemes) if (!(s in SCHEME_CODE)) throw new Error(`unknown scheme ${s}: expected ${Object.keys(SCHEME_CODE).join(', ')}`);
  if (!Number.isInteger(o.reps) || o.reps < 5) throw new Error('--reps: expected an integer >= 5 (medians of at least 5 runs)');
  return o;
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const opt = parseArgs(process.argv.slice(2));
  const isa = cpuIsa();
  const addon = native();
  if (opt.threads.length === 0) opt.threads = [...new Set([1, addon.physicalCores()])];
  const records: object[] = [];
  const peaks = new Map<number, Peak>();
  console.log(`# svdquant bench\n\nCPU ISA: ${isa.active} (detected ${isa.detected}, ${isa.source}); threads: ${opt.threads.join(', ')}; medians of ${opt.reps} runs after warm-up\n`);
  console.log('## Machine peaks (measured in this run)\n');
  console.log('| ISA | threads | fp32 FMA GFLOP/s | int8 GOP/s | DRAM read GB/s |');
  console.log('|---|---:|---:|---:|---:|');
  for (const threads of opt.threads) {
    const out = new Float64Array(3);
    await addon.measurePeaks(threads, ISA_LEVEL[isa.active], out);
    const p = { fp32Gflops: out[0], int8Gops: out[1], dramGBps: out[2] };
    peaks.set(threads, p);
    records.push({ kind: 'peak', isa: isa.active, threads, ...p });
    console.log(`| ${isa.active} | ${threads} | ${p.fp32Gflops.toFixed(1)} | ${p.int8Gops.toFixed(1)} | ${p.dramGBps.toFixed(1)} |`);
  }

  // The fp32 GEMM baseline at every shape, then each scheme.
  const f32 = new Map<string, number>();
  console.log('\n## Kernels\n');
  console.log('| kernel | scheme | M | K | N | rank | low-rank | threads | ms | GOP/s | of peak | vs fp32 | weight GB/s (M=1) | bytes / bf16 |');
  console.log('|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  const warmup = 1;
  for (const [K, N] of opt.shapes) {
    for (const M of opt.ms) {
      for (const threads of opt.threads) {
        const out = new Float64Array(opt.reps + 1);
        await addon.benchGemmF32(M, K, N, threads, warmup, opt.reps, out);
        const msAll = Array.from(out.subarray(0, opt.reps));
        const ms = median(msAll);
        const gops = (2 * M * N * K) / (ms * 1e6);
        f32.set(`${M},${K},${N},${threads}`, ms);
        const rec: KernelRecord = {
          kind: 'kernel', kernel: 'gemm_f32', scheme: 'f32', isa: isa.active, M, K, N, rank: 0, lowRank: 'none', threads,
          ms, msAll, gops, peakFraction: gops / peaks.get(threads)!.fp32Gflops, bytes: out[opt.reps],
        };
        records.push(rec);
        printRow(rec);
      }
    }
  }
  for (const scheme of opt.schemes) {
    for (const [K, N] of opt.shapes) {
      for (const M of opt.ms) {
        for (const rank of [32, 0]) {
          for (const mode of rank === 0 ? (['fused'] as Mode[]) : MODES) {
            for (const threads of opt.threads) {
              const out = new Float64Array(opt.reps + 2);
              // M = 1 measures weight streaming: rotate over copies covering twice the last-level cache.
              const stream = M === 1 ? 2 * lastLevelCacheBytes() : 0;
              await addon.benchLowbit(SCHEME_CODE[scheme], M, K, N, rank, MODES.indexOf(mode), threads, warmup, opt.reps, out, stream);
              const msAll = Array.from(out.subarray(0, opt.reps));
              const ms = median(msAll);
              const gops = (2 * M * N * K) / (ms * 1e6);
              const peak = peaks.get(threads)!;
              const bytes = out[opt.reps];
              const rec: KernelRecord = {
                kind: 'kernel', kernel: 'svdquant_layer', scheme, isa: isa.active, M, K, N, rank, lowRank: rank === 0 ? 'none' : mode, threads,
                ms, msAll, gops,
                peakFraction: gops / (scheme === 'w4a16' ? peak.fp32Gflops : peak.int8Gops),
                bytes, bf16Bytes: out[opt.reps + 1],
                speedupVsF32: (f32.get(`${M},${K},${N},${threads}`) ?? NaN) / ms,
              };
              if (M === 1) {
                rec.weightGBps = bytes / (ms * 1e6);
                rec.dramFraction = rec.weightGBps / peak.dramGBps;
              }
              records.push(rec);
              printRow(rec);
            }
          }
        }
      }
    }
  }
  if (opt.json) {
    await writeFile(opt.json, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    console.log(`\nwrote ${records.length} records to ${opt.json}`);
  }
}

/** The largest CPU cache in sysfs (the last level), or 64 MiB when it cannot be read. */
function lastLevelCacheBytes(): number {
  try {
    const dir = '/sys/devices/system/cpu/cpu0/cache';
    let best = 0;
    for (const idx of readdirSync(dir).filter((d) => d.startsWith('index'))) {
      const text = readFileSync(`${dir}/${idx}/size`, 'utf8').trim();
      const m = /^(\d+)([KMG]?)/.exec(text);
      if (m) best = Math.max(best, Number(m[1]) * ({ '': 1, K: 1024, M: 1 << 20, G: 1 << 30 } as Record<string, number>)[m[2]]);
    }
    return best > 0 ? best : 64 << 20;
  } catch {
    return 64 << 20;
  }
}

function printRow(r: KernelRecord): void {
  const pct = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '' : `${(100 * x).toFixed(1)}%`);
  const cells = [
    r.kernel, r.scheme, r.M, r.K, r.N, r.rank, r.lowRank, r.threads, r.ms.toFixed(3), r.gops.toFixed(1), pct(r.peakFraction),
    r.speedupVsF32 === undefined ? '' : `${r.speedupVsF32.toFixed(2)}x`,
    r.weightGBps === undefined ? '' : `${r.weightGBps.toFixed(1)} (${pct(r.dramFraction)} of DRAM)`,
    r.bf16Bytes === undefined ? '' : `${(r.bytes / r.bf16Bytes).toFixed(3)}`,
  ];
  console.log(`| ${cells.join(' | ')} |`);
}

const suite = process.argv.indexOf('--suite');
if (suite >= 0) {
  const name = process.argv[suite + 1];
  process.argv.splice(suite, 2);
  if (name === 'quality') await import('./quality.js');
  else if (name !== 'kernels') throw new Error(`unknown --suite ${name}: expected kernels or quality`);
  else await main();
} else {
  await main();
}
