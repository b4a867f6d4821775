/**
 * The benchmark suites' settings: defaults, the --quick subset, and parsers for the list options
 * shared by `svdquant bench` and `npm run bench`. No native code is loaded here, so the CLI can
 * validate a command line before it loads the addon.
 */

export const SCHEMES = ['w4a4', 'mxfp4', 'nvfp4', 'w8a8', 'w4a16'] as const;
export type SchemeName = (typeof SCHEMES)[number];

/** How the low-rank branch runs: fused into the low-bit GEMM, on the side, or as separate GEMMs. */
export const LOW_RANK_MODES = ['fused', 'side', 'unfused'] as const;
export type LowRankMode = (typeof LOW_RANK_MODES)[number];

/** A layer shape: K input features, N output features. */
export type Shape = readonly [K: number, N: number];

export interface KernelBenchConfig {
  /** Thread counts; each measurement runs once per count. */
  threads: number[];
  schemes: SchemeName[];
  /** Token counts M (rows of the activation). */
  ms: number[];
  shapes: Shape[];
  /** Timed runs per measurement (the median is reported). */
  reps: number;
  /** Untimed runs before the timed ones. */
  warmup: number;
}

/** The full suite: FLUX.1-like shapes, every scheme. `threads` empty means 1 and the physical cores. */
export const DEFAULT_KERNEL_BENCH: Readonly<KernelBenchConfig> = Object.freeze<KernelBenchConfig>({
  threads: [],
  schemes: [...SCHEMES],
  ms: [1, 16, 256, 1024, 4096],
  shapes: [
    [3072, 3072],
    [3072, 12288],
    [12288, 3072],
  ],
  reps: 5,
  warmup: 1,
});

/** What --quick changes: M in {1, 1024}, K = N = 3072, w4a4 and mxfp4. */
export const QUICK_KERNEL_BENCH: Readonly<Pick<KernelBenchConfig, 'ms' | 'shapes' | 'schemes'>> = Object.freeze<Pick<KernelBenchConfig, 'ms' | 'shapes' | 'schemes'>>({
  ms: [1, 1024],
  shapes: [[3072, 3072]],
  schemes: ['w4a4', 'mxfp4'],
});

/** A bad benchmark option value; the CLI reports it as a usage error. */
export class BenchOptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BenchOptionError';
  }
}

const MAX_DIM = 1 << 20;

function items(text: string, option: string): string[] {
  const parts = text.split(',').map((part) => part.trim());
  if (text.trim() === '' || parts.some((part) => part === '')) {
    throw new BenchOptionError(`${option}: expected a comma-separated list, got ${JSON.stringify(text)}`);
  }
  return parts;
}

/** A positive integer in [min, max] written in decimal. */
export function parseCount(text: string, option: string, min = 1, max = MAX_DIM): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new BenchOptionError(`${option}: expected an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** `1,16,256` -> [1, 16, 256]; each an integer in [min, max], duplicates removed, order kept. */
export function parseCountList(text: string, option: string, min = 1, max = MAX_DIM): number[] {
  return [...new Set(items(text, option).map((item) => parseCount(item, option, min, max)))];
}

/** `w4a4,mxfp4` -> the schemes, each one of SCHEMES. */
export function parseSchemes(text: string, option = '--schemes'): SchemeName[] {
  const result: SchemeName[] = [];
  for (const item of items(text, option)) {
    const scheme = item.toLowerCase();
    if (!(SCHEMES as readonly string[]).includes(scheme)) {
      throw new BenchOptionError(`${option}: unknown scheme ${JSON.stringify(item)}: expected ${SCHEMES.join(', ')}`);
    }
    if (!result.includes(scheme as SchemeName)) result.push(scheme as SchemeName);
  }
  return result;
}

/** `3072x3072,3072x12288` -> [[3072, 3072], [3072, 12288]] (K x N: input x output features). */
export function parseShapes(text: string, option = '--shapes'): Shape[] {
  const result: Shape[] = [];
  for (const item of items(text, option)) {
    const match = /^(\d+)[xX×](\d+)$/.exec(item);
    if (match === null) throw new BenchOptionError(`${option}: expected KxN (e.g. 3072x12288), got ${JSON.stringify(item)}`);
    const shape: Shape = [parseCount(match[1], option), parseCount(match[2], option)];
    if (!result.some(([k, n]) => k === shape[0] && n === shape[1])) result.push(shape);
  }
  return result;
}

export function formatShape([k, n]: Shape): string {
  return `${k}x${n}`;
}
