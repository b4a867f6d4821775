/**
 * What `svdquant demo` measures, as data (the command formats it). On the built-in model
 * (lib/models/tiny-dit.ts): the fp32 model, then for each scheme: calibrate + quantize (SVDQuant,
 * rank r), the reference path (fp32 on dequantized operands), the native path (CPU kernels, fused
 * low-rank branch), the low-rank overhead (each native layer at rank r against the same layer at
 * rank 0), and the memory of the quantized layers against bf16. Every scheme quantizes the same fp32
 * model: its Linear layers are put back after each scheme.
 */
import { machineInfoStart, type MachineInfo } from './format.js';
import { Module } from '../graph/module.js';
import { Linear } from '../graph/layers.js';
import { tinyDit, tinyDitCalibration, tinyDitInputs, resolveTinyDitOptions, type TinyDitOptions } from '../models/tiny-dit.js';
import { quantizeModel } from '../quant/quantize-model.js';
import { ErrorCorrectedLinear } from '../quant/error-corrected-linear.js';
import { relativeError } from '../quant/ops.js';
import { enableNativeInference, disableNativeInference, NativeLinear } from '../runtime/native-inference.js';
import { NativeLowbitLayer } from '../runtime/native-layer.js';
import type { SchemeName } from '../formats/schemes.js';
import { Tensor } from '../tensor.js';

export interface DemoOptions {
  schemes: SchemeName[];
  /** Tokens of the evaluation input (and of the timed forwards). */
  tokens: number;
  /** Calibration tokens (in batches of at most 256). */
  calibTokens: number;
  rank: number;
  threads: number;
  /** Timed runs per measurement (the median is reported). */
  reps: number;
  model: TinyDitOptions;
}

export interface DemoRow {
  scheme: SchemeName | 'fp32';
  /** ‖Y − Y_fp32‖/‖Y_fp32‖ of the reference path (fake quant) and of the native path. */
  relErrorReference: number;
  relErrorNative: number;
  /** 20·log10(max|Y_fp32| / RMSE) of the native path (Infinity when exact). */
  psnrDb: number;
  /** Median ms of one model forward (native path; fp32: the fp32 model on the native fp32 GEMM). */
  modelMs: number;
  speedupModel: number;
  /** Best ms of the quantized linear layers alone (all layers in sequence), and the speed-up over fp32. */
  linearMs: number;
  speedupLinear: number;
  /** (linear ms at rank r − at rank 0) / at rank 0, fused branch. */
  lowRankOverhead: number;
  /** Bytes of the linear layers: kernel format (quantized) or fp32, and the ratio to bf16. */
  weightBytes: number;
  ratioToBf16: number;
  quantizeSeconds: number;
}

export interface DemoReport {
  model: Required<TinyDitOptions> & { linearLayers: number; parameters: number };
  tokens: number;
  calibTokens: number;
  rank: number;
  threads: number;
  reps: number;
  rows: DemoRow[];
  /** Where the time went, in seconds. */
  seconds: { buildModel: number; fp32: number; quantize: number; reference: number; native: number; total: number };
  machine: MachineInfo;
}

export interface DemoHooks {
  info(text: string): void;
  detail(text: string): void;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timeMs(reps: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up (weight packing, thread pool)
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function runAll(runs: ReadonlyArray<() => Promise<unknown>>): Promise<void> {
  for (const run of runs) await run();
}

/**
 * Best times of `a` and `b` run alternately in ABBA order (after two warm-ups each): the minimum,
 * not the median, because the difference sought is smaller than the scheduling noise of a run.
 */
async function timePair(reps: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number, number]> {
  for (let i = 0; i < 2; i++) {
    await a();
    await b();
  }
  const ta: number[] = [], tb: number[] = [];
  const once = async (fn: () => Promise<unknown>, into: number[]): Promise<void> => {
    const t0 = performance.now();
    await fn();
    into.push(performance.now() - t0);
  };
  for (let i = 0; i < reps; i++) {
    if (i % 2 === 0) {
      await once(a, ta);
      await once(b, tb);
    } else {
      await once(b, tb);
      await once(a, ta);
    }
  }
  return [Math.min(...ta), Math.min(...tb)];
}

function psnr(y: Float32Array, ref: Float32Array): number {
  let peak = 0, se = 0;
  for (let i = 0; i < ref.length; i++) {
    peak = Math.max(peak, Math.abs(ref[i]));
    se += (y[i] - ref[i]) ** 2;
  }
  const rmse = Math.sqrt(se / ref.length);
  return rmse === 0 ? Number.POSITIVE_INFINITY : 20 * Math.log10(peak / rmse);
}

function linearLayers(model: Module): Array<[string, Linear]> {
  return [...model.namedModules()].filter((e): e is [string, Linear] => e[1] instanceof Linear);
}

export async function runDemo(o: DemoOptions, hooks: DemoHooks): Promise<DemoReport> {
  const t0 = performance.now();
  const machineEnd = machineInfoStart();
  const since = (t: number): number => (performance.now() - t) / 1000;
  const modelOptions = resolveTinyDitOptions(o.model);
  let t = performance.now();
  hooks.info(`building the model: ${modelOptions.blocks} transformer blocks, dim ${modelOptions.dim}, MLP ${modelOptions.dim * modelOptions.mlpRatio}, ${modelOptions.heads} heads (seed ${modelOptions.seed})`);
  const model = tinyDit(modelOptions);
  const originals = linearLayers(model);
  const parameters = originals.reduce((s, [, l]) => s + l.inFeatures * l.outFeatures + l.outFeatures, 0);
  const buildModel = since(t);
  const x = tinyDitInputs(o.tokens, modelOptions.dim, 1000);
  const calibration = tinyDitCalibration(o.calibTokens, modelOptions.dim).map((batch) => [batch]);

  // fp32: the model on the native fp32 GEMM, and its linear layers alone.
  t = performance.now();
  hooks.info(`fp32 model: ${originals.length} linear layers, ${(parameters / 1e6).toFixed(1)} M parameters, ${o.tokens} tokens`);
  const yFp32 = (await model.call(x)).data as Float32Array;
  const fp32ModelMs = await timeMs(o.reps, () => model.call(x));
  const layerInputs = new Map<string, Tensor<'f32'>>();
  originals.forEach(([name, l], i) => layerInputs.set(name, tinyDitInputs(o.tokens, l.inFeatures, 2000 + i)));
  const fp32Runs = originals.map(([name, l]) => () => l.forward(layerInputs.get(name)!));
  const [fp32LinearMs] = await timePair(Math.max(o.reps, 9), () => runAll(fp32Runs), () => Promise.resolve());
  const fp32Bytes = originals.reduce((s, [, l]) => s + 4 * (l.inFeatures * l.outFeatures + l.outFeatures), 0);
  const bf16Bytes = fp32Bytes / 2;
  const fp32Seconds = since(t);
  const rows: DemoRow[] = [{
    scheme: 'fp32', relErrorReference: 0, relErrorNative: 0, psnrDb: Number.POSITIVE_INFINITY,
    modelMs: fp32ModelMs, speedupModel: 1, linearMs: fp32LinearMs, speedupLinear: 1, lowRankOverhead: 0,
    weightBytes: fp32Bytes, ratioToBf16: fp32Bytes / bf16Bytes, quantizeSeconds: 0,
  }];

  let quantizeSeconds = 0, referenceSeconds = 0, nativeSeconds = 0;
  for (const [i, scheme] of o.schemes.entries()) {
    // Calibrate + quantize.
    t = performance.now();
    hooks.info(`[${i + 1}/${o.schemes.length}] ${scheme}: calibrating on ${o.calibTokens} tokens and quantizing ${originals.length} layers (rank ${o.rank})`);
    const report = await quantizeModel(model, { scheme, rank: o.rank, threads: o.threads }, calibration);
    for (const l of report.layers) hooks.detail(`${l.name}: ${l.outFeatures}x${l.inFeatures}, alpha ${l.alpha}, error of plain RTN ${l.errorBefore.toFixed(4)} -> SVDQuant ${l.errorAfter.toFixed(4)} (${l.seconds.toFixed(2)} s)`);
    const qs = since(t);
    quantizeSeconds += qs;
    try {
      // Reference path.
      t = performance.now();
      const yRef = (await model.call(x)).data as Float32Array;
      referenceSeconds += since(t);

      // Native path.
      t = performance.now();
      const enabled = await enableNativeInference(model, { backend: 'cpu', lowRank: 'fused', threads: o.threads });
      if (enabled.skipped.length > 0) hooks.info(`${scheme}: not native: ${enabled.skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}`);
      let yNat: Float32Array;
      let modelMs: number, linearMs = 0, rank0Ms = 0, weightBytes = 0;
      const rank0Runs: Array<() => Promise<unknown>> = [];
      try {
        yNat = (await model.call(x)).data as Float32Array;
        modelMs = await timeMs(o.reps, () => model.call(x));
        // The linear layers alone, with the branch and at rank 0 (the same layers without L_down /
        // L_up), each set timed as a whole and the two alternated (ABBA), so that both see the same
        // machine state: the overhead is a few % of a few ms and the noisiest figure.
        const withBranch: Array<() => Promise<unknown>> = [];
        const rank0Layers: NativeLowbitLayer[] = [];
        try {
          for (const [name] of originals) {
            const nat = model.getSubmodule(name);
            if (!(nat instanceof NativeLinear)) continue;
            const input = layerInputs.get(name)!;
            weightBytes += nat.layer.bytes;
            withBranch.push(() => nat.layer.forward(input, { lowRank: 'fused', threads: o.threads }));
            const { lDown: _d, lUp: _u, ...rank0Data } = nat.source.data();
            const rank0 = await NativeLowbitLayer.create(rank0Data);
            rank0Layers.push(rank0);
            rank0Runs.push(() => rank0.forward(input, { threads: o.threads }));
          }
          [linearMs, rank0Ms] = await timePair(Math.max(o.reps, 9), () => runAll(withBranch), () => runAll(rank0Runs));
        } finally {
          for (const l of rank0Layers) l.dispose();
        }
      } finally {
        disableNativeInference(model);
      }
      nativeSeconds += since(t);
      rows.push({
        scheme, relErrorReference: relativeError(yRef, yFp32), relErrorNative: relativeError(yNat, yFp32), psnrDb: psnr(yNat, yFp32),
        modelMs, speedupModel: fp32ModelMs / modelMs, linearMs, speedupLinear: fp32LinearMs / linearMs,
        lowRankOverhead: (linearMs - rank0Ms) / rank0Ms, weightBytes, ratioToBf16: weightBytes / bf16Bytes, quantizeSeconds: qs,
      });
      hooks.detail(`${scheme}: native model ${modelMs.toFixed(1)} ms, linear layers ${linearMs.toFixed(1)} ms (rank 0: ${rank0Ms.toFixed(1)} ms)`);
    } finally {
      // Put the fp32 layers back for the next scheme.
      for (const [name, l] of originals) {
        if (model.getSubmodule(name) instanceof ErrorCorrectedLinear) model.setSubmodule(name, l);
      }
    }
  }
  return {
    model: { ...modelOptions, linearLayers: originals.length, parameters },
    tokens: o.tokens, calibTokens: o.calibTokens, rank: o.rank, threads: o.threads, reps: o.reps, rows,
    seconds: { buildModel, fp32: fp32Seconds, quantize: quantizeSeconds, reference: referenceSeconds, native: nativeSeconds, total: since(t0) },
    machine: machineEnd(),
  };
}
