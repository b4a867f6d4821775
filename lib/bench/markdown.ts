/**
 * Markdown tables of benchmark records (the output of `npm run bench`, and of `svdquant bench
 * --markdown`). The kernel tables can be written row by row while a run is in progress.
 */

import type { NativeIsaInfo } from '../native.js';
import type { ApiRecord, KernelBenchRecord, KernelRecord, PeakRecord } from './kernels.js';
import type { QualityBenchResult, QualityLayerResult, QuantizeTimingsResult } from './quality.js';
import { flagLegend, marked } from './reliability.js';
import { issue17Targets } from './targets.js';

export interface KernelRunInfo {
  isa: Pick<NativeIsaInfo, 'active' | 'detected' | 'source'>;
  threads: readonly number[];
  reps: number;
}

const percent = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '' : `${(100 * x).toFixed(1)}%`);
const signedPercent = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '' : `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`);

export function kernelMarkdownHeader(info: KernelRunInfo): string {
  const { isa } = info;
  return (
    `# svdquant bench\n\nCPU ISA: ${isa.active} (detected ${isa.detected}, ${isa.source}); ` +
    `threads: ${info.threads.join(', ')}; medians of ${info.reps} interleaved runs after warm-up\n\n`
  );
}

const PEAKS_HEAD =
  '| ISA | threads | phase | fp32 FMA GFLOP/s | int8 GOP/s | AMX int8 GOP/s | DRAM read GB/s | usual int8 / DRAM | flags |\n' +
  '|---|---:|---|---:|---:|---:|---:|---:|---|\n';

const KERNELS_HEAD =
  '\n## Kernels\n\n' +
  '| kernel | scheme | M | K | N | rank | low-rank | threads | ms | GOP/s | of peak | peak of | vs fp32 | vs rank 0 | weight GB/s (M=1) | bytes / bf16 | flags |\n' +
  '|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n';

const API_HEAD =
  '\n## Public API beside the kernel (same rounds)\n\n' +
  'API/kernel: kernel time over the time of `forward()` with the output disposed; dropped: the output left to the collector; ' +
  'into out: `forward(x, { out })`; fresh/fwd: outputs taken fresh from the system per dropped forward.\n\n' +
  '| kernel | scheme | M | K | N | threads | kernel ms | API ms | API/kernel | dropped | into out | fresh/fwd | API weight GB/s (M=1) | flags |\n' +
  '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n';

export function peakMarkdownRow(p: PeakRecord): string {
  const usual = p.usual === undefined ? '' : `${p.usual.int8Gops.toFixed(1)} / ${p.usual.dramGBps.toFixed(1)}`;
  const amx = p.amxInt8Gops > 0 ? marked(p.amxInt8Gops.toFixed(1), p.flags) : '';
  return `| ${p.isa} | ${p.threads} | ${p.phase} | ${marked(p.fp32Gflops.toFixed(1), p.flags)} | ${marked(p.int8Gops.toFixed(1), p.flags)} | ${amx} | ${marked(p.dramGBps.toFixed(1), p.flags)} | ${usual} | ${p.flags.join(', ')} |\n`;
}

export function kernelMarkdownRow(r: KernelRecord): string {
  const m = (text: string): string => marked(text, r.flags);
  const cells = [
    r.kernel, r.scheme, r.M, r.K, r.N, r.rank, r.lowRank, r.threads, m(r.ms.toFixed(3)), m(r.gops.toFixed(1)), m(percent(r.peakFraction)), r.peakOf,
    r.speedupVsF32 === undefined ? '' : `${r.speedupVsF32.toFixed(2)}x`,
    m(signedPercent(r.overheadVsRank0)),
    r.weightGBps === undefined ? '' : m(`${r.weightGBps.toFixed(1)} (${percent(r.dramFraction)} of DRAM)`),
    r.bf16Bytes === undefined ? '' : `${(r.bytes / r.bf16Bytes).toFixed(3)}`,
    r.flags.join(', '),
  ];
  return `| ${cells.join(' | ')} |\n`;
}

export function apiMarkdownRow(r: ApiRecord): string {
  const m = (text: string): string => marked(text, r.flags);
  const cells = [
    r.kernel, r.scheme, r.M, r.K, r.N, r.threads, m(r.kernelMs.toFixed(3)), m(r.disposeMs.toFixed(3)), m(percent(r.disposeRatio)),
    m(percent(r.dropRatio)), m(percent(r.outRatio)), r.freshPerForward.toFixed(2),
    r.weightGBps === undefined ? '' : m(`${r.weightGBps.toFixed(1)} (${percent(r.dramFraction)} of DRAM)`),
    r.flags.join(', '),
  ];
  return `| ${cells.join(' | ')} |\n`;
}

/** The targets of issue 17 and the flag legend, for the end of a document. */
export function kernelSummaryMarkdown(records: readonly KernelBenchRecord[]): string {
  let text = '';
  if (records.some((r) => r.kind === 'kernel')) {
    text += '\n## Targets (issue 17)\n\n| target | worst | where | cases | status |\n|---|---:|---|---:|---|\n';
    for (const t of issue17Targets(records)) {
      text += `| ${t.target} | ${marked(t.worst, t.flags)} | ${t.where} | ${t.cases} | ${t.status}${t.flags.length > 0 ? ` (${t.flags.join(', ')})` : ''} |\n`;
    }
  }
  const legend = flagLegend(records);
  if (legend.length > 0) text += '\nUnreliable figures are marked with ! (flags column):\n\n' + legend.map(([f, what]) => `- \`${f}\`: ${what}\n`).join('');
  return text;
}

/**
 * Writes the kernel document piece by piece: the header at once, the start peaks and the kernel
 * rows as they come; the API table, the end peaks, the targets and the flag legend at finish()
 * (an API row belongs to a second table, and a flag found at the end can mark earlier figures).
 */
export class KernelMarkdownWriter {
  private section: 'none' | 'peak' | 'kernel' = 'none';
  private readonly all: KernelBenchRecord[] = [];

  constructor(
    private readonly write: (text: string) => void,
    info: KernelRunInfo,
  ) {
    write(kernelMarkdownHeader(info));
  }

  record(record: KernelBenchRecord): void {
    this.all.push(record);
    if (record.kind === 'peak') {
      if (record.phase !== 'start') return;
      if (this.section === 'none') this.write('## Machine peaks (measured in this run; the end of the run below)\n\n' + PEAKS_HEAD);
      this.section = 'peak';
      this.write(peakMarkdownRow(record));
    } else if (record.kind === 'kernel') {
      if (this.section !== 'kernel') this.write(KERNELS_HEAD);
      this.section = 'kernel';
      this.write(kernelMarkdownRow(record));
    }
  }

  finish(): void {
    const api = this.all.filter((r): r is ApiRecord => r.kind === 'api');
    if (api.length > 0) this.write(API_HEAD + api.map(apiMarkdownRow).join(''));
    const peaks = this.all.filter((r): r is PeakRecord => r.kind === 'peak');
    if (peaks.some((p) => p.phase === 'end')) this.write('\n## Machine peaks, start and end of the run\n\n' + PEAKS_HEAD + peaks.map(peakMarkdownRow).join(''));
    this.write(kernelSummaryMarkdown(this.all));
  }
}

/** The whole kernel document. */
export function kernelMarkdown(info: KernelRunInfo, records: readonly KernelBenchRecord[]): string {
  let text = '';
  const writer = new KernelMarkdownWriter((part) => (text += part), info);
  for (const record of records) writer.record(record);
  writer.finish();
  return text;
}

export function qualityLayerMarkdown(layer: QualityLayerResult): string {
  let text =
    `\n## Relative output error ‖Y_q − Y‖/‖Y‖, synthetic ${layer.label} layer, ` +
    `${layer.tokens / 2} calibration + ${layer.tokens / 2} evaluation tokens (${layer.seconds.toFixed(1)} s)\n\n`;
  text += '| scheme | method | rank | relError |\n|---|---|---|---|\n';
  for (const c of layer.records) text += `| ${c.scheme} | ${c.method} | ${c.rank} | ${c.relError.toFixed(4)} |\n`;
  return text;
}

export function quantizeTimingsMarkdown(timings: QuantizeTimingsResult): string {
  let text = `\n## quantizeLinear timings: ${timings.K} → ${timings.N}, rank ${timings.rank}, ${timings.tokens} calibration tokens, ${timings.threads} threads\n\n`;
  text += `(setup: synthetic layer + calibration ${timings.setupSeconds.toFixed(1)} s, not timed below)\n\n`;
  text += '| run | seconds | target s | α | errorBefore | errorAfter |\n|---|---|---|---|---|---|\n';
  for (const r of timings.records) {
    text += `| ${r.run} | ${marked(r.seconds.toFixed(2), r.flags)} | ${r.targetSeconds} | ${r.alpha} | ${r.errorBefore.toFixed(4)} | ${r.errorAfter.toFixed(4)} |\n`;
  }
  const legend = flagLegend(timings.records);
  if (legend.length > 0) text += '\nUnreliable figures are marked with !:\n\n' + legend.map(([f, what]) => `- \`${f}\`: ${what}\n`).join('');
  return text;
}

/** The whole quality document. */
export function qualityMarkdown(result: QualityBenchResult): string {
  return result.layers.map(qualityLayerMarkdown).join('') + (result.timings === undefined ? '' : quantizeTimingsMarkdown(result.timings));
}
