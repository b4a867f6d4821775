/**
 * `svdquant demo`: the built-in diffusion model sampled in fp32, naive 4-bit and SVDQuant, one labelled
 * grid PNG and one table (image quality against fp32, speed, size). `--synthetic` (and `--export`)
 * run the layer-level benchmark on a synthetic model instead (./demo-synthetic.ts).
 */

import { SCHEME_NAMES, type SchemeName } from '../../formats/schemes.js';
import { writePng } from '../../image/png.js';
import { parseCommandArgs, UsageError, type CliCommand, type CliIo } from '../command.js';
import { formatBytes, formatMachine, formatTable } from '../format.js';
import { runImageDemo, type ImageDemoReport, type ImageDemoRow } from '../image-demo.js';
import { intOption, listOption, numberOption } from '../options.js';
import { labelledGrid, loadPipeline, parseLabels } from '../pipeline-run.js';
import { Progress, verbosityOf } from '../progress.js';
import { syntheticDemo, jsonNumbers } from './demo-synthetic.js';

export { jsonNumbers };

export const DEFAULT_DEMO_OUT = 'svdquant-demo.png';

const HELP = `Usage: svdquant demo [options]

Runs the built-in diffusion model (a class-conditional DiT trained on Fashion-MNIST, shipped with the
package; nothing is downloaded): captures calibration from fp32 pipeline runs, quantizes with each
scheme twice - naive 4-bit (rank 0, no smoothing: plain round-to-nearest) and SVDQuant (smoothing +
low-rank branch) - samples the same labels and seeds as fp32 on the native kernels, writes one grid
PNG (rows = configurations, columns = classes) and prints one table: PSNR and SSIM of the images
against fp32's, the built-in classifier's accuracy, sampling time and speed-up over fp32, model size.
Progress goes to stderr, the table to stdout.

Options:
  --model DIR|FILE   a diffusers DiTPipeline folder or an fp32 checkpoint instead of the built-in model
  --scheduler DIR    for a checkpoint: where the scheduler comes from (default: the built-in model's)
  --schemes LIST     schemes (default w4a4,mxfp4,nvfp4; also w4a16, w8a8)
  --rank N           rank of SVDQuant's low-rank branch (default 32)
  --labels LIST      class ids or names sampled (default: one per class, at most 10)
  --seed N           seed of the first image (default 0)
  --steps N          sampling steps (default 20)
  --guidance G       classifier-free guidance scale (default 4)
  --calib-images N   images of the calibration runs (default 10, one per class)
  --calib-steps N    steps of the calibration runs (default: --steps)
  --reps N           timed sampling runs per row after the first, median reported (default 2)
  --threads N        native threads (default 0: the physical cores)
  -o, --out FILE     the grid PNG (default ${DEFAULT_DEMO_OUT})
  --json             print the report as JSON on stdout instead of the table
  -q, --quiet        no progress on stderr
  --synthetic        the layer-level benchmark on a synthetic model instead ('svdquant demo --synthetic --help')
  -h, --help         show this help
`;

const fmtDb = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} dB` : 'inf');

export function formatImageDemo(r: ImageDemoReport, out: string): string {
  let text = `svdquant demo: ${r.model}, ${r.labels.length} images (${r.classNames.join(', ')}), seeds ${r.seeds[0]}..${r.seeds[r.seeds.length - 1]}, ` +
    `${r.steps} DDIM steps, guidance ${r.guidance}\n`;
  text += `calibration: ${r.calibration.images} images x ${r.calibration.steps} steps = ${r.calibration.modelCalls} captured model calls, ` +
    `timesteps ${r.calibration.timestepMax}..${r.calibration.timestepMin}\n\n`;
  const withAccuracy = r.rows.some((row) => row.accuracy !== null);
  const header = ['config', 'rank', 'PSNR', 'SSIM', ...(withAccuracy ? ['classifier'] : []), 'sampling', 'speed-up', 'model', 'vs fp32'];
  text += formatTable([header, ...r.rows.map((row) => formatRow(row, withAccuracy))]);
  text += '\nPSNR, SSIM: of the 8-bit images against the fp32 images of the same labels and seeds (mean over images).\n';
  if (withAccuracy) text += 'classifier: share of images the built-in classifier assigns to the label they were sampled for.\n';
  text += 'naive: rank 0, no smoothing (plain 4-bit round-to-nearest); SVDQuant: smoothing + low-rank branch.\n';
  text += 'sampling: median ms of a whole sampling run (all images, all steps) on the native kernels; model: bytes of the\n';
  text += 'denoiser\'s parameters (quantized layers packed, the rest fp32).\n';
  const s = r.seconds;
  text += `\ngrid: ${out} (rows: ${r.rows.map((row) => row.config).join(', ')}; columns: the labels)\n`;
  text += `time: ${s.total.toFixed(1)} s in all: calibration ${s.calibration.toFixed(1)} s, quantization ${s.quantize.toFixed(1)} s, sampling ${s.sampling.toFixed(1)} s\n`;
  text += formatMachine(r.machine);
  return text;
}

function formatRow(row: ImageDemoRow, withAccuracy: boolean): string[] {
  return [
    row.config, row.method === 'fp32' ? '-' : String(row.rank), fmtDb(row.psnrDb), row.ssim.toFixed(3),
    ...(withAccuracy ? [row.accuracy === null ? '-' : `${Math.round(row.accuracy * 100)}%`] : []),
    `${row.samplingMs.toFixed(0)} ms`, `${row.speedup.toFixed(2)}x`, formatBytes(row.modelBytes), `${row.ratioToFp32.toFixed(2)}x`,
  ];
}

export const demoCommand: CliCommand = {
  name: 'demo',
  summary: 'sample the built-in model in fp32, naive 4-bit and SVDQuant: one grid PNG, one table',
  help: HELP,
  examples: ['svdquant demo', 'svdquant demo --schemes w4a4,mxfp4,nvfp4 --steps 30 -o demo.png', 'svdquant demo --synthetic --schemes w4a4,mxfp4 --json > demo.json'],
  async run(args: readonly string[], io: CliIo): Promise<number> {
    if (args.includes('--synthetic') || args.includes('--export')) return syntheticDemo.run(args.filter((a) => a !== '--synthetic'), io);
    const { values, positionals } = parseCommandArgs('demo', args, {
      model: { type: 'string' }, scheduler: { type: 'string' }, schemes: { type: 'string' }, rank: { type: 'string' }, labels: { type: 'string' },
      seed: { type: 'string' }, steps: { type: 'string' }, guidance: { type: 'string' }, 'calib-images': { type: 'string' },
      'calib-steps': { type: 'string' }, reps: { type: 'string' }, threads: { type: 'string' }, out: { type: 'string', short: 'o' },
      json: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`demo: unexpected argument '${positionals[0]}' (see 'svdquant demo --help')`);
    const steps = intOption('demo', 'steps', values.steps, 20, 1, 10000);
    const source = { model: values.model as string | undefined, scheduler: values.scheduler as string | undefined };
    const options = {
      source,
      schemes: listOption('demo', 'schemes', values.schemes, SCHEME_NAMES, ['w4a4', 'mxfp4', 'nvfp4']) as SchemeName[],
      rank: intOption('demo', 'rank', values.rank, 32, 1, 4096),
      seed: intOption('demo', 'seed', values.seed, 0, 0, 2 ** 52),
      steps,
      guidance: numberOption('demo', 'guidance', values.guidance, 4, 0, 100),
      calibImages: intOption('demo', 'calib-images', values['calib-images'], 10, 1, 100000),
      calibSteps: intOption('demo', 'calib-steps', values['calib-steps'], steps, 1, 10000),
      reps: intOption('demo', 'reps', values.reps, 2, 0, 1000),
      threads: intOption('demo', 'threads', values.threads, 0, 0, 1024),
      labels: values.labels === undefined ? undefined : parseLabels('demo', values.labels, (await loadPipeline(source)).pipe),
    };
    const out = typeof values.out === 'string' ? values.out : DEFAULT_DEMO_OUT;
    const progress = new Progress(io, verbosityOf(values), 'demo');
    const report = await runImageDemo(options, { info: (t) => progress.info(t), step: (d, n, l, f) => progress.step(d, n, l, f) });
    progress.end();
    const grid = labelledGrid(report.images.flat(), report.rows.length, report.labels.length, report.rows.map((r) => r.config), report.classNames,
      `${report.steps} steps, guidance ${report.guidance}, seeds ${report.seeds[0]}..${report.seeds[report.seeds.length - 1]}`);
    await writePng(out, grid);
    const { images: _images, ...data } = report;
    io.stdout(values.json === true ? JSON.stringify({ ...data, grid: out }, jsonNumbers, 2) + '\n' : formatImageDemo(report, out));
    return 0;
  },
};
