/**
 * Aligned plain-text tables of benchmark records (the default output of `svdquant bench`): numbers
 * right-aligned, each with its unit.
 */

import type { KernelBenchRecord, KernelRecord, PeakRecord } from './kernels.js';
import type { KernelRunInfo } from './markdown.js';
import type { QualityBenchResult, QualityLayerResult, QuantizeTimingsResult } from './quality.js';

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
    `threads ${info.threads.join(', ')}; medians of ${info.reps} ${info.reps === 1 ? 'run' : 'runs'} after warm-up\n`
  );
}

export function peaksTextTable(peaks: readonly PeakRecord[]): string {
  return alignedTable(
    [L('ISA'), R('THREADS'), R('FP32 FMA'), R('INT8 DOT'), R('DRAM READ')],
    peaks.map((p) => [p.isa, String(p.threads), fixed(p.fp32Gflops, 1, ' GFLOP/s'), fixed(p.int8Gops, 1, ' GOP/s'), fixed(p.dramGBps, 1, ' GB/s')]),
  );
}

export function kernelsTextTable(kernels: readonly KernelRecord[]): string {
  const anyStream = kernels.some((r) => r.weightGBps !== undefined);
  const columns = [
    L('KERNEL'), L('SCHEME'), R('M'), R('K'), R('N'), R('RANK'), L('LOW-RANK'), R('THREADS'), R('TIME'), R('THROUGHPUT'), R('OF PEAK'),
    R('VS FP32'), ...(anyStream ? [R('WEIGHTS (M=1)'), R('OF DRAM')] : []), R('SIZE/BF16'),
  ];
  const rows = kernels.map((r) => [
    r.kernel, r.scheme, String(r.M), String(r.K), String(r.N), String(r.rank), r.lowRank, String(r.threads), formatMs(r.ms),
    fixed(r.gops, 1, ' GOP/s'), percent(r.peakFraction), fixed(r.speedupVsF32, 2, 'x'),
    ...(anyStream ? [fixed(r.weightGBps, 1, ' GB/s'), percent(r.dramFraction)] : []),
    r.bf16Bytes === undefined ? '' : percent(r.bytes / r.bf16Bytes),
  ]);
  return alignedTable(columns, rows);
}

/** The whole kernel report: header, peaks, kernels, and what the ratio columns mean. */
export function kernelText(info: KernelRunInfo, records: readonly KernelBenchRecord[]): string {
  const peaks = records.filter((r): r is PeakRecord => r.kind === 'peak');
  const kernels = records.filter((r): r is KernelRecord => r.kind === 'kernel');
  let text = kernelTextHeader(info);
  text += '\nMachine peaks (measured in this run)\n' + peaksTextTable(peaks);
  if (kernels.length > 0) {
    text += '\nKernels (THROUGHPUT = 2·M·K·N / TIME; OF PEAK: of the int8 peak, fp32 for gemm_f32 and w4a16; ';
    text += 'VS FP32: speed-up over gemm_f32 at the same M, K, N, threads)\n';
    text += kernelsTextTable(kernels);
  }
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
      t.records.map((r) => [r.run, fixed(r.seconds, 2, ' s'), `${r.targetSeconds} s`, r.alpha === null ? 'none' : String(r.alpha), fixed(100 * r.errorBefore, 2, '%'), fixed(100 * r.errorAfter, 2, '%')]),
    )
  );
}

export function qualityText(result: QualityBenchResult): string {
  const parts = result.layers.map(qualityLayerText);
  if (result.timings !== undefined) parts.push(quantizeTimingsText(result.timings));
  return 'svdquant bench: quality\n\n' + parts.join('\n');
}
