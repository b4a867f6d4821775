/**
 * The grid search of `svdquant calibrate`: scheme × residual method (RTN / GPTQ) × number of
 * calibration tokens × α search (off / on). Every cell quantizes every chosen layer from the first
 * `samples` calibration tokens of the layer's training split and scores it by the module's output
 * error ‖Y_q − Y‖/‖Y‖ on the held-out tokens (the deployed layer, native kernels: what a server
 * would run). Cells are ranked by the mean held-out error over layers (ties: faster first); the
 * in-sample error (on the tokens the layer was quantized from) is reported beside it. Inside a cell
 * the quantizer splits its tokens again (config.holdout) to score its own choices, so the ranking's
 * held-out tokens are never seen by any choice.
 */
import { ArgumentError } from '../errors.js';
import { LayerStatsCollector } from '../quant/calibration.js';
import { resolveConfig, type SVDQuantConfigInput } from '../quant/config.js';
import { deployedErrors, quantizeLinear } from '../quant/quantize-layer.js';
import { matmulNT } from '../quant/ops.js';
import type { SchemeName } from '../formats/schemes.js';
import { Tensor } from '../tensor.js';
import type { CalibratedLayer } from './demo-files.js';

export type ResidualMethod = 'rtn' | 'gptq';

export interface CalibrateGrid {
  schemes: SchemeName[];
  residuals: ResidualMethod[];
  /** Calibration tokens per layer; 0 means all tokens of the training split. */
  samples: number[];
  alphaSearch: boolean[];
}

export interface CalibrateOptions {
  grid: CalibrateGrid;
  rank: number;
  /** Fraction of each layer's tokens held out for scoring (the last ones). */
  holdout: number;
  seed: number;
  threads: number;
}

export interface CellResult {
  /** 1 = best. */
  position: number;
  scheme: SchemeName;
  residual: ResidualMethod;
  /** Calibration tokens asked for (0: all) and used (the smallest over layers). */
  samples: number;
  samplesUsed: number;
  alphaSearch: boolean;
  /** Mean and max over the layers of the error on the held-out tokens (the ranking's key). */
  meanError: number;
  maxError: number;
  /** Mean over the layers of the error on the tokens the layer was calibrated from (in-sample). */
  meanInSampleError: number;
  /** Layers whose GPTQ residual scored worse than RTN on the quantizer's own held-out tokens and was replaced. */
  gptqFallbacks: number;
  layers: Array<{
    name: string;
    /** On the held-out tokens (never seen by the quantizer). */
    error: number;
    /** On the calibration tokens the quantizer's statistics came from. */
    inSampleError: number;
    alpha: number | null;
    residual: ResidualMethod;
    warnings: string[];
  }>;
  seconds: number;
}

export interface CalibrateHooks {
  cell(index: number, total: number, label: string, done: boolean): void;
  detail(text: string): void;
}

export function cellLabel(c: Pick<CellResult, 'scheme' | 'residual' | 'samples' | 'alphaSearch'>): string {
  return `${c.scheme} ${c.residual} samples=${c.samples === 0 ? 'all' : c.samples} alpha-search=${c.alphaSearch ? 'on' : 'off'}`;
}

interface PreparedLayer {
  layer: CalibratedLayer;
  train: Float32Array;
  trainTokens: number;
  held: Tensor<'f32'>;
  heldTokens: number;
  yHeld: Float32Array;
}

async function prepare(layers: readonly CalibratedLayer[], holdout: number, threads: number): Promise<PreparedLayer[]> {
  const out: PreparedLayer[] = [];
  for (const layer of layers) {
    const k = layer.weight.shape[1];
    const n = layer.weight.shape[0];
    const total = layer.inputs.shape[0];
    const heldTokens = Math.max(1, Math.round(total * holdout));
    const trainTokens = total - heldTokens;
    if (trainTokens < 1) throw new ArgumentError('layers', `calibration inputs with at least 2 tokens per layer (one to calibrate, one to score); layer '${layer.name}' has ${total}`);
    const data = layer.inputs.data;
    const train = data.subarray(0, trainTokens * k);
    const heldData = data.slice(trainTokens * k, total * k);
    const yHeld = await matmulNT(heldData, heldTokens, k, layer.weight.data, n, layer.bias?.data, threads);
    out.push({ layer, train, trainTokens, held: Tensor.fromStorage(heldData, [heldTokens, k], 'f32'), heldTokens, yHeld });
  }
  return out;
}

/** Runs every cell of the grid; returns the cells ranked (best first). */
export async function runCalibrationGrid(layers: readonly CalibratedLayer[], o: CalibrateOptions, hooks: CalibrateHooks): Promise<CellResult[]> {
  const prepared = await prepare(layers, o.holdout, o.threads);
  const cells: Array<Pick<CellResult, 'scheme' | 'residual' | 'samples' | 'alphaSearch'>> = [];
  for (const scheme of o.grid.schemes) {
    for (const residual of o.grid.residuals) {
      for (const samples of o.grid.samples) {
        for (const alphaSearch of o.grid.alphaSearch) cells.push({ scheme, residual, samples, alphaSearch });
      }
    }
  }
  const results: Omit<CellResult, 'position'>[] = [];
  for (const [i, cell] of cells.entries()) {
    const t0 = performance.now();
    hooks.cell(i, cells.length, cellLabel(cell), false);
    const perLayer: CellResult['layers'] = [];
    let fallbacks = 0;
    let samplesUsed = Number.POSITIVE_INFINITY;
    for (const p of prepared) {
      const k = p.layer.weight.shape[1];
      const tokens = cell.samples === 0 ? p.trainTokens : Math.min(cell.samples, p.trainTokens);
      samplesUsed = Math.min(samplesUsed, tokens);
      const config: SVDQuantConfigInput = {
        scheme: cell.scheme, rank: o.rank, gptq: cell.residual === 'gptq', searchAlpha: cell.alphaSearch,
        alphaSearchMaxSamples: tokens, seed: o.seed, threads: o.threads,
      };
      const stats = LayerStatsCollector.forConfig(k, resolveConfig(config), p.layer.name);
      const trainX = Tensor.fromStorage(p.train.slice(0, tokens * k), [tokens, k], 'f32');
      await stats.observeAsync(trainX);
      await stats.flush();
      const r = await quantizeLinear(p.layer.weight, p.layer.bias, stats, config, p.layer.name);
      const yTrain = await matmulNT(trainX.data, tokens, k, p.layer.weight.data, p.layer.weight.shape[0], p.layer.bias?.data, o.threads);
      const [error, inSampleError] = await deployedErrors(r.layer, [
        { x: p.held.data, m: p.heldTokens, yRef: p.yHeld }, { x: trainX.data, m: tokens, yRef: yTrain },
      ], o.threads);
      perLayer.push({ name: p.layer.name, error, inSampleError, alpha: r.report.alpha, residual: r.report.residual, warnings: r.report.warnings });
      if (r.report.gptq?.fallback === true) fallbacks++;
      hooks.detail(`${cellLabel(cell)}: ${p.layer.name} held-out error ${error.toFixed(5)}, in-sample ${inSampleError.toFixed(5)}` +
        `${r.report.alpha !== null ? ` (alpha ${r.report.alpha})` : ''}${r.report.gptq?.fallback === true ? ' (GPTQ fell back to RTN)' : ''}`);
    }
    const errors = perLayer.map((l) => l.error);
    results.push({
      ...cell, samplesUsed: Number.isFinite(samplesUsed) ? samplesUsed : 0,
      meanError: errors.reduce((a, b) => a + b, 0) / Math.max(1, errors.length),
      maxError: errors.reduce((a, b) => Math.max(a, b), 0),
      meanInSampleError: perLayer.reduce((a, l) => a + l.inSampleError, 0) / Math.max(1, perLayer.length),
      gptqFallbacks: fallbacks,
      layers: perLayer, seconds: (performance.now() - t0) / 1000,
    });
    hooks.cell(i + 1, cells.length, cellLabel(cell), true);
  }
  // NaN errors (a layer whose held-out output is all zero) sort last.
  const key = (v: number): number => (Number.isNaN(v) ? Number.POSITIVE_INFINITY : v);
  results.sort((a, b) => key(a.meanError) - key(b.meanError) || a.seconds - b.seconds);
  return results.map((r, i) => ({ position: i + 1, ...r }));
}
