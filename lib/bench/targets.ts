/**
 * The CPU-speed targets of issue 17 evaluated on one run's records: each target's worst case, the
 * cell it occurs in, and whether it is met. A worst case whose record is flagged (reliability.ts)
 * is reported as unreliable, never as met or missed.
 */
import type { ApiRecord, KernelBenchRecord, KernelRecord } from './kernels.js';
import type { Flag } from './reliability.js';

export interface TargetRow {
  target: string;
  /** The worst case, formatted (e.g. '84.1%'), and where it occurs. */
  worst: string;
  where: string;
  /** Records that enter the target. */
  cases: number;
  status: 'met' | 'not met' | 'unreliable' | 'no data';
  flags: Flag[];
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const threadsText = (t: number): string => `${t} ${t === 1 ? 'thread' : 'threads'}`;
const cellOf = (r: { scheme: string; M: number; K: number; N: number; threads: number }): string =>
  `${r.scheme} M=${r.M} ${r.K}x${r.N}, ${threadsText(r.threads)}`;

/**
 * The worst of `cases` by `value` (lower is worse when `higherIsBetter`), checked against `limit`.
 */
function evaluate<T extends { flags: Flag[] }>(
  target: string, cases: readonly T[], value: (r: T) => number, limit: number, higherIsBetter: boolean, where: (r: T) => string, format: (x: number) => string = pct,
): TargetRow {
  if (cases.length === 0) return { target, worst: '', where: '', cases: 0, status: 'no data', flags: [] };
  const worst = cases.reduce((a, b) => ((higherIsBetter ? value(b) < value(a) : value(b) > value(a)) ? b : a));
  const v = value(worst);
  const ok = higherIsBetter ? v >= limit : v <= limit;
  return {
    target, worst: format(v), where: where(worst), cases: cases.length,
    status: worst.flags.length > 0 ? 'unreliable' : ok ? 'met' : 'not met', flags: worst.flags,
  };
}

export function issue17Targets(records: readonly KernelBenchRecord[]): TargetRow[] {
  const api = records.filter((r): r is ApiRecord => r.kind === 'api');
  const kernels = records.filter((r): r is KernelRecord => r.kind === 'kernel');
  const layers = kernels.filter((r) => r.kernel === 'svdquant_layer');
  const rows: TargetRow[] = [
    evaluate('public API >= 90% of kernel throughput, output disposed', api, (r) => r.disposeRatio, 0.9, true, cellOf),
    evaluate('public API >= 90% of kernel throughput, output dropped', api, (r) => r.dropRatio, 0.9, true, cellOf),
    evaluate('public API >= 90% of kernel throughput, into out', api, (r) => r.outRatio, 0.9, true, cellOf),
    evaluate('M = 1 through the public API >= 85% of DRAM bandwidth', api.filter((r) => r.M === 1 && r.kernel === 'svdquant_layer' && r.dramFraction !== undefined), (r) => r.dramFraction!, 0.85, true, cellOf),
  ];
  for (const scheme of ['w4a4', 'mxfp4'] as const) {
    const fused = layers.filter((r) => r.scheme === scheme && r.lowRank === 'fused' && r.M >= 1024);
    rows.push(evaluate(`${scheme}: fused rank-32 overhead <= 3% over rank 0, M >= 1024`, fused.filter((r) => r.overheadVsRank0 !== undefined), (r) => r.overheadVsRank0!, 0.03, false, cellOf));
    rows.push(evaluate(`${scheme}: fused rank 32 >= 75% of the int8 peak, M = 1024 and 4096`, fused.filter((r) => r.M === 1024 || r.M === 4096), (r) => r.peakFraction, 0.75, true, cellOf));
  }
  // mxfp4 against w4a4 in the same shape, M and threads (fused rank 32), M >= 1024.
  const pairs: Array<{ flags: Flag[]; slower: number; cell: string }> = [];
  for (const mx of layers.filter((r) => r.scheme === 'mxfp4' && r.lowRank === 'fused' && r.M >= 1024)) {
    const w4 = layers.find((r) => r.scheme === 'w4a4' && r.lowRank === 'fused' && r.M === mx.M && r.K === mx.K && r.N === mx.N && r.threads === mx.threads);
    if (w4 === undefined) continue;
    pairs.push({ flags: [...new Set([...mx.flags, ...w4.flags])], slower: mx.ms / w4.ms - 1, cell: `M=${mx.M} ${mx.K}x${mx.N}, ${threadsText(mx.threads)}` });
  }
  rows.push(evaluate('mxfp4 within 3% of w4a4 (fused rank 32, time), M >= 1024', pairs, (p) => p.slower, 0.03, false, (p) => p.cell));
  return rows;
}
