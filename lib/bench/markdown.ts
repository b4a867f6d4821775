/**
 * Markdown tables of benchmark records (the output of `npm run bench`, and of `svdquant bench
 * --markdown`). The kernel tables can be written row by row while a run is in progress.
 */

import type { NativeIsaInfo } from '../native.js';
import type { KernelBenchRecord, KernelRecord, PeakRecord } from './kernels.js';
import type { QualityBenchResult, QualityLayerResult, QuantizeTimingsResult } from './quality.js';

export interface KernelRunInfo {
  isa: Pick<NativeIsaInfo, 'active' | 'detected' | 'source'>;
  threads: readonly number[];
  reps: number;
}

const percent = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '' : `${(100 * x).toFixed(1)}%`);

export function kernelMarkdownHeader(info: KernelRunInfo): string {
  const { isa } = info;
  return (
    `# svdquant bench\n\nCPU ISA: ${isa.active} (detected ${isa.detected}, ${isa.source}); ` +
    `threads: ${info.threads.join(', ')}; medians of ${info.reps} runs after warm-up\n\n`
  );
}

const PEAKS_HEAD =
  '## Machine peaks (measured in this run)\n\n' +
  '| ISA | threads | fp32 FMA GFLOP/s | int8 GOP/s | DRAM read GB/s |\n' +
  '|---|---:|---:|---:|---:|\n';

const KERNELS_HEAD =
  '\n## Kernels\n\n' +
  '| kernel | scheme | M | K | N | rank | low-rank | threads | ms | GOP/s | of peak | vs fp32 | weight GB/s (M=1) | bytes / bf16 |\n' +
  '|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n';

export function peakMarkdownRow(p: PeakRecord): string {
  return `| ${p.isa} | ${p.threads} | ${p.fp32Gflops.toFixed(1)} | ${p.int8Gops.toFixed(1)} | ${p.dramGBps.toFixed(1)} |\n`;
}

export function kernelMarkdownRow(r: KernelRecord): string {
  const cells = [
    r.kernel, r.scheme, r.M, r.K, r.N, r.rank, r.lowRank, r.threads, r.ms.toFixed(3), r.gops.toFixed(1), percent(r.peakFraction),
    r.speedupVsF32 === undefined ? '' : `${r.speedupVsF32.toFixed(2)}x`,
    r.weightGBps === undefined ? '' : `${r.weightGBps.toFixed(1)} (${percent(r.dramFraction)} of DRAM)`,
    r.bf16Bytes === undefined ? '' : `${(r.bytes / r.bf16Bytes).toFixed(3)}`,
  ];
  return `| ${cells.join(' | ')} |\n`;
}

/**
 * Writes the kernel document piece by piece: the header at once, then each record as it comes
 * (section headings are emitted before the first record of each kind).
 */
export class KernelMarkdownWriter {
  private section: 'none' | 'peak' | 'kernel' = 'none';

  constructor(
    private readonly write: (text: string) => void,
    info: KernelRunInfo,
  ) {
    write(kernelMarkdownHeader(info));
  }

  record(record: KernelBenchRecord): void {
    if (record.kind === 'peak') {
      if (this.section === 'none') this.write(PEAKS_HEAD);
      this.section = 'peak';
      this.write(peakMarkdownRow(record));
    } else {
      if (this.section !== 'kernel') this.write(KERNELS_HEAD);
      this.section = 'kernel';
      this.write(kernelMarkdownRow(record));
    }
  }
}

/** The whole kernel document. */
export function kernelMarkdown(info: KernelRunInfo, records: readonly KernelBenchRecord[]): string {
  let text = '';
  const writer = new KernelMarkdownWriter((part) => (text += part), info);
  for (const record of records) writer.record(record);
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
    text += `| ${r.run} | ${r.seconds.toFixed(2)} | ${r.targetSeconds} | ${r.alpha} | ${r.errorBefore.toFixed(4)} | ${r.errorAfter.toFixed(4)} |\n`;
  }
  return text;
}

/** The whole quality document. */
export function qualityMarkdown(result: QualityBenchResult): string {
  return result.layers.map(qualityLayerMarkdown).join('') + (result.timings === undefined ? '' : quantizeTimingsMarkdown(result.timings));
}
