/**
 * The kernel benchmark: this machine's peaks (fp32 FMA, int8 dot products, DRAM read), then the
 * fp32 GEMM baseline and the SVDQuant layer of each scheme at each shape, token count, low-rank
 * mode and thread count. Each run is timed inside native code; results are plain records (one per
 * measurement) that the Markdown, text and SVG writers render. Benchmarks never assert.
 */

import { readFileSync, readdirSync } from 'node:fs';
import { cpuIsa, native, type NativeIsaInfo } from '../native.js';
import { LOW_RANK_MODES, type KernelBenchConfig, type LowRankMode, type SchemeName } from './options.js';

const ISA_LEVEL: Record<string, number> = { portable: 0, avx2: 1, avx512: 2 };
const SCHEME_CODE: Record<SchemeName, number> = { w4a4: 0, mxfp4: 1, nvfp4: 2, w8a8: 3, w4a16: 4 };
/** Rank of the low-rank branch in the "with branch" measurements (rank 0 is measured too). */
export const BENCH_RANK = 32;

export interface Peak {
  fp32Gflops: number;
  int8Gops: number;
  dramGBps: number;
}

export interface PeakRecord extends Peak {
  kind: 'peak';
  isa: string;
  threads: number;
}

export interface KernelRecord {
  kind: 'kernel';
  kernel: 'svdquant_layer' | 'gemm_f32';
  scheme: SchemeName | 'f32';
  isa: string;
  M: number;
  K: number;
  N: number;
  rank: number;
  lowRank: LowRankMode | 'none';
  threads: number;
  /** Median time of one run. */
  ms: number;
  /** Every timed run, in order. */
  msAll: number[];
  /** 2·M·N·K / time, in 10⁹ operations per second. */
  gops: number;
  /** gops over the int8 peak (fp32 peak for gemm_f32 and w4a16) at the same thread count. */
  peakFraction: number;
  /** Weight bytes in the kernel's format. */
  bytes: number;
  /** Bytes of the same layer in bf16. */
  bf16Bytes?: number;
  /** M = 1 only: weight bytes streamed per second, in GB/s, and that over the DRAM peak. */
  weightGBps?: number;
  dramFraction?: number;
  /** Time of the fp32 GEMM at the same M, K, N and threads over this time. */
  speedupVsF32?: number;
}

export type KernelBenchRecord = PeakRecord | KernelRecord;

/** One planned measurement, as the progress hooks see it. */
export type Measurement =
  | { kind: 'peak'; index: number; total: number; threads: number }
  | {
      kind: 'kernel';
      index: number;
      total: number;
      kernel: KernelRecord['kernel'];
      scheme: KernelRecord['scheme'];
      M: number;
      K: number;
      N: number;
      rank: number;
      lowRank: KernelRecord['lowRank'];
      threads: number;
    };

export interface KernelBenchHooks {
  /** Called before each measurement starts. */
  onStart?(measurement: Measurement): void;
  /** Called with each measurement's record as soon as it is taken. */
  onRecord?(record: KernelBenchRecord, measurement: Measurement): void;
}

/** What the run measures on: the active ISA (as the engine chose it) and the physical cores. */
export interface BenchMachine {
  isa: NativeIsaInfo;
  physicalCores: number;
}

export function benchMachine(): BenchMachine {
  return { isa: cpuIsa(), physicalCores: native().physicalCores() };
}

/** The thread counts to use: the configured ones, or 1 and the physical cores. */
export function resolveThreads(threads: readonly number[], machine: BenchMachine): number[] {
  return threads.length > 0 ? [...threads] : [...new Set([1, machine.physicalCores])];
}

/** Every measurement of a run, in the order they are taken (peaks, fp32 GEMMs, then each scheme). */
export function planKernelBench(config: KernelBenchConfig): Measurement[] {
  type Planned = Measurement extends infer T ? (T extends unknown ? Omit<T, 'index' | 'total'> : never) : never;
  const plan: Planned[] = [];
  for (const threads of config.threads) plan.push({ kind: 'peak', threads });
  for (const [K, N] of config.shapes) {
    for (const M of config.ms) {
      for (const threads of config.threads) {
        plan.push({ kind: 'kernel', kernel: 'gemm_f32', scheme: 'f32', M, K, N, rank: 0, lowRank: 'none', threads });
      }
    }
  }
  for (const scheme of config.schemes) {
    for (const [K, N] of config.shapes) {
      for (const M of config.ms) {
        for (const rank of [BENCH_RANK, 0]) {
          for (const lowRank of rank === 0 ? (['none'] as const) : LOW_RANK_MODES) {
            for (const threads of config.threads) {
              plan.push({ kind: 'kernel', kernel: 'svdquant_layer', scheme, M, K, N, rank, lowRank, threads });
            }
          }
        }
      }
    }
  }
  return plan.map((item, index) => ({ ...item, index, total: plan.length }) as Measurement);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs the plan of `config` (its `threads` must be resolved: see resolveThreads) and resolves to
 * the records, in plan order.
 */
export async function runKernelBench(
  config: KernelBenchConfig,
  hooks: KernelBenchHooks = {},
  machine: BenchMachine = benchMachine(),
): Promise<KernelBenchRecord[]> {
  if (config.threads.length === 0) throw new Error('runKernelBench: config.threads is empty (resolve it with resolveThreads)');
  const addon = native();
  const isa = machine.isa.active;
  const records: KernelBenchRecord[] = [];
  const peaks = new Map<number, Peak>();
  const f32 = new Map<string, number>();
  const { reps, warmup } = config;
  for (const m of planKernelBench(config)) {
    hooks.onStart?.(m);
    let record: KernelBenchRecord;
    if (m.kind === 'peak') {
      const out = new Float64Array(3);
      await addon.measurePeaks(m.threads, ISA_LEVEL[isa], out);
      const peak = { fp32Gflops: out[0], int8Gops: out[1], dramGBps: out[2] };
      peaks.set(m.threads, peak);
      record = { kind: 'peak', isa, threads: m.threads, ...peak };
    } else {
      const { M, K, N, threads } = m;
      const peak = peaks.get(threads)!;
      const key = `${M},${K},${N},${threads}`;
      if (m.kernel === 'gemm_f32') {
        const out = new Float64Array(reps + 1);
        await addon.benchGemmF32(M, K, N, threads, warmup, reps, out);
        const msAll = Array.from(out.subarray(0, reps));
        const ms = median(msAll);
        const gops = (2 * M * N * K) / (ms * 1e6);
        f32.set(key, ms);
        record = {
          kind: 'kernel', kernel: 'gemm_f32', scheme: 'f32', isa, M, K, N, rank: 0, lowRank: 'none', threads,
          ms, msAll, gops, peakFraction: gops / peak.fp32Gflops, bytes: out[reps],
        };
      } else {
        const scheme = m.scheme as SchemeName;
        const out = new Float64Array(reps + 2);
        // M = 1 measures weight streaming: rotate over copies covering twice the last-level cache.
        const stream = M === 1 ? 2 * lastLevelCacheBytes() : 0;
        const mode = m.lowRank === 'none' ? 0 : LOW_RANK_MODES.indexOf(m.lowRank);
        await addon.benchLowbit(SCHEME_CODE[scheme], M, K, N, m.rank, mode, threads, warmup, reps, out, stream);
        const msAll = Array.from(out.subarray(0, reps));
        const ms = median(msAll);
        const gops = (2 * M * N * K) / (ms * 1e6);
        const bytes = out[reps];
        const kernel: KernelRecord = {
          kind: 'kernel', kernel: 'svdquant_layer', scheme, isa, M, K, N, rank: m.rank, lowRank: m.lowRank, threads,
          ms, msAll, gops,
          peakFraction: gops / (scheme === 'w4a16' ? peak.fp32Gflops : peak.int8Gops),
          bytes, bf16Bytes: out[reps + 1],
          speedupVsF32: (f32.get(key) ?? NaN) / ms,
        };
        if (M === 1) {
          kernel.weightGBps = bytes / (ms * 1e6);
          kernel.dramFraction = kernel.weightGBps / peak.dramGBps;
        }
        record = kernel;
      }
    }
    records.push(record);
    hooks.onRecord?.(record, m);
  }
  return records;
}

/** The largest CPU cache in sysfs (the last level), or 64 MiB when it cannot be read. */
export function lastLevelCacheBytes(): number {
  try {
    const dir = '/sys/devices/system/cpu/cpu0/cache';
    let best = 0;
    for (const index of readdirSync(dir).filter((name) => name.startsWith('index'))) {
      const text = readFileSync(`${dir}/${index}/size`, 'utf8').trim();
      const match = /^(\d+)([KMG]?)/.exec(text);
      if (match) best = Math.max(best, Number(match[1]) * ({ '': 1, K: 1024, M: 1 << 20, G: 1 << 30 } as Record<string, number>)[match[2]]);
    }
    return best > 0 ? best : 64 << 20;
  } catch {
    return 64 << 20;
  }
}

/** A short description of a measurement for progress lines. */
export function describeMeasurement(m: Measurement): string {
  if (m.kind === 'peak') return `peaks, ${m.threads} ${m.threads === 1 ? 'thread' : 'threads'}`;
  const what = m.kernel === 'gemm_f32' ? 'fp32 GEMM' : `${m.scheme} ${m.rank > 0 ? `rank ${m.rank} ${m.lowRank}` : 'rank 0'}`;
  return `${what}, M=${m.M} K=${m.K} N=${m.N}, ${m.threads} ${m.threads === 1 ? 'thread' : 'threads'}`;
}
