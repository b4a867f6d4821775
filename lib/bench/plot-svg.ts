/**
 * An SVG plot of kernel benchmark records, written without dependencies: throughput (GOP/s, log
 * scale) against the token count M (log scale), one panel per layer shape (K, N), stacked. Each
 * panel has one line with markers per scheme (the SVDQuant layer with its fused rank-32 low-rank
 * branch) and the fp32 GEMM baseline, all at one thread count, and the machine's measured int8 and
 * fp32 peaks as dashed horizontal lines.
 */

import type { KernelBenchRecord, KernelRecord, PeakRecord } from './kernels.js';

export interface KernelPlotOptions {
  /** Thread count to plot; default the largest in the records. */
  threads?: number;
  /** Low-rank mode of the plotted SVDQuant series; default 'fused' (rank > 0). */
  lowRank?: KernelRecord['lowRank'];
  /** Extra text for the title, e.g. the CPU model. */
  machine?: string;
}

interface Series {
  label: string;
  color: string;
  marker: Marker;
  points: Array<{ M: number; gops: number }>;
}

type Marker = 'circle' | 'square' | 'triangle' | 'diamond' | 'down' | 'cross';

// Colour-blind-safe colours (Okabe–Ito), fixed per scheme so plots of different runs compare.
const STYLE: Record<string, { color: string; marker: Marker }> = {
  w4a4: { color: '#0072B2', marker: 'circle' },
  mxfp4: { color: '#D55E00', marker: 'square' },
  nvfp4: { color: '#009E73', marker: 'triangle' },
  w8a8: { color: '#CC79A7', marker: 'diamond' },
  w4a16: { color: '#E69F00', marker: 'down' },
  f32: { color: '#555555', marker: 'cross' },
};

const WIDTH = 860;
const PLOT_LEFT = 78;
const PLOT_WIDTH = 560;
const LEGEND_X = PLOT_LEFT + PLOT_WIDTH + 28;
const HEADER = 66;
const PANEL_HEIGHT = 300;
const PLOT_TOP = 30; // within a panel, below its title
const PLOT_HEIGHT = 210;

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

const num = (x: number): string => String(Math.round(x * 10) / 10);

/**
 * Ticks of a log axis over [lo, hi]: 1, 2, 5, 10, 20, ...; 1, 2, 3, ..., 9, 10 for a short range;
 * 1, 3, 10, ... or powers of ten for a long one.
 */
export function logTicks(lo: number, hi: number): number[] {
  const within = (steps: readonly number[]): number[] => {
    const ticks: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const s of steps) {
        const v = Number((s * 10 ** e).toPrecision(6));
        if (v >= lo * 0.9999 && v <= hi * 1.0001) ticks.push(v);
      }
    }
    return ticks;
  };
  const standard = within([1, 2, 5]);
  if (standard.length < 3) return within([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  for (const ticks of [standard, within([1, 3]), within([1])]) if (ticks.length <= 9) return ticks;
  return within([1]);
}

function tickLabel(v: number): string {
  if (v >= 1e6) return `${v / 1e6}M`;
  if (v >= 1e4) return `${v / 1e3}k`;
  return String(v);
}

function markerSvg(marker: Marker, x: number, y: number, color: string): string {
  const r = 4;
  const fill = `fill="${color}" stroke="white" stroke-width="0.8"`;
  switch (marker) {
    case 'circle':
      return `<circle cx="${num(x)}" cy="${num(y)}" r="${r}" ${fill}/>`;
    case 'square':
      return `<rect x="${num(x - r)}" y="${num(y - r)}" width="${2 * r}" height="${2 * r}" ${fill}/>`;
    case 'triangle':
      return `<path d="M${num(x)} ${num(y - r - 1)}L${num(x + r + 1)} ${num(y + r)}L${num(x - r - 1)} ${num(y + r)}Z" ${fill}/>`;
    case 'down':
      return `<path d="M${num(x)} ${num(y + r + 1)}L${num(x + r + 1)} ${num(y - r)}L${num(x - r - 1)} ${num(y - r)}Z" ${fill}/>`;
    case 'diamond':
      return `<path d="M${num(x)} ${num(y - r - 1)}L${num(x + r + 1)} ${num(y)}L${num(x)} ${num(y + r + 1)}L${num(x - r - 1)} ${num(y)}Z" ${fill}/>`;
    case 'cross':
      return `<path d="M${num(x - r)} ${num(y - r)}L${num(x + r)} ${num(y + r)}M${num(x - r)} ${num(y + r)}L${num(x + r)} ${num(y - r)}" stroke="${color}" stroke-width="2" fill="none"/>`;
  }
}

/**
 * The SVG document (a string). Throws when the records hold no kernel measurement at the plotted
 * thread count.
 */
export function kernelPlotSvg(records: readonly KernelBenchRecord[], options: KernelPlotOptions = {}): string {
  const kernels = records.filter((r): r is KernelRecord => r.kind === 'kernel');
  const peaksAll = records.filter((r): r is PeakRecord => r.kind === 'peak');
  const threads = options.threads ?? Math.max(...kernels.map((r) => r.threads));
  const lowRank = options.lowRank ?? 'fused';
  const plotted = kernels.filter(
    (r) => r.threads === threads && (r.kernel === 'gemm_f32' || (r.lowRank === lowRank && (lowRank === 'none' || r.rank > 0))),
  );
  if (plotted.length === 0) throw new Error(`no kernel records to plot at ${threads} threads`);
  const peak = peaksAll.find((p) => p.threads === threads);
  const isa = plotted[0].isa;

  const shapes: Array<[number, number]> = [];
  for (const r of plotted) if (!shapes.some(([k, n]) => k === r.K && n === r.N)) shapes.push([r.K, r.N]);
  const seriesKeys: string[] = [];
  for (const r of plotted) if (r.kernel === 'svdquant_layer' && !seriesKeys.includes(r.scheme)) seriesKeys.push(r.scheme);
  if (plotted.some((r) => r.kernel === 'gemm_f32')) seriesKeys.push('f32');
  const rank = plotted.find((r) => r.kernel === 'svdquant_layer')?.rank ?? 0;
  const branch = lowRank === 'none' ? 'no low-rank branch' : `${lowRank} rank-${rank} branch`;
  const seriesLabel = (key: string): string => (key === 'f32' ? 'fp32 GEMM' : `${key}`);

  // Shared axes over all panels, so the panels compare at a glance.
  const ms = [...new Set(plotted.map((r) => r.M))].sort((a, b) => a - b);
  const values = plotted.map((r) => r.gops).filter((v) => v > 0 && Number.isFinite(v));
  const peakValues = peak === undefined ? [] : [peak.int8Gops, peak.fp32Gflops].filter((v) => v > 0 && Number.isFinite(v));
  const xPad = ms.length === 1 ? 0.5 : 0.12 * (Math.log10(ms[ms.length - 1]) - Math.log10(ms[0]));
  const xLo = Math.log10(ms[0]) - xPad;
  const xHi = Math.log10(ms[ms.length - 1]) + xPad;
  const yMin = Math.min(...values, ...peakValues);
  const yMax = Math.max(...values, ...peakValues);
  const yLo = Math.log10(yMin / 1.6);
  const yHi = Math.log10(yMax * 1.6);
  const xOf = (m: number): number => PLOT_LEFT + ((Math.log10(m) - xLo) / (xHi - xLo)) * PLOT_WIDTH;
  const yOf = (v: number): number => PLOT_TOP + PLOT_HEIGHT - ((Math.log10(v) - yLo) / (yHi - yLo)) * PLOT_HEIGHT;
  const yTicks = logTicks(10 ** yLo, 10 ** yHi);

  const height = HEADER + shapes.length * PANEL_HEIGHT + 10;
  const title = `svdquant kernels: ${isa}, ${threads} ${threads === 1 ? 'thread' : 'threads'}${options.machine ? ` (${options.machine})` : ''}`;
  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ` +
      'font-family="Helvetica, Arial, sans-serif" font-size="12">',
  );
  out.push(`<title>${escapeXml(title)}</title>`);
  out.push(`<rect x="0" y="0" width="${WIDTH}" height="${height}" fill="white"/>`);
  out.push(`<text class="title" x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  out.push(
    `<text class="subtitle" x="${WIDTH / 2}" y="44" text-anchor="middle" fill="#444">` +
      `${escapeXml(`GOP/s = 2·M·K·N / time; SVDQuant layers with the ${branch}; dashed: measured peaks`)}</text>`,
  );

  shapes.forEach(([K, N], panel) => {
    const top = HEADER + panel * PANEL_HEIGHT;
    out.push(`<g class="panel" transform="translate(0 ${top})">`);
    out.push(`<text class="panel-title" x="${PLOT_LEFT}" y="18" font-size="13" font-weight="bold">${escapeXml(`K = ${K} → N = ${N}`)}</text>`);
    out.push(`<rect x="${PLOT_LEFT}" y="${PLOT_TOP}" width="${PLOT_WIDTH}" height="${PLOT_HEIGHT}" fill="none" stroke="#222"/>`);
    // Grid, ticks and tick labels.
    for (const v of yTicks) {
      const y = num(yOf(v));
      out.push(`<line class="grid" x1="${PLOT_LEFT}" y1="${y}" x2="${PLOT_LEFT + PLOT_WIDTH}" y2="${y}" stroke="#e4e4e4"/>`);
      out.push(`<line x1="${PLOT_LEFT - 5}" y1="${y}" x2="${PLOT_LEFT}" y2="${y}" stroke="#222"/>`);
      out.push(`<text x="${PLOT_LEFT - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${tickLabel(v)}</text>`);
    }
    let lastLabelX = -Infinity;
    for (const m of ms) {
      const x = xOf(m);
      out.push(`<line class="grid" x1="${num(x)}" y1="${PLOT_TOP}" x2="${num(x)}" y2="${PLOT_TOP + PLOT_HEIGHT}" stroke="#e4e4e4"/>`);
      out.push(`<line x1="${num(x)}" y1="${PLOT_TOP + PLOT_HEIGHT}" x2="${num(x)}" y2="${PLOT_TOP + PLOT_HEIGHT + 5}" stroke="#222"/>`);
      if (x - lastLabelX >= 30) {
        out.push(`<text x="${num(x)}" y="${PLOT_TOP + PLOT_HEIGHT + 18}" text-anchor="middle">${m}</text>`);
        lastLabelX = x;
      }
    }
    out.push(`<text class="axis-label" x="${PLOT_LEFT + PLOT_WIDTH / 2}" y="${PLOT_TOP + PLOT_HEIGHT + 38}" text-anchor="middle">M (tokens, log scale)</text>`);
    const yMid = PLOT_TOP + PLOT_HEIGHT / 2;
    out.push(`<text class="axis-label" x="20" y="${yMid}" text-anchor="middle" transform="rotate(-90 20 ${yMid})">GOP/s (log scale)</text>`);

    // Peaks: dashed horizontal lines with labels.
    if (peak !== undefined) {
      const lines: Array<[string, string, number, string]> = [
        ['peak-int8', 'int8 peak', peak.int8Gops, 'GOP/s'],
        ['peak-fp32', 'fp32 FMA peak', peak.fp32Gflops, 'GFLOP/s'],
      ];
      for (const [cls, name, value, unit] of lines) {
        if (!(value > 0 && Number.isFinite(value))) continue;
        const y = num(yOf(value));
        out.push(
          `<line class="peak ${cls}" x1="${PLOT_LEFT}" y1="${y}" x2="${PLOT_LEFT + PLOT_WIDTH}" y2="${y}" stroke="#b00020" stroke-width="1.2" stroke-dasharray="6 4"/>`,
        );
        out.push(
          `<text class="peak-label" x="${PLOT_LEFT + 6}" y="${num(yOf(value) - 5)}" fill="#b00020">` +
            `${escapeXml(`${name} ${value.toFixed(1)} ${unit}`)}</text>`,
        );
      }
    }

    // One polyline with markers per series.
    for (const key of seriesKeys) {
      const style = STYLE[key] ?? { color: '#000000', marker: 'circle' as Marker };
      const series: Series = {
        label: seriesLabel(key),
        color: style.color,
        marker: style.marker,
        points: plotted
          .filter((r) => r.K === K && r.N === N && r.scheme === key && r.gops > 0 && Number.isFinite(r.gops))
          .map((r) => ({ M: r.M, gops: r.gops }))
          .sort((a, b) => a.M - b.M),
      };
      if (series.points.length === 0) continue;
      const points = series.points.map((p) => `${num(xOf(p.M))},${num(yOf(p.gops))}`).join(' ');
      out.push(`<g class="series" data-series="${escapeXml(key)}">`);
      out.push(`<polyline points="${points}" fill="none" stroke="${series.color}" stroke-width="2"/>`);
      for (const p of series.points) out.push(markerSvg(series.marker, xOf(p.M), yOf(p.gops), series.color));
      out.push('</g>');
    }
    out.push('</g>');
  });

  // Legend, to the right of the first panel.
  out.push(`<g class="legend" transform="translate(${LEGEND_X} ${HEADER + PLOT_TOP})">`);
  seriesKeys.forEach((key, i) => {
    const style = STYLE[key] ?? { color: '#000000', marker: 'circle' as Marker };
    const y = 8 + i * 20;
    out.push(`<line x1="0" y1="${y}" x2="28" y2="${y}" stroke="${style.color}" stroke-width="2"/>`);
    out.push(markerSvg(style.marker, 14, y, style.color));
    out.push(`<text x="36" y="${y}" dominant-baseline="middle">${escapeXml(seriesLabel(key))}</text>`);
  });
  if (peak !== undefined) {
    const y = 8 + seriesKeys.length * 20;
    out.push(`<line x1="0" y1="${y}" x2="28" y2="${y}" stroke="#b00020" stroke-width="1.2" stroke-dasharray="6 4"/>`);
    out.push(`<text x="36" y="${y}" dominant-baseline="middle">measured peaks</text>`);
  }
  out.push('</g>');
  out.push('</svg>');
  return out.join('\n') + '\n';
}
