/**
 * `svdquant generate`: sample images with a DiT pipeline (class labels) or a PixArt-Σ / SD3 / Flux
 * pipeline (prompt embeddings from a safetensors file), fp32, a quantized checkpoint, or quantized on
 * the fly, into a PNG.
 */

import { saveCheckpoint } from '../../runtime/checkpoint.js';
import { quantizeModel, type CalibrationData } from '../../quant/quantize-model.js';
import type { SVDQuantConfigInput } from '../../quant/config.js';
import type { Module } from '../../graph/module.js';
import { writePng } from '../../image/png.js';
import { parseCommandArgs, UsageError, type CliCommand, type CliIo } from '../command.js';
import { intOption, numberOption } from '../options.js';
import { Progress, verbosityOf } from '../progress.js';
import { QUANT_OPTIONS, QUANT_OPTIONS_HELP, quantConfigFromOptions } from '../quant-options.js';
import {
  captureCalibration, className, embeddingsError, isQuantized, labelledGrid, loadPipeline, loadTextPipeline, modelBytes, parseLabels, readEmbeddingsFile,
  resultImages, runNatively, type TextPipeline,
} from '../pipeline-run.js';
import { capturePipelineCalibration } from '../../pipelines/calibration.js';
import type { Image } from '../../image/image.js';
import type { Tensor } from '../../tensor.js';
import type { Progress as ProgressType } from '../progress.js';
import { formatBytes } from '../format.js';

const HELP = `Usage: svdquant generate [options] [-o OUT.png]

Samples one image per class label with a class-conditional DiT pipeline, or one per prompt with a
text-conditioned PixArt-Σ, SD3 or Flux pipeline from precomputed prompt embeddings (--embeddings),
and writes them as one labelled PNG grid. The model runs fp32, from a quantized checkpoint (its quantized layers on the
native kernels), or quantized here first (--scheme: calibrated from pipeline runs, as 'svdquant demo'
does; --save keeps the quantized checkpoint). Progress goes to stderr; the PNG's path and the timings
to stdout.

Options:
  --model DIR|FILE    a diffusers DiTPipeline folder, or an svdquant checkpoint of the transformer
                      (default: the built-in Fashion-MNIST model)
  --scheduler DIR     for a checkpoint: the pipeline folder (or scheduler folder) to take the scheduler
                      and class names from (default: the built-in model's)
  --labels LIST       class ids or names, comma-separated (default: one per class, at most 10)
  --embeddings FILE   text pipelines (--model a PixArt-Σ, SD3 or Flux pipeline folder): a safetensors
                      file of prompt embeddings: prompt_embeds [B, T, C], and as the pipeline takes
                      them pooled_prompt_embeds [B, P] (SD3, Flux), prompt_attention_mask [B, T]
                      (PixArt), negative_prompt_embeds, negative_pooled_prompt_embeds,
                      negative_prompt_attention_mask (batch 1 or B; PixArt and SD3 with --guidance > 1)
  --height N, --width N  with --embeddings: the image size in pixels (default: the pipeline's)
  --seed N            seed of the first image; image i uses seed N+i (default 0)
  --steps N           sampling steps (default 20)
  --guidance G        classifier-free guidance scale; <= 1 disables it (default 4; with --embeddings
                      the pipeline's: PixArt-Σ 4.5, SD3 7, Flux 3.5 as its guidance input)
  --cols N            images per grid row (default: all in one row)
  --scheme S          quantize the fp32 model first with SVDQuant in scheme S (options below)
  --calib-steps N     with --scheme: steps of the calibration runs (default: --steps)
  --save FILE         with --scheme: write the quantized checkpoint to FILE
  -o, --out FILE      the PNG (default generated.png)
  --json              print a JSON report on stdout
  -q, --quiet         no progress on stderr
  -h, --help          show this help

${QUANT_OPTIONS_HELP.replace(/^Quantizer options:\n/, 'Quantizer options (with --scheme):\n').replace(/^ {2}--(scheme|seed) .*\n/gm, '')}`;

export const generateCommand: CliCommand = {
  name: 'generate',
  summary: 'sample images with a DiT pipeline (fp32, a quantized checkpoint, or --scheme) into a PNG',
  help: HELP,
  examples: [
    'svdquant generate --labels Sneaker,Bag --steps 20 -o shoes.png', 'svdquant generate --scheme w4a4 --save w4a4.safetensors -o w4a4.png',
    'svdquant generate --model ./PixArt-Sigma-XL-2-512-MS --embeddings prompts.safetensors --height 512 --width 512 -o pixart.png',
  ],
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('generate', args, {
      ...QUANT_OPTIONS,
      model: { type: 'string' }, scheduler: { type: 'string' }, labels: { type: 'string' }, steps: { type: 'string' },
      embeddings: { type: 'string' }, height: { type: 'string' }, width: { type: 'string' },
      guidance: { type: 'string' }, cols: { type: 'string' }, 'calib-steps': { type: 'string' }, save: { type: 'string' },
      out: { type: 'string', short: 'o' }, json: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`generate: unexpected argument '${positionals[0]}' (the model is --model; see 'svdquant generate --help')`);
    const quantizing = values.scheme !== undefined;
    const quantOnly = Object.keys(QUANT_OPTIONS).filter((k) => k !== 'threads' && k !== 'seed' && k !== 'scheme' && values[k] !== undefined);
    if (!quantizing && (quantOnly.length > 0 || values['calib-steps'] !== undefined || values.save !== undefined)) {
      throw new UsageError(`generate: --${quantOnly[0] ?? (values.save !== undefined ? 'save' : 'calib-steps')} needs --scheme`);
    }
    const seed = intOption('generate', 'seed', values.seed, 0, 0, 2 ** 52);
    const steps = intOption('generate', 'steps', values.steps, 20, 1, 10000);
    const threads = intOption('generate', 'threads', values.threads, 0, 0, 1024);
    const calibSteps = intOption('generate', 'calib-steps', values['calib-steps'], steps, 1, 10000);
    const out = typeof values.out === 'string' ? values.out : 'generated.png';
    // --seed is the images' seed here; the quantizer keeps its default seed.
    const quantConfig = quantizing ? quantConfigFromOptions('generate', { ...values, seed: undefined }) : undefined;
    const progress = new Progress(io, values.quiet === true ? 'quiet' : verbosityOf(values), 'generate');
    if (values.embeddings !== undefined) {
      if (values.labels !== undefined) throw new UsageError('generate: --labels and --embeddings exclude each other (class labels are for a DiT, embeddings for a text pipeline)');
      return generateFromEmbeddings(io, values as unknown as TextValues, { seed, steps, threads, calibSteps, out, quantConfig, progress });
    }
    for (const option of ['height', 'width'] as const) {
      if (values[option] !== undefined) throw new UsageError(`generate: --${option} applies with --embeddings only (a class-conditional model samples at its own size)`);
    }
    const guidance = numberOption('generate', 'guidance', values.guidance, 4, 0, 100);

    const { pipe, label } = await loadPipeline({ model: values.model as string | undefined, scheduler: values.scheduler as string | undefined });
    const labels = parseLabels('generate', values.labels, pipe);
    const cols = intOption('generate', 'cols', values.cols, labels.length, 1, 10000);
    progress.info(`${label}${isQuantized(pipe.transformer) ? ' (quantized checkpoint)' : ''}: ${labels.length} image(s), ${steps} steps, guidance ${guidance}`);
    let quantizeSeconds = 0;
    if (quantConfig !== undefined) {
      if (isQuantized(pipe.transformer)) throw new UsageError('generate: --scheme quantizes an fp32 model, but --model is already quantized');
      const t0 = performance.now();
      const calibLabels = Array.from({ length: pipe.numClasses }, (_, i) => i);
      progress.info(`calibrating from pipeline runs: ${calibLabels.length} labels x ${calibSteps} steps`);
      const calibration = await captureCalibration(pipe, { labels: calibLabels, seed: 1_000_000, steps: calibSteps, guidanceScale: guidance },
        (done, total) => progress.step(done, total, 'calibration steps', done === total));
      quantizeSeconds = await quantizeAndSave(pipe.transformer, quantConfig, calibration, values.save, progress, t0);
    }
    const bytes = modelBytes(pipe.transformer);
    await runNatively(pipe, threads);

    const result = await pipe.generate({
      classLabels: labels, seeds: seed, numInferenceSteps: steps, guidanceScale: guidance,
      onStep: ({ step, total }) => progress.step(step, total, 'sampling steps', step === total),
    });
    progress.end();
    const names = labels.map((id) => className(pipe, id));
    const rows = Math.ceil(labels.length / cols);
    const cells = resultImages(result.decoded);
    // A last row shorter than --cols is padded with blank cells.
    while (cells.length < rows * cols) cells.push({ ...cells[0], data: new Uint8Array(cells[0].data.length).fill(255) });
    await writePng(out, labelledGrid(cells, rows, cols, undefined, rows === 1 ? names : undefined));
    const report = {
      out, model: label, quantized: isQuantized(pipe.transformer), labels, classNames: names, seeds: result.seeds, steps, guidance,
      modelBytes: bytes, samplingMs: result.timings.totalMs, denoiserMs: result.timings.denoiserMs, quantizeSeconds,
    };
    io.stdout(values.json === true ? JSON.stringify(report, null, 2) + '\n'
      : `wrote ${labels.length} image(s) to ${out} (${names.join(', ')}; seeds ${seed}..${seed + labels.length - 1})\n` +
        `sampling: ${(result.timings.totalMs / 1000).toFixed(2)} s for ${steps} steps; model ${formatBytes(bytes)}${report.quantized ? ' (quantized)' : ''}\n`);
    return 0;
  },
};

interface TextValues {
  embeddings: string;
  model?: string;
  scheduler?: string;
  guidance?: string;
  height?: string;
  width?: string;
  cols?: string;
  save?: string;
  json?: boolean;
}

interface CommonRun {
  seed: number;
  steps: number;
  threads: number;
  calibSteps: number;
  out: string;
  quantConfig: ReturnType<typeof quantConfigFromOptions> | undefined;
  progress: ProgressType;
}

/** generate --embeddings: a PixArt-Σ, SD3 or Flux pipeline over the prompt embeddings of a safetensors file. */
async function generateFromEmbeddings(io: CliIo, values: TextValues, run: CommonRun): Promise<number> {
  const { pipe, label } = await loadTextPipeline({ model: values.model, scheduler: values.scheduler });
  const file = values.embeddings;
  const embeddings = await readEmbeddingsFile(file, pipe);
  const guidance = numberOption('generate', 'guidance', values.guidance, pipe.defaultGuidanceScale, 0, 100);
  const height = values.height === undefined ? undefined : intOption('generate', 'height', values.height, 0, 1, 1 << 16);
  const width = values.width === undefined ? undefined : intOption('generate', 'width', values.width, 0, 1, 1 << 16);
  const prompts = embeddings.promptEmbeds.shape[0];
  const cols = intOption('generate', 'cols', values.cols, prompts, 1, 10000);
  const { progress, steps } = run;
  const generate = (options: object): Promise<{ decoded: Tensor | null; seeds: readonly number[]; height: number; width: number; timings: { totalMs: number; denoiserMs: number } }> =>
    (pipe as TextPipeline & { generate(o: object): Promise<never> }).generate({ ...embeddings, height, width, guidanceScale: guidance, ...options })
      .catch((error: unknown) => { throw embeddingsError(error, file); });
  await (pipe as TextPipeline & { checkOptions(o: object): Promise<void> }).checkOptions({ ...embeddings, height, width, guidanceScale: guidance, seeds: run.seed })
    .catch((error: unknown) => { throw embeddingsError(error, file); });
  progress.info(`${label}${isQuantized(pipe.transformer) ? ' (quantized checkpoint)' : ''}: ${prompts} prompt(s), ${steps} steps, guidance ${guidance}`);
  let quantizeSeconds = 0;
  if (run.quantConfig !== undefined) {
    if (isQuantized(pipe.transformer)) throw new UsageError('generate: --scheme quantizes an fp32 model, but --model is already quantized');
    const t0 = performance.now();
    progress.info(`calibrating from pipeline runs: ${prompts} prompt(s) x ${run.calibSteps} steps`);
    let done = 0;
    const calibration = await capturePipelineCalibration(pipe, {
      prompts: [embeddings as { promptEmbeds: Tensor }], height, width, seeds: 1_000_000, numInferenceSteps: run.calibSteps, guidanceScale: guidance,
      onStep: () => progress.step(++done, run.calibSteps, 'calibration steps', done === run.calibSteps),
    }).catch((error: unknown) => { throw embeddingsError(error, file); });
    quantizeSeconds = await quantizeAndSave(pipe.transformer, run.quantConfig, calibration, values.save, progress, t0);
  }
  const bytes = modelBytes(pipe.transformer);
  await runNatively(pipe, run.threads);
  const result = await generate({
    seeds: run.seed, numInferenceSteps: steps, onStep: ({ step, total }: { step: number; total: number }) => progress.step(step, total, 'sampling steps', step === total),
  });
  progress.end();
  const names = Array.from({ length: prompts }, (_, i) => `prompt ${i}`);
  const rows = Math.ceil(prompts / cols);
  const cells: Image[] = resultImages(result.decoded!);
  while (cells.length < rows * cols) cells.push({ ...cells[0], data: new Uint8Array(cells[0].data.length).fill(255) });
  await writePng(run.out, labelledGrid(cells, rows, cols, undefined, rows === 1 ? names : undefined));
  const report = {
    out: run.out, model: label, pipeline: pipe.name, quantized: isQuantized(pipe.transformer), prompts, seeds: result.seeds, steps, guidance,
    height: result.height, width: result.width, modelBytes: bytes, samplingMs: result.timings.totalMs, denoiserMs: result.timings.denoiserMs, quantizeSeconds,
  };
  io.stdout(values.json === true ? JSON.stringify(report, null, 2) + '\n'
    : `wrote ${prompts} image(s) of ${result.width}x${result.height} to ${run.out} (${pipe.name}; seeds ${run.seed}..${run.seed + prompts - 1})\n` +
      `sampling: ${(result.timings.totalMs / 1000).toFixed(2)} s for ${steps} steps; model ${formatBytes(bytes)}${report.quantized ? ' (quantized)' : ''}\n`);
  return 0;
}

/** Quantizes the denoiser from the captured calibration, saves it when asked; the seconds since t0. */
async function quantizeAndSave(
  transformer: Module, config: SVDQuantConfigInput, calibration: CalibrationData & { count: number },
  save: unknown, progress: ProgressType, t0: number,
): Promise<number> {
  progress.info(`quantizing (${config.scheme}, rank ${config.rank}) from ${calibration.count} captured model calls`);
  const report = await quantizeModel(transformer, config, calibration);
  const seconds = (performance.now() - t0) / 1000;
  progress.info(`${report.layers.length} layers quantized, ${report.skipped.length} kept in fp32 (${seconds.toFixed(1)} s)`);
  if (typeof save === 'string') {
    await saveCheckpoint(transformer, save);
    progress.info(`wrote the quantized checkpoint to ${save}`);
  }
  return seconds;
}
