/**
 * `svdquant calibrate` on a DiT pipeline (the built-in model by default): the layers' inputs come
 * from pipeline runs (every sampling step, CFG batches included), and besides each cell's layer
 * output error, each cell is scored on images (Quark's ref_image idea): the whole denoiser quantized
 * with the cell's configuration samples the evaluation labels and seeds natively, and its 8-bit
 * images are compared with the fp32 pipeline's by PSNR and SSIM.
 */
import { Linear } from '../graph/layers.js';
import { psnr, ssim } from '../image/metrics.js';
import type { Image } from '../image/image.js';
import type { DiTPipeline } from '../pipelines/dit-pipeline.js';
import type { PipelineCalibration } from '../pipelines/calibration.js';
import { GaussianRandom } from '../pipelines/random.js';
import { presetExclusion, resolvePreset } from '../quant/presets.js';
import { quantizeModel } from '../quant/quantize-model.js';
import { Tensor } from '../tensor.js';
import type { CellResult } from './calibrate.js';
import type { CalibratedLayer } from './demo-files.js';
import { loadPipeline, resultImages, runNatively, type PipelineSource } from './pipeline-run.js';

/**
 * The denoiser's quantizable Linear layers (its architecture preset's exclusions left out) with their
 * inputs over the captured calibration: at most `maxTokens` rows each, evenly strided over the calls,
 * then shuffled (seeded) so that a held-out split samples every timestep.
 */
export async function pipelineCalibratedLayers(pipe: DiTPipeline, calibration: PipelineCalibration, maxTokens: number, seed: number): Promise<{ layers: CalibratedLayer[]; excluded: { name: string; reason: string }[] }> {
  const model = pipe.transformer;
  const preset = resolvePreset('auto', model);
  const excluded: { name: string; reason: string }[] = [];
  const targets: [string, Linear][] = [];
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof Linear)) continue;
    const rule = preset === undefined ? undefined : presetExclusion(preset.preset, name);
    if (rule !== undefined) excluded.push({ name, reason: `preset '${preset!.name}': ${rule.reason}` });
    else targets.push([name, m]);
  }
  const rows = new Map<string, Float32Array[]>();
  const handles = targets.map(([name, layer]) => {
    let stride = 0, seen = 0;
    return layer.registerForwardHook((_m, inputs) => {
      const x = (inputs[0] as Tensor).to('f32');
      const k = layer.inFeatures;
      const count = x.numel / k;
      if (stride === 0) stride = Math.max(1, Math.floor((count * calibration.count) / maxTokens));
      const list = rows.get(name) ?? [];
      for (let r = 0; r < count; r++, seen++) {
        if (seen % stride === 0 && list.length < maxTokens) list.push(x.data.slice(r * k, (r + 1) * k));
      }
      rows.set(name, list);
    }, { retainsTensors: false });
  });
  try {
    for await (const batch of calibration) await model.call(batch);
  } finally {
    for (const h of handles) h.remove();
  }
  const layers = targets.map(([name, layer]) => {
    const list = shuffled(rows.get(name) ?? [], seed);
    const data = new Float32Array(list.length * layer.inFeatures);
    list.forEach((row, i) => data.set(row, i * layer.inFeatures));
    return { name, weight: layer.weight, bias: layer.bias ?? undefined, inputs: Tensor.fromStorage(data, [list.length, layer.inFeatures], 'f32') };
  });
  return { layers, excluded };
}

/** Fisher–Yates with the pipelines' seeded generator. */
function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  const random = new GaussianRandom(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.nextUint32() % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export interface ImageScoreOptions {
  source: PipelineSource;
  labels: number[];
  seed: number;
  steps: number;
  guidance: number;
  rank: number;
  svdSeed: number;
  threads: number;
}

export interface ImageScore {
  /** Mean PSNR (dB) and SSIM of the cell's 8-bit images against fp32's. */
  psnrDb: number;
  ssim: number;
}

async function sample(pipe: DiTPipeline, o: ImageScoreOptions): Promise<Image[]> {
  const out = await pipe.generate({ classLabels: o.labels, seeds: o.seed, numInferenceSteps: o.steps, guidanceScale: o.guidance });
  return resultImages(out.decoded);
}

/** The fp32 reference images of the evaluation labels and seeds. */
export async function referenceImages(pipe: DiTPipeline, o: ImageScoreOptions): Promise<Image[]> {
  return sample(pipe, o);
}

/** Quantizes a fresh copy of the pipeline's denoiser with the cell's configuration and scores its images against `reference`. */
export async function scoreCellImages(cell: Pick<CellResult, 'scheme' | 'residual' | 'samples' | 'alphaSearch'>, calibration: PipelineCalibration,
  reference: Image[], o: ImageScoreOptions): Promise<ImageScore> {
  const { pipe } = await loadPipeline(o.source);
  await quantizeModel(pipe.transformer, {
    scheme: cell.scheme, rank: o.rank, gptq: cell.residual === 'gptq', searchAlpha: cell.alphaSearch,
    ...(cell.samples === 0 ? {} : { alphaSearchMaxSamples: cell.samples }), seed: o.svdSeed, threads: o.threads,
  }, calibration);
  await runNatively(pipe, o.threads);
  const images = await sample(pipe, o);
  let p = 0, s = 0;
  for (let i = 0; i < images.length; i++) {
    p += psnr(images[i], reference[i]);
    s += ssim(images[i], reference[i]);
  }
  return { psnrDb: p / images.length, ssim: s / images.length };
}
