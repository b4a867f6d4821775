/**
 * The machine's usual peaks: the peaks of earlier bench runs on this machine, kept in a small JSON
 * file, so that a run can tell when its own peaks are far below normal (a loaded machine: every
 * fraction of peak it prints would be inflated). The file is
 * $SVDQUANT_BENCH_HISTORY, or ${XDG_CACHE_HOME:-~/.cache}/svdquant/bench-peaks.json;
 * SVDQUANT_BENCH_HISTORY=off neither reads nor writes it. A missing or unreadable file is no
 * history (never an error).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { writeTextAtomic } from './files.js';

export interface PeakFigures {
  fp32Gflops: number;
  int8Gops: number;
  dramGBps: number;
}

/** Peaks kept per machine key (the most recent last). */
const KEEP = 20;

type HistoryData = Record<string, PeakFigures[]>;

/** The history file, or null when it is off. */
export function historyFile(env: NodeJS.ProcessEnv = process.env): string | null {
  const set = env.SVDQUANT_BENCH_HISTORY;
  if (set === 'off') return null;
  if (set !== undefined && set !== '') return set;
  const cache = env.XDG_CACHE_HOME !== undefined && env.XDG_CACHE_HOME !== '' ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(cache, 'svdquant', 'bench-peaks.json');
}

/** The key of one machine configuration: CPU model, ISA level, threads. */
export function machineKey(cpuModel: string, isa: string, threads: number): string {
  return `${cpuModel.trim()}|${isa}|${threads}`;
}

function read(file: string | null): HistoryData {
  if (file === null) return {};
  try {
    const data = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (data === null || typeof data !== 'object' || Array.isArray(data)) return {};
    const out: HistoryData = {};
    for (const [key, list] of Object.entries(data as Record<string, unknown>)) {
      if (!Array.isArray(list)) continue;
      const valid = list.filter((p): p is PeakFigures =>
        p !== null && typeof p === 'object' && ['fp32Gflops', 'int8Gops', 'dramGBps'].every((f) => Number.isFinite((p as Record<string, unknown>)[f]) && (p as Record<string, number>)[f] > 0));
      if (valid.length > 0) out[key] = valid.slice(-KEEP);
    }
    return out;
  } catch {
    return {};
  }
}

const upperQuartile = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * 0.75;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
};

/**
 * The usual peaks of `key`: per figure the upper quartile of the recorded runs (so that a few
 * loaded runs do not lower it), or undefined without history.
 */
export function usualPeaks(file: string | null, key: string): PeakFigures | undefined {
  const list = read(file)[key];
  if (list === undefined || list.length === 0) return undefined;
  return {
    fp32Gflops: upperQuartile(list.map((p) => p.fp32Gflops)),
    int8Gops: upperQuartile(list.map((p) => p.int8Gops)),
    dramGBps: upperQuartile(list.map((p) => p.dramGBps)),
  };
}

/** Appends this run's peaks to the history (atomically; failures are ignored: history is a hint). */
export async function recordPeaks(file: string | null, entries: ReadonlyArray<{ key: string; peak: PeakFigures }>): Promise<void> {
  if (file === null || entries.length === 0) return;
  const data = read(file);
  for (const { key, peak } of entries) {
    const { fp32Gflops, int8Gops, dramGBps } = peak;
    data[key] = [...(data[key] ?? []), { fp32Gflops, int8Gops, dramGBps }].slice(-KEEP);
  }
  try {
    mkdirSync(dirname(file), { recursive: true });
    await writeTextAtomic(file, JSON.stringify(data, null, 1) + '\n');
  } catch {
    // An unwritable cache directory only loses the hint for later runs.
  }
}
