/**
 * What `svdquant demo` measures on a DiT pipeline (the built-in Fashion-MNIST model by default), as
 * data: calibration captured from fp32 pipeline runs, then for each scheme a naive 4-bit quantization
 * (rank 0, no smoothing: plain round-to-nearest of weights and activations) and SVDQuant (smoothing
 * + low-rank branch), each sampled natively with the same labels and seeds as fp32. Per row: PSNR
 * and SSIM of the 8-bit images against fp32's, the built-in classifier's accuracy (built-in model
 * only), the sampling time (median of timed runs after the first) and speed-up, and the model's bytes.
 */
import { loadBuiltinClassifier, unitToSigned } from '../pipelines/builtin-classifier.js';
import type { PipelineCalibration } from '../pipelines/calibration.js';
import { quantizeModel } from '../quant/quantize-model.js';
import type { SVDQuantConfigInput } from '../quant/config.js';
import type { SchemeName } from '../formats/schemes.js';
import { psnr, ssim } from '../image/metrics.js';
import type { Image } from '../image/image.js';
import { machineInfoStart, type MachineInfo } from './format.js';
import { captureCalibration, loadPipeline, modelBytes, resultImages, runNatively, type PipelineSource } from './pipeline-run.js';

export interface ImageDemoOptions {
  source: PipelineSource;
  schemes: SchemeName[];
  rank: number;
  labels: number[] | undefined;
  seed: number;
  steps: number;
  guidance: number;
  /** Calibration: images (one per label, cycling through the classes) and steps per run. */
  calibImages: number;
  calibSteps: number;
  /** Timed sampling runs per row after the first (median reported). */
  reps: number;
  threads: number;
}

export type DemoMethod = 'fp32' | 'naive' | 'svdquant';

export interface ImageDemoRow {
  /** Row label in the table and grid: 'fp32', 'w4a4 naive', 'w4a4 SVDQuant', ... */
  config: string;
  method: DemoMethod;
  scheme: SchemeName | null;
  rank: number;
  smooth: boolean;
  /** Against the fp32 images (8-bit, data range 255); Infinity for fp32 itself. */
  psnrDb: number;
  ssim: number;
  /** Share of images the built-in classifier assigns to their label; null for other models. */
  accuracy: number | null;
  samplingMs: number;
  speedup: number;
  modelBytes: number;
  ratioToFp32: number;
  quantizeSeconds: number;
  layersQuantized: number;
}

export interface ImageDemoReport {
  model: string;
  labels: number[];
  classNames: string[];
  seeds: number[];
  steps: number;
  guidance: number;
  rank: number;
  calibration: { images: number; steps: number; modelCalls: number; timestepMin: number; timestepMax: number };
  rows: ImageDemoRow[];
  /** Images per row, in row order (for the grid). */
  images: Image[][];
  seconds: { calibration: number; quantize: number; sampling: number; total: number };
  machine: MachineInfo;
}

export interface ImageDemoHooks {
  info(text: string): void;
  step(done: number, total: number, label: string, final: boolean): void;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function meanOver(a: Image[], b: Image[], metric: (x: Image, y: Image) => number): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += metric(a[i], b[i]);
  return sum / a.length;
}

export async function runImageDemo(o: ImageDemoOptions, hooks: ImageDemoHooks): Promise<ImageDemoReport> {
  const t0 = performance.now();
  const machineEnd = machineInfoStart();
  const since = (t: number): number => (performance.now() - t) / 1000;
  const { pipe: fp32, label } = await loadPipeline(o.source);
  const labels = o.labels ?? Array.from({ length: Math.min(10, fp32.numClasses) }, (_, i) => i);
  const classifier = o.source.model === undefined ? await loadBuiltinClassifier() : undefined;

  let t = performance.now();
  const calibLabels = Array.from({ length: o.calibImages }, (_, i) => i % fp32.numClasses);
  hooks.info(`calibrating from pipeline runs: ${calibLabels.length} images x ${o.calibSteps} steps (seeds from 1000000)`);
  const calibration: PipelineCalibration = await captureCalibration(fp32, { labels: calibLabels, seed: 1_000_000, steps: o.calibSteps, guidanceScale: o.guidance },
    (done, total) => hooks.step(done, total, 'calibration steps', done === total));
  const calibrationSeconds = since(t);

  const configs: { config: string; method: DemoMethod; scheme: SchemeName | null; quant?: SVDQuantConfigInput }[] = [{ config: 'fp32', method: 'fp32', scheme: null }];
  for (const scheme of o.schemes) {
    configs.push({ config: `${scheme} naive`, method: 'naive', scheme, quant: { scheme, rank: 0, smooth: false, gptq: false, threads: o.threads } });
    configs.push({ config: `${scheme} SVDQuant`, method: 'svdquant', scheme, quant: { scheme, rank: o.rank, threads: o.threads } });
  }

  const rows: ImageDemoRow[] = [];
  const images: Image[][] = [];
  let quantizeSeconds = 0, samplingSeconds = 0;
  let seeds: number[] = [];
  for (const [i, c] of configs.entries()) {
    const pipe = i === 0 ? fp32 : (await loadPipeline(o.source)).pipe;
    let layersQuantized = 0, qs = 0;
    if (c.quant !== undefined) {
      t = performance.now();
      hooks.info(`[${i}/${configs.length - 1}] ${c.config}: quantizing (rank ${c.quant.rank}${c.quant.smooth === false ? ', no smoothing' : ', smoothing'})`);
      layersQuantized = (await quantizeModel(pipe.transformer, c.quant, calibration)).layers.length;
      qs = since(t);
      quantizeSeconds += qs;
    }
    const bytes = modelBytes(pipe.transformer);
    await runNatively(pipe, o.threads);
    t = performance.now();
    const run = () => pipe.generate({ classLabels: labels, seeds: o.seed, numInferenceSteps: o.steps, guidanceScale: o.guidance });
    const first = await run();
    seeds = [...first.seeds];
    const times: number[] = [];
    for (let r = 0; r < o.reps; r++) times.push((await run()).timings.totalMs);
    samplingSeconds += since(t);
    const rowImages = resultImages(first.decoded);
    images.push(rowImages);
    let accuracy: number | null = null;
    if (classifier !== undefined) {
      const predicted = await classifier.predict(unitToSigned(first.images));
      accuracy = predicted.filter((p, k) => p === labels[k]).length / labels.length;
    }
    const fp32Row = rows[0];
    const samplingMs = times.length > 0 ? median(times) : first.timings.totalMs;
    rows.push({
      config: c.config, method: c.method, scheme: c.scheme,
      rank: c.quant === undefined ? 0 : (c.quant.rank as number), smooth: c.method === 'svdquant',
      psnrDb: i === 0 ? Infinity : meanOver(rowImages, images[0], (a, b) => psnr(a, b)),
      ssim: i === 0 ? 1 : meanOver(rowImages, images[0], (a, b) => ssim(a, b)),
      accuracy, samplingMs, speedup: fp32Row === undefined ? 1 : fp32Row.samplingMs / samplingMs,
      modelBytes: bytes, ratioToFp32: fp32Row === undefined ? 1 : bytes / fp32Row.modelBytes, quantizeSeconds: qs, layersQuantized,
    });
    hooks.step(i + 1, configs.length, `${c.config} sampled`, true);
  }
  return {
    model: label, labels, classNames: labels.map((id) => fp32.id2label?.[String(id)] ?? String(id)), seeds, steps: o.steps, guidance: o.guidance, rank: o.rank,
    calibration: {
      images: calibLabels.length, steps: o.calibSteps, modelCalls: calibration.count,
      timestepMin: Math.min(...calibration.timesteps), timestepMax: Math.max(...calibration.timesteps),
    },
    rows, images,
    seconds: { calibration: calibrationSeconds, quantize: quantizeSeconds, sampling: samplingSeconds, total: since(t0) },
    machine: machineEnd(),
  };
}
