/**
 * Aligned plain-text tables of benchmark records (the default output of `svdquant bench`): numbers
 * right-aligned, each with its unit.
 */

import type { ApiRecord, KernelBenchRecord, KernelRecord, PeakRecord } from './kernels.js';
import type { KernelRunInfo } from './markdown.js';
import type { QualityBenchResult, QualityLayerResult, QuantizeTimingsResult } from './quality.js';
import { flagLegend, marked, type Flag } from './reliability.js';
import { issue17Targets } from './targets.js';

type Align = 'left' | 'right';
interface Column {
  title: string;
  align: Align;
}

/** Columns separated by two spaces, each padded to its widest cell; trailing spaces trimmed. */
export function alignedTable(columns: readonly Column[], rows: ReadonlyArray<ReadonlyArray<string>>, indent = '  '): string {
  const all = [columns.map((c) => c.title), ...rows];
  const widths = columns.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  return all
    .map((row) => {
      const cells = columns.map((c, i) => (c.align === 'right' ? (row[i] ?? '').padStart(widths[i]) : (row[i] ?? '').padEnd(widths[i])));
      return (indent + cells.join('  ')).trimEnd() + '\n';
    })
    .join('');
}

const L = (title: string): Column => ({ title, align: 'left' });
const R = (title: string): Column => ({ title, align: 'right' });

const fixed = (x: number | undefined, digits: number, unit: string): string =>
  x === undefined || !Number.isFinite(x) ? '' : `${x.toFixed(digits)}${unit}`;
const percent = (x: number | undefined): string => fixed(x === undefined ? undefined : 100 * x, 1, '%');
const signedPercent = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '' : `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`);

/** Milliseconds with at least three significant digits: `0.00412 ms`, `0.242 ms`, `28.38 ms`, `1234.5 ms`. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '';
  if (ms >= 100) return `${ms.toFixed(1)} ms`;
  if (ms >= 10) return `${ms.toFixed(2)} ms`;
  if (ms >= 0.1 || ms === 0) return `${ms.toFixed(3)} ms`;
  return `${ms.toPrecision(3)} ms`;
}

export function kernelTextHeader(info: KernelRunInfo): string {
  const { isa } = info;
  return (
    `svdquant bench: kernels on ${isa.active} (detected ${isa.detected}, ${isa.source}); ` +
    `threads ${info.threads.join(', ')}; medians of ${info.reps} interleaved ${info.reps === 1 ? 'run' : 'runs'} after warm-up\n`
  );
}

export function peaksTextTable(peaks: readonly PeakRecord[]): string {
  const anyUsual = peaks.some((p) => p.usual !== undefined);
  const anyAmx = peaks.some((p) => p.amxInt8Gops > 0);
  return alignedTable(
    [L('ISA'), R('THREADS'), L('PHASE'), R('FP32 FMA'), R('INT8 DOT'), ...(anyAmx ? [R('AMX INT8')] : []), R('DRAM READ'), ...(anyUsual ? [R('USUAL INT8'), R('USUAL DRAM')] : []), L('FLAGS')],
    peaks.map((p) => [
      p.isa, String(p.threads), p.phase, marked(fixed(p.fp32Gflops, 1, ' GFLOP/s'), p.flags), marked(fixed(p.int8Gops, 1, ' GOP/s'), p.flags),
      ...(anyAmx ? [marked(fixed(p.amxInt8Gops, 1, ' GOP/s'), p.flags)] : []), marked(fixed(p.dramGBps, 1, ' GB/s'), p.flags),
      ...(anyUsual ? [fixed(p.usual?.int8Gops, 1, ' GOP/s'), fixed(p.usual?.dramGBps, 1, ' GB/s')] : []), p.flags.join(','),
    ]),
  );
}

export function kernelsTextTable(kernels: readonly KernelRecord[]): string {
  const anyStream = kernels.some((r) => r.weightGBps !== undefined);
  const anyAmx = kernels.some((r) => r.peakOf === 'amx-int8');
  const columns = [
    L('KERNEL'), L('SCHEME'), R('M'), R('K'), R('N'), R('RANK'), L('LOW-RANK'), R('THREADS'), R('TIME'), R('THROUGHPUT'), R('OF PEAK'),
    ...(anyAmx ? [L('PEAK OF')] : []), R('VS FP32'), R('VS RANK 0'), ...(anyStream ? [R('WEIGHTS (M=1)'), R('OF DRAM')] : []), R('SIZE/BF16'), L('FLAGS'),
  ];
  const rows = kernels.map((r) => [
    r.kernel, r.scheme, String(r.M), String(r.K), String(r.N), String(r.rank), r.lowRank, String(r.threads), marked(formatMs(r.ms), r.flags),
    marked(fixed(r.gops, 1, ' GOP/s'), r.flags), marked(percent(r.peakFraction), r.flags), ...(anyAmx ? [r.peakOf] : []), fixed(r.speedupVsF32, 2, 'x'),
    marked(signedPercent(r.overheadVsRank0), r.flags),
    ...(anyStream ? [marked(fixed(r.weightGBps, 1, ' GB/s'), r.flags), marked(percent(r.dramFraction), r.flags)] : []),
    r.bf16Bytes === undefined ? '' : percent(r.bytes / r.bf16Bytes), r.flags.join(','),
  ]);
  return alignedTable(columns, rows);
}

export function apiTextTable(api: readonly ApiRecord[]): string {
  const anyStream = api.some((r) => r.weightGBps !== undefined);
  const columns = [
    L('KERNEL'), L('SCHEME'), R('M'), R('K'), R('N'), R('THREADS'), R('KERNEL TIME'), R('API TIME'), R('API/KERNEL'), R('DROPPED'),
    R('INTO OUT'), R('FRESH/FWD'), ...(anyStream ? [R('API WEIGHTS (M=1)'), R('OF DRAM')] : []), L('FLAGS'),
  ];
  const rows = api.map((r) => [
    r.kernel, r.scheme, String(r.M), String(r.K), String(r.N), String(r.threads), marked(formatMs(r.kernelMs), r.flags),
    marked(formatMs(r.disposeMs), r.flags), marked(percent(r.disposeRatio), r.flags), marked(percent(r.dropRatio), r.flags),
    marked(percent(r.outRatio), r.flags), r.freshPerForward.toFixed(2),
    ...(anyStream ? [marked(fixed(r.weightGBps, 1, ' GB/s'), r.flags), marked(percent(r.dramFraction), r.flags)] : []), r.flags.join(','),
  ]);
  return alignedTable(columns, rows);
}

export function targetsTextTable(records: readonly KernelBenchRecord[]): string {
  return alignedTable(
    [L('TARGET'), R('WORST'), L('WHERE'), R('CASES'), L('STATUS')],
    issue17Targets(records).map((t) => [t.target, marked(t.worst, t.flags), t.where, String(t.cases), t.status + (t.flags.length > 0 ? ` (${t.flags.join(',')})` : '')]),
  );
}

/** The flags that occur, one line each ('' when none do). */
export function flagLegendText(records: ReadonlyArray<{ flags?: readonly Flag[] }>): string {
  const legend = flagLegend(records);
  if (legend.length === 0) return '';
  return '\nUnreliable figures are marked with ! (FLAGS column):\n' + legend.map(([f, text]) => `  ${f}: ${text}\n`).join('');
}

/** The whole kernel report: header, peaks, kernels, the API beside its kernels, targets, flags. */
export function kernelText(info: KernelRunInfo, records: readonly KernelBenchRecord[]): string {
  const peaks = records.filter((r): r is PeakRecord => r.kind === 'peak');
  const kernels = records.filter((r): r is KernelRecord => r.kind === 'kernel');
  const api = records.filter((r): r is ApiRecord => r.kind === 'api');
  let text = kernelTextHeader(info);
  text += '\nMachine peaks (measured in this run, at its start and end)\n' + peaksTextTable(peaks);
  if (kernels.length > 0) {
    text += '\nKernels (THROUGHPUT = 2·M·K·N / TIME; OF PEAK: of the int8 peak (the AMX tile peak where the kernels use AMX), fp32 for gemm_f32 and w4a16; ';
    text += 'VS FP32: speed-up over gemm_f32 at the same M, K, N, threads; VS RANK 0: time over rank 0\'s in the same rounds)\n';
    text += kernelsTextTable(kernels);
  }
  if (api.length > 0) {
    text += '\nPublic API beside the kernel (NativeLowbitLayer.forward fused / Linear.forward, same rounds): API/KERNEL = kernel time over API time,\n';
    text += 'output disposed; DROPPED: output left to the collector; INTO OUT: forward(x, { out }); FRESH/FWD: outputs not recycled per dropped forward\n';
    text += apiTextTable(api);
  }
  if (kernels.length > 0) text += '\nTargets (issue 17)\n' + targetsTextTable(records);
  text += flagLegendText(records);
  return text;
}

export function qualityLayerText(layer: QualityLayerResult): string {
  const head =
    `Relative output error ‖Y_q − Y‖/‖Y‖, synthetic ${layer.label} layer, ` +
    `${layer.tokens / 2} calibration + ${layer.tokens / 2} evaluation tokens (${layer.seconds.toFixed(1)} s)\n`;
  return head + alignedTable([L('SCHEME'), L('METHOD'), R('RANK'), R('REL. ERROR')], layer.records.map((c) => [c.scheme, c.method, String(c.rank), fixed(100 * c.relError, 2, '%')]));
}

export function quantizeTimingsText(t: QuantizeTimingsResult): string {
  const head =
    `quantizeLinear timings: ${t.K} → ${t.N}, rank ${t.rank}, ${t.tokens} calibration tokens, ${t.threads} threads ` +
    `(setup ${t.setupSeconds.toFixed(1)} s, not timed)\n`;
  return (
    head +
    alignedTable(
      [L('RUN'), R('TIME'), R('TARGET'), R('ALPHA'), R('ERROR BEFORE'), R('ERROR AFTER')],
      t.records.map((r) => [r.run, marked(fixed(r.seconds, 2, ' s'), r.flags), `${r.targetSeconds} s`, r.alpha === null ? 'none' : String(r.alpha), fixed(100 * r.errorBefore, 2, '%'), fixed(100 * r.errorAfter, 2, '%')]),
    ) +
    flagLegendText(t.records)
  );
}

export function qualityText(result: QualityBenchResult): string {
  const parts = result.layers.map(qualityLayerText);
  if (result.timings !== undefined) parts.push(quantizeTimingsText(result.timings));
  return 'svdquant bench: quality\n\n' + parts.join('\n');
}
