/**
 * The kernel benchmark: this machine's peaks (fp32 FMA, int8 dot products, DRAM read), then, per
 * layer shape, token count M and thread count, the fp32 Linear and the SVDQuant layer of each
 * scheme, each timed two ways on the same objects: the kernels alone (timed inside native code)
 * and through the public API (NativeLowbitLayer.forward / Linear.forward, timed in JavaScript,
 * with the output disposed, dropped, or written into a caller's buffer). Within one cell (scheme,
 * shape, M, threads) every variant runs once per round, round after round (ABAB...), so that the
 * ratios between them (API/kernel, rank 32/rank 0) compare runs taken side by side; each figure is
 * the median of its rounds. The peaks are measured again at the end; the run's peaks are compared
 * with the machine's usual ones (lib/bench/history.ts); every record carries the reliability flags
 * of lib/bench/reliability.ts. Benchmarks never assert.
 */

import { cpus } from 'node:os';
import { readFileSync, readdirSync } from 'node:fs';
import { cpuIsa, native, type NativeIsaInfo, type NativePackedF32 } from '../native.js';
import { Tensor } from '../tensor.js';
import { Linear } from '../graph/layers.js';
import { quantize } from '../formats/quantize.js';
import { SCHEMES as SCHEME_SPECS } from '../formats/schemes.js';
import { NativeLowbitLayer, nativeLowbitHandle } from '../runtime/native-layer.js';
import { historyFile, machineKey, recordPeaks, usualPeaks, type PeakFigures } from './history.js';
import { API_SLACK, DRIFT_LIMIT, Flags, LOW_PEAK, median, type Flag } from './reliability.js';
import { LOW_RANK_MODES, type KernelBenchConfig, type LowRankMode, type SchemeName } from './options.js';

export { median };

const ISA_LEVEL: Record<string, number> = { portable: 0, avx2: 1, avx512: 2 };
/** Rank of the low-rank branch in the "with branch" measurements (rank 0 is measured too). */
export const BENCH_RANK = 32;
/** At most this many copies of a layer for the M = 1 rotation (tiny test shapes would need thousands). */
const MAX_COPIES = 512;

export interface Peak {
  fp32Gflops: number;
  /** int8 dot products on the vector unit (VNNI on AVX-512). */
  int8Gops: number;
  dramGBps: number;
  /** int8 dot products on the AMX tile unit where the layer kernels use it (amx.h), else 0. */
  amxInt8Gops: number;
}

export interface PeakRecord extends Peak {
  kind: 'peak';
  isa: string;
  threads: number;
  /** Measured before the kernels ('start') or after them ('end'). */
  phase: 'start' | 'end';
  /** The machine's usual peaks from earlier runs (lib/bench/history.ts), when known. */
  usual?: PeakFigures;
  flags: Flag[];
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
  /** gops over the peak of the unit the kernel runs on (peakOf), at the same thread count. */
  peakFraction: number;
  /** fp32 FMA (gemm_f32, w4a16), int8 on the vector unit, or int8 on the AMX tiles (M > 16 with AMX). */
  peakOf: 'fp32' | 'int8' | 'amx-int8';
  /** Weight bytes in the kernel's format. */
  bytes: number;
  /** Bytes of the same layer in bf16. */
  bf16Bytes?: number;
  /** M = 1 only: weight bytes streamed per second, in GB/s, and that over the DRAM peak. */
  weightGBps?: number;
  dramFraction?: number;
  /** Time of the fp32 GEMM at the same M, K, N and threads over this time. */
  speedupVsF32?: number;
  /** Rank 32 only: this time over the rank-0 time of the same cell (interleaved runs), minus 1. */
  overheadVsRank0?: number;
  flags: Flag[];
}

/** The public API beside the kernel it runs, in one cell. */
export interface ApiRecord {
  kind: 'api';
  kernel: 'svdquant_layer' | 'gemm_f32';
  scheme: SchemeName | 'f32';
  isa: string;
  M: number;
  K: number;
  N: number;
  rank: number;
  lowRank: 'fused' | 'none';
  threads: number;
  /** The kernel alone (the matching KernelRecord's runs). */
  kernelMs: number;
  /** forward(), the output disposed at once. */
  disposeMs: number;
  disposeMsAll: number[];
  /** forward(), the output dropped (left to the garbage collector). */
  dropMs: number;
  dropMsAll: number[];
  /** forward(x, { out }) into one caller's buffer. */
  outMs: number;
  outMsAll: number[];
  /** API throughput over the kernel's (kernel time / API time) for each way. */
  disposeRatio: number;
  dropRatio: number;
  outRatio: number;
  /** Outputs taken fresh from the system per forward in the drop runs (the rest were recycled; outputs under 64 KiB are never counted). */
  freshPerForward: number;
  /** M = 1: kernel-format bytes per second through the API (output disposed) and that over DRAM. */
  weightGBps?: number;
  dramFraction?: number;
  flags: Flag[];
}

export type KernelBenchRecord = PeakRecord | KernelRecord | ApiRecord;

/** One planned step, as the progress hooks see it. */
export type Measurement =
  | { kind: 'peak'; index: number; total: number; threads: number; phase: 'start' | 'end' }
  | {
      kind: 'cell';
      index: number;
      total: number;
      kernel: KernelRecord['kernel'];
      scheme: KernelRecord['scheme'];
      M: number;
      K: number;
      N: number;
      threads: number;
    };

export interface KernelBenchHooks {
  /** Called before each step starts. */
  onStart?(measurement: Measurement): void;
  /** Called with each record as soon as it is taken (a cell gives several). */
  onRecord?(record: KernelBenchRecord, measurement: Measurement): void;
  /** Called when a step is done, with its records. */
  onDone?(measurement: Measurement, records: readonly KernelBenchRecord[]): void;
}

/** What the run measures on: the active ISA (as the engine chose it), the physical cores, the CPU. */
export interface BenchMachine {
  isa: NativeIsaInfo;
  physicalCores: number;
  model: string;
}

export function benchMachine(): BenchMachine {
  return { isa: cpuIsa(), physicalCores: native().physicalCores(), model: cpus()[0]?.model?.trim() ?? 'unknown CPU' };
}

/** The thread counts to use: the configured ones, or 1 and the physical cores. */
export function resolveThreads(threads: readonly number[], machine: Pick<BenchMachine, 'physicalCores'>): number[] {
  return threads.length > 0 ? [...threads] : [...new Set([1, machine.physicalCores])];
}

/** Every step of a run, in order: peaks, fp32 cells, each scheme's cells, peaks again. */
export function planKernelBench(config: KernelBenchConfig): Measurement[] {
  type Planned = Measurement extends infer T ? (T extends unknown ? Omit<T, 'index' | 'total'> : never) : never;
  const plan: Planned[] = [];
  for (const threads of config.threads) plan.push({ kind: 'peak', threads, phase: 'start' });
  for (const [K, N] of config.shapes) {
    for (const M of config.ms) for (const threads of config.threads) plan.push({ kind: 'cell', kernel: 'gemm_f32', scheme: 'f32', M, K, N, threads });
  }
  for (const scheme of config.schemes) {
    for (const [K, N] of config.shapes) {
      for (const M of config.ms) for (const threads of config.threads) plan.push({ kind: 'cell', kernel: 'svdquant_layer', scheme, M, K, N, threads });
    }
  }
  for (const threads of config.threads) plan.push({ kind: 'peak', threads, phase: 'end' });
  return plan.map((item, index) => ({ ...item, index, total: plan.length }) as Measurement);
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

/** A short description of a step for progress lines. */
export function describeMeasurement(m: Measurement): string {
  const threads = `${m.threads} ${m.threads === 1 ? 'thread' : 'threads'}`;
  if (m.kind === 'peak') return `peaks (${m.phase}), ${threads}`;
  const what = m.kernel === 'gemm_f32' ? 'fp32 Linear' : m.scheme;
  return `${what}, M=${m.M} K=${m.K} N=${m.N}, ${threads}`;
}

// ---- synthetic data ----------------------------------------------------------------------------

/** Uniform values in [−scale, scale) from a small LCG (fast enough for 37 M weights). */
export function randomArray(n: number, scale: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return a;
}

const tensor = (data: Float32Array, shape: number[]): Tensor<'f32'> => Tensor.fromStorage(data, shape, 'f32');

// ---- one cell ----------------------------------------------------------------------------------

/** A variant of a cell: one timed run per call (ms). */
type Variant = () => Promise<number>;

/**
 * Runs every variant once per round (warm-up rounds first), round after round, and returns each
 * variant's timed runs.
 */
async function interleave(variants: readonly Variant[], rounds: number, warmup: number): Promise<number[][]> {
  for (let w = 0; w < warmup; w++) for (const v of variants) await v();
  const times = variants.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) for (let i = 0; i < variants.length; i++) times[i].push(await variants[i]());
  return times;
}

/** One timed call of a native bench function that times `runs` = 1 internally. */
function oneRun(run: (out: Float64Array) => Promise<void>): Variant {
  const out = new Float64Array(1);
  return async () => {
    await run(out);
    return out[0];
  };
}

/** The three ways of calling the public API, each a Variant; `freshPerForward` counts the drop runs' fresh outputs. */
function apiVariants(forward: (out?: Tensor<'f32'>) => Promise<Tensor<'f32'>>, outShape: number[]): { variants: Variant[]; fresh: () => number } {
  const out = Tensor.zeros(outShape, 'f32');
  let dropRuns = 0, dropFresh = 0;
  const dispose: Variant = async () => {
    const t0 = performance.now();
    const y = await forward();
    y.dispose();
    return performance.now() - t0;
  };
  const drop: Variant = async () => {
    const before = native().hostPoolStats();
    const t0 = performance.now();
    await forward();
    const ms = performance.now() - t0;
    const after = native().hostPoolStats();
    dropRuns++;
    dropFresh += after.freshLarge - before.freshLarge;
    return ms;
  };
  const into: Variant = async () => {
    const t0 = performance.now();
    await forward(out);
    return performance.now() - t0;
  };
  return { variants: [dispose, drop, into], fresh: () => (dropRuns > 0 ? dropFresh / dropRuns : 0) };
}

interface CellContext {
  config: KernelBenchConfig;
  isa: string;
  peak: Peak;
  peakFlags: Flag[];
  f32Ms: Map<string, number>;
}

const cellKey = (M: number, K: number, N: number, threads: number): string => `${M},${K},${N},${threads}`;

function apiRecord(
  base: Omit<ApiRecord, 'kind' | 'kernelMs' | 'disposeMs' | 'disposeMsAll' | 'dropMs' | 'dropMsAll' | 'outMs' | 'outMsAll' | 'disposeRatio' | 'dropRatio' | 'outRatio' | 'freshPerForward' | 'flags'>,
  kernelMsAll: number[], api: number[][], fresh: number, bytes: number, ctx: CellContext,
): ApiRecord {
  const kernelMs = median(kernelMsAll);
  const [disposeMsAll, dropMsAll, outMsAll] = api;
  const disposeMs = median(disposeMsAll), dropMs = median(dropMsAll), outMs = median(outMsAll);
  const record: ApiRecord = {
    kind: 'api', kernel: base.kernel, scheme: base.scheme, isa: base.isa, M: base.M, K: base.K, N: base.N, rank: base.rank,
    lowRank: base.lowRank, threads: base.threads, kernelMs, disposeMs, disposeMsAll, dropMs, dropMsAll, outMs, outMsAll,
    disposeRatio: kernelMs / disposeMs, dropRatio: kernelMs / dropMs, outRatio: kernelMs / outMs, freshPerForward: fresh, flags: [],
  };
  const flags = new Flags().spread(kernelMsAll, disposeMsAll, dropMsAll, outMsAll);
  flags.add('api-above-kernel', Math.max(record.disposeRatio, record.dropRatio, record.outRatio) > 1 + API_SLACK);
  if (base.M === 1 && base.kernel === 'svdquant_layer') {
    record.weightGBps = bytes / (disposeMs * 1e6);
    record.dramFraction = record.weightGBps / ctx.peak.dramGBps;
    flags.add('over-dram', record.dramFraction > 1);
    for (const f of ctx.peakFlags) flags.add(f);
  }
  record.flags = flags.list();
  return record;
}

function kernelRecord(
  base: Omit<KernelRecord, 'kind' | 'ms' | 'msAll' | 'gops' | 'peakFraction' | 'peakOf' | 'flags'>,
  msAll: number[], ctx: CellContext,
): KernelRecord {
  const ms = median(msAll);
  const gops = (2 * base.M * base.N * base.K) / (ms * 1e6);
  const fp32 = base.kernel === 'gemm_f32' || base.scheme === 'w4a16';
  const peakOf = fp32 ? 'fp32' : ctx.peak.amxInt8Gops > 0 && base.M > 16 ? 'amx-int8' : 'int8';
  const peak = peakOf === 'fp32' ? ctx.peak.fp32Gflops : peakOf === 'amx-int8' ? ctx.peak.amxInt8Gops : ctx.peak.int8Gops;
  // Fields in a fixed order (JSON Lines readers see the same layout in every record).
  const record: KernelRecord = {
    kind: 'kernel', kernel: base.kernel, scheme: base.scheme, isa: base.isa, M: base.M, K: base.K, N: base.N, rank: base.rank,
    lowRank: base.lowRank, threads: base.threads, ms, msAll, gops, peakFraction: gops / peak, peakOf,
    bytes: base.bytes, ...(base.bf16Bytes !== undefined ? { bf16Bytes: base.bf16Bytes } : {}), flags: [],
  };
  const flags = new Flags().spread(msAll).add('over-peak', record.peakFraction > 1);
  for (const f of ctx.peakFlags) flags.add(f);
  if (base.kernel === 'svdquant_layer') {
    const f32 = ctx.f32Ms.get(cellKey(base.M, base.K, base.N, base.threads));
    if (f32 !== undefined) record.speedupVsF32 = f32 / ms;
    if (base.M === 1) {
      record.weightGBps = base.bytes / (ms * 1e6);
      record.dramFraction = record.weightGBps / ctx.peak.dramGBps;
      flags.add('over-dram', record.dramFraction > 1);
    }
  }
  record.flags = flags.list();
  return record;
}

async function runF32Cell(m: Extract<Measurement, { kind: 'cell' }>, ctx: CellContext): Promise<KernelBenchRecord[]> {
  const { M, K, N, threads } = m;
  const linear = new Linear(K, N, { seed: 1 });
  const weight = linear.weight.data;
  const bias = linear.bias!.data;
  const packed: NativePackedF32 = await native().packF32Weights(weight, N, K, 0);
  const x = tensor(randomArray(M * K, 1, 6), [M, K]);
  const y = new Float32Array(M * N);
  const kernel = oneRun((out) => native().benchLinearForward(packed, x.data, M, bias, y, threads, 1, out));
  // Linear.forward runs on the engine's default threads; the API cell measures that (threads must
  // match the kernel's for the ratio): forwardInto has no threads option, so the kernel runs at
  // the same default when threads is the physical core count, and the API cell is skipped otherwise.
  const api = apiVariants((out) => linear.forwardInto(x, out), [M, N]);
  const withApi = threads === native().physicalCores();
  const times = await interleave(withApi ? [kernel, ...api.variants] : [kernel], ctx.config.reps, ctx.config.warmup);
  const base = { kernel: 'gemm_f32' as const, scheme: 'f32' as const, isa: ctx.isa, M, K, N, rank: 0, threads };
  const k = kernelRecord({ ...base, lowRank: 'none', bytes: K * N * 4 }, times[0], ctx);
  ctx.f32Ms.set(cellKey(M, K, N, threads), k.ms);
  const records: KernelBenchRecord[] = [k];
  if (withApi) records.push(apiRecord({ ...base, lowRank: 'none' }, times[0], times.slice(1), api.fresh(), K * N * 4, ctx));
  return records;
}

/** The format's canonical data for a synthetic layer of `scheme`, K→N, with a rank-`rank` branch. */
async function layerData(scheme: SchemeName, K: number, N: number, rank: number, weights: Float32Array) {
  const spec = SCHEME_SPECS[scheme];
  const weight = await quantize(tensor(weights, [N, K]), spec.weights, { name: 'bench' });
  const smooth = tensor(Float32Array.from(randomArray(K, 0.25, 2), (v) => 1 + Math.abs(v)), [K]);
  const branch = rank > 0 ? { lDown: tensor(randomArray(rank * K, 0.02, 3), [rank, K]), lUp: tensor(randomArray(N * rank, 0.02, 4), [N, rank]) } : {};
  return { scheme, weight, smooth, bias: tensor(randomArray(N, 0.1, 5), [N]), ...branch };
}

async function runLayerCell(m: Extract<Measurement, { kind: 'cell' }>, ctx: CellContext, weights: Float32Array): Promise<KernelBenchRecord[]> {
  const { M, K, N, threads } = m;
  const scheme = m.scheme as SchemeName;
  const withBranch = await layerData(scheme, K, N, BENCH_RANK, weights);
  const rank0 = { ...withBranch, lDown: undefined, lUp: undefined };
  const first = await NativeLowbitLayer.create(withBranch);
  const firstR0 = await NativeLowbitLayer.create(rank0);
  // M = 1 streams the weights: rotate over copies that together cover twice the last-level cache,
  // so every run reads its layer from DRAM (the kernel and the API runs rotate alike).
  const copiesFor = (bytes: number): number => (M === 1 ? Math.min(MAX_COPIES, Math.max(1, Math.ceil((2 * lastLevelCacheBytes()) / bytes))) : 1);
  const layers = [first];
  while (layers.length < copiesFor(first.bytes)) layers.push(await NativeLowbitLayer.create(withBranch));
  const layersR0 = [firstR0];
  while (layersR0.length < copiesFor(firstR0.bytes)) layersR0.push(await NativeLowbitLayer.create(rank0));
  const handles = layers.map(nativeLowbitHandle), handlesR0 = layersR0.map(nativeLowbitHandle);
  const bf16Bytes = N * K * 2 + N * 2;
  try {
    const x = tensor(randomArray(M * K, 1, 6), [M, K]);
    const y = new Float32Array(M * N);
    let next = 0, nextR0 = 0;
    const kernel = (mode: number): Variant =>
      oneRun((out) => native().benchLayerForward(handles, next++, x.data, M, y, mode, threads, 1, out));
    const kernelR0 = oneRun((out) => native().benchLayerForward(handlesR0, nextR0++, x.data, M, y, 0, threads, 1, out));
    const api = apiVariants((out) => layers[next++ % layers.length].forward(x, { lowRank: 'fused', threads, out }), [M, N]);
    const variants = [...LOW_RANK_MODES.map((_, mode) => kernel(mode)), kernelR0, ...api.variants];
    const times = await interleave(variants, ctx.config.reps, ctx.config.warmup);
    const base = { kernel: 'svdquant_layer' as const, scheme, isa: ctx.isa, M, K, N, threads, bf16Bytes };
    const r0 = kernelRecord({ ...base, rank: 0, lowRank: 'none', bytes: firstR0.bytes }, times[LOW_RANK_MODES.length], ctx);
    const records: KernelBenchRecord[] = [];
    LOW_RANK_MODES.forEach((lowRank, i) => {
      const r = kernelRecord({ ...base, rank: BENCH_RANK, lowRank, bytes: first.bytes }, times[i], ctx);
      r.overheadVsRank0 = r.ms / r0.ms - 1;
      if (r.overheadVsRank0 < 0) r.flags = new Flags().add('negative-overhead').list().concat(r.flags).filter((f, j, a) => a.indexOf(f) === j);
      records.push(r);
    });
    records.push(r0);
    const fused = records[0] as KernelRecord;
    records.push(apiRecord({ kernel: 'svdquant_layer', scheme, isa: ctx.isa, M, K, N, rank: BENCH_RANK, lowRank: 'fused', threads }, fused.msAll, times.slice(LOW_RANK_MODES.length + 1), api.fresh(), first.bytes, ctx));
    return records;
  } finally {
    for (const l of [...layers, ...layersR0]) l.dispose();
  }
}

// ---- the run -----------------------------------------------------------------------------------

function peakFlags(start: PeakRecord, usual: PeakFigures | undefined): Flag[] {
  const flags = new Flags();
  if (usual !== undefined) {
    flags.add('low-peak', start.int8Gops < LOW_PEAK * usual.int8Gops || start.fp32Gflops < LOW_PEAK * usual.fp32Gflops || start.dramGBps < LOW_PEAK * usual.dramGBps);
  }
  return flags.list();
}

const drift = (a: Peak, b: Peak): boolean =>
  (['fp32Gflops', 'int8Gops', 'dramGBps', 'amxInt8Gops'] as const).some((f) => Math.abs(a[f] - b[f]) > DRIFT_LIMIT * Math.max(a[f], b[f]));

/**
 * Runs the plan of `config` (its `threads` must be resolved: see resolveThreads) and resolves to
 * the records, in plan order (a cell's records together).
 */
export async function runKernelBench(
  config: KernelBenchConfig,
  hooks: KernelBenchHooks = {},
  machine: BenchMachine = benchMachine(),
): Promise<KernelBenchRecord[]> {
  if (config.threads.length === 0) throw new Error('runKernelBench: config.threads is empty (resolve it with resolveThreads)');
  const addon = native();
  const isa = machine.isa.active;
  const history = historyFile();
  const records: KernelBenchRecord[] = [];
  const starts = new Map<number, PeakRecord>();
  const f32Ms = new Map<string, number>();
  const weightsByShape = new Map<string, Float32Array>();
  for (const m of planKernelBench(config)) {
    hooks.onStart?.(m);
    const emit = (record: KernelBenchRecord): void => {
      records.push(record);
      hooks.onRecord?.(record, m);
    };
    if (m.kind === 'peak') {
      const out = new Float64Array(4);
      await addon.measurePeaks(m.threads, ISA_LEVEL[isa], out);
      const peak = { fp32Gflops: out[0], int8Gops: out[1], dramGBps: out[2], amxInt8Gops: out[3] };
      const usual = usualPeaks(history, machineKey(machine.model, isa, m.threads));
      const record: PeakRecord = { kind: 'peak', isa, threads: m.threads, ...peak, phase: m.phase, ...(usual ? { usual } : {}), flags: [] };
      if (m.phase === 'start') {
        record.flags = peakFlags(record, usual);
        starts.set(m.threads, record);
      } else {
        const start = starts.get(m.threads)!;
        if (drift(start, record)) {
          record.flags = ['peak-drift'];
          // Every figure measured against the start peaks is suspect too.
          for (const r of records) if (r.kind !== 'peak' && r.threads === m.threads && !r.flags.includes('peak-drift')) r.flags.push('peak-drift');
          if (!start.flags.includes('peak-drift')) start.flags.push('peak-drift');
        }
      }
      emit(record);
      hooks.onDone?.(m, [record]);
      continue;
    }
    const start = starts.get(m.threads)!;
    const ctx: CellContext = { config, isa, peak: start, peakFlags: start.flags.filter((f) => f === 'low-peak'), f32Ms };
    let cell: KernelBenchRecord[];
    if (m.kernel === 'gemm_f32') {
      cell = await runF32Cell(m, ctx);
    } else {
      const key = `${m.K}x${m.N}`;
      if (!weightsByShape.has(key)) {
        weightsByShape.clear(); // one shape's weights at a time (12288x3072 fp32 is 151 MB)
        weightsByShape.set(key, randomArray(m.N * m.K, 0.05, 1));
      }
      cell = await runLayerCell(m, ctx, weightsByShape.get(key)!);
    }
    for (const record of cell) emit(record);
    hooks.onDone?.(m, cell);
  }
  await recordPeaks(history, [...starts.values()].map((p) => ({ key: machineKey(machine.model, isa, p.threads), peak: p })));
  return records;
}
