/** `svdquant generate`: sample images with a DiT pipeline (fp32, a quantized checkpoint, or quantized on the fly) into a PNG. */

import { saveCheckpoint } from '../../runtime/checkpoint.js';
import { quantizeModel } from '../../quant/quantize-model.js';
import { writePng } from '../../image/png.js';
import { parseCommandArgs, UsageError, type CliCommand, type CliIo } from '../command.js';
import { intOption, numberOption } from '../options.js';
import { Progress, verbosityOf } from '../progress.js';
import { QUANT_OPTIONS, QUANT_OPTIONS_HELP, quantConfigFromOptions } from '../quant-options.js';
import { captureCalibration, className, isQuantized, labelledGrid, loadPipeline, modelBytes, parseLabels, resultImages, runNatively } from '../pipeline-run.js';
import { formatBytes } from '../format.js';

const HELP = `Usage: svdquant generate [options] [-o OUT.png]

Samples one image per class label with a class-conditional DiT pipeline and writes them as one
labelled PNG grid. The model runs fp32, from a quantized checkpoint (its quantized layers on the
native kernels), or quantized here first (--scheme: calibrated from pipeline runs, as 'svdquant demo'
does; --save keeps the quantized checkpoint). Progress goes to stderr; the PNG's path and the timings
to stdout.

Options:
  --model DIR|FILE    a diffusers DiTPipeline folder, or an svdquant checkpoint of the transformer
                      (default: the built-in Fashion-MNIST model)
  --scheduler DIR     for a checkpoint: the pipeline folder (or scheduler folder) to take the scheduler
                      and class names from (default: the built-in model's)
  --labels LIST       class ids or names, comma-separated (default: one per class, at most 10)
  --seed N            seed of the first image; image i uses seed N+i (default 0)
  --steps N           sampling steps (default 20)
  --guidance G        classifier-free guidance scale; <= 1 disables it (default 4)
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
  examples: ['svdquant generate --labels Sneaker,Bag --steps 20 -o shoes.png', 'svdquant generate --scheme w4a4 --save w4a4.safetensors -o w4a4.png'],
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('generate', args, {
      ...QUANT_OPTIONS,
      model: { type: 'string' }, scheduler: { type: 'string' }, labels: { type: 'string' }, steps: { type: 'string' },
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
    const guidance = numberOption('generate', 'guidance', values.guidance, 4, 0, 100);
    const threads = intOption('generate', 'threads', values.threads, 0, 0, 1024);
    const calibSteps = intOption('generate', 'calib-steps', values['calib-steps'], steps, 1, 10000);
    const out = typeof values.out === 'string' ? values.out : 'generated.png';
    // --seed is the images' seed here; the quantizer keeps its default seed.
    const quantConfig = quantizing ? quantConfigFromOptions('generate', { ...values, seed: undefined }) : undefined;
    const progress = new Progress(io, values.quiet === true ? 'quiet' : verbosityOf(values), 'generate');

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
      progress.info(`quantizing (${quantConfig.scheme}, rank ${quantConfig.rank}) from ${calibration.count} captured model calls`);
      const report = await quantizeModel(pipe.transformer, quantConfig, calibration);
      quantizeSeconds = (performance.now() - t0) / 1000;
      progress.info(`${report.layers.length} layers quantized, ${report.skipped.length} kept in fp32 (${quantizeSeconds.toFixed(1)} s)`);
      if (typeof values.save === 'string') {
        await saveCheckpoint(pipe.transformer, values.save);
        progress.info(`wrote the quantized checkpoint to ${values.save}`);
      }
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
