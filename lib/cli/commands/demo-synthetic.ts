/**
 * `svdquant demo --synthetic`: SVDQuant on a synthetic diffusion-transformer stack (random weights with
 * activation outliers), every scheme, reference and native paths, one table of layer-level figures.
 * Also `--export` (the stack as files for 'svdquant quantize'). The image demo is ./demo.ts.
 */

import { SCHEME_NAMES, type SchemeName } from '../../formats/schemes.js';
import { cpuIsa } from '../../native.js';
import { parseCommandArgs, UsageError, type CliIo } from '../command.js';
import { exportDemoFiles } from '../demo-files.js';
import { runDemo, type DemoReport, type DemoRow } from '../demo.js';
import { formatBytes, formatMachine, formatTable } from '../format.js';
import { Progress, verbosityOf } from '../progress.js';
import { intOption, listOption } from '../options.js';

const HELP = `Usage: svdquant demo --synthetic [options]

Quantize a synthetic model (a small diffusion-transformer stack: self-attention + MLP blocks with
activation outliers, weights generated from a seed; nothing is downloaded) with SVDQuant in every
scheme, run the reference (fp32 on dequantized operands) and the native CPU paths, and print one
table: output error and PSNR against the fp32 model, milliseconds per forward and speed-up over fp32,
low-rank branch overhead, and memory. Progress goes to stderr, the table to stdout.

Options:
  --schemes LIST   schemes to run (default: w4a4,mxfp4,nvfp4,w4a16,w8a8)
  --rank N         rank of the low-rank branch (default 32)
  --tokens N       tokens of the evaluation input and the timed forwards (default 1024)
  --calib N        calibration tokens (default 512)
  --blocks N       transformer blocks of the built-in model (default 2)
  --dim N          hidden size of the built-in model (default 768; MLP 4x)
  --heads N        attention heads (default 12)
  --seed N         seed of the model's weights (default 42)
  --threads N      native threads (default 0: the physical cores)
  --reps N         timed runs of the model, median reported (default 5; the layers: at least 9, best)
  --export DIR     instead of the benchmark, write the synthetic model and its calibration inputs as
                   DIR/model.safetensors and DIR/calib.safetensors (inputs of 'svdquant quantize')
  --json           print the report as JSON on stdout instead of the table
  -q, --quiet      no progress on stderr
  -v, --verbose    per-layer details on stderr
  -h, --help       show this help
`;

const fmtErr = (v: number): string => (v === 0 ? '0' : v.toFixed(4));
const fmtPsnr = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} dB` : 'inf');
const fmtMs = (v: number): string => `${v.toFixed(1)} ms`;
const fmtX = (v: number): string => `${v.toFixed(2)}x`;
const fmtPct = (v: number): string => `${(100 * v).toFixed(1)}%`;

export function formatDemo(r: DemoReport): string {
  const m = r.model;
  let out = `svdquant demo: built-in model, ${m.blocks} blocks x (attention + MLP), dim ${m.dim}, MLP ${m.dim * m.mlpRatio}, ` +
    `${m.linearLayers} linear layers, ${(m.parameters / 1e6).toFixed(1)} M parameters\n`;
  out += `${r.tokens} tokens, calibration ${r.calibTokens} tokens, rank ${r.rank}, CPU ${cpuIsa().active}, ` +
    `threads ${r.threads === 0 ? 'physical cores' : r.threads}, model: median of ${r.reps} runs, linears: best of ${Math.max(r.reps, 9)}\n\n`;
  const rows: string[][] = [['scheme', 'rel.err ref', 'rel.err native', 'PSNR', 'model', 'vs fp32', 'linears', 'vs fp32', 'low-rank', 'weights', 'vs bf16']];
  for (const row of r.rows) rows.push(formatRow(row));
  out += formatTable(rows);
  out += '\nrel.err: ||Y - Y_fp32|| / ||Y_fp32|| of the model output; PSNR = 20 log10(max|Y_fp32| / RMSE) (native).\n';
  out += 'model: median ms of one forward of the whole model (native path, fused low-rank branch); linears: best ms\n';
  out += 'of its linear layers alone, run in sequence; low-rank: time the branch adds over the same layers at rank 0\n';
  out += '(best of runs alternated with them); weights: bytes of the linear layers (kernel format, low-rank branch\n';
  out += 'included) and their ratio to bf16.\n';
  const s = r.seconds;
  out += `\ntime: ${s.total.toFixed(1)} s in all: building the model ${s.buildModel.toFixed(1)} s, fp32 runs ${s.fp32.toFixed(1)} s, ` +
    `calibration + quantization ${s.quantize.toFixed(1)} s, reference path ${s.reference.toFixed(1)} s, native runs ${s.native.toFixed(1)} s\n`;
  out += formatMachine(r.machine);
  return out;
}

function formatRow(row: DemoRow): string[] {
  return [
    row.scheme, fmtErr(row.relErrorReference), fmtErr(row.relErrorNative), fmtPsnr(row.psnrDb),
    fmtMs(row.modelMs), fmtX(row.speedupModel), fmtMs(row.linearMs), fmtX(row.speedupLinear),
    row.scheme === 'fp32' ? '-' : fmtPct(row.lowRankOverhead), formatBytes(row.weightBytes), fmtX(row.ratioToBf16),
  ];
}

export const syntheticDemo = {
  help: HELP,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('demo', args, {
      schemes: { type: 'string' }, rank: { type: 'string' }, tokens: { type: 'string' }, calib: { type: 'string' },
      blocks: { type: 'string' }, dim: { type: 'string' }, heads: { type: 'string' }, seed: { type: 'string' },
      threads: { type: 'string' }, reps: { type: 'string' }, export: { type: 'string' },
      json: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, verbose: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' }, synthetic: { type: 'boolean' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`demo: unexpected argument '${positionals[0]}' (see 'svdquant demo --help')`);
    if (values.quiet === true && values.verbose === true) throw new UsageError("demo: --quiet and --verbose exclude each other");
    const model = {
      blocks: intOption('demo', 'blocks', values.blocks, 2, 1, 64),
      dim: intOption('demo', 'dim', values.dim, 768, 8, 16384),
      heads: intOption('demo', 'heads', values.heads, 12, 1, 1024),
      seed: intOption('demo', 'seed', values.seed, 42, 0, 2 ** 31),
    };
    if (model.dim % model.heads !== 0) throw new UsageError(`demo: --heads ${model.heads} must divide --dim ${model.dim}`);
    const calibTokens = intOption('demo', 'calib', values.calib, 512, 1, 1 << 20);
    if (typeof values.export === 'string') {
      const files = await exportDemoFiles(values.export, model, calibTokens);
      const result = { ...files, calibrationTokens: calibTokens };
      io.stdout(values.json === true ? JSON.stringify(result, null, 2) + '\n'
        : `wrote the built-in model (${files.layers} linear layers) to '${files.model}'\nand its calibration inputs (${calibTokens} tokens per layer) to '${files.calib}'\n`);
      return 0;
    }
    const schemes = listOption('demo', 'schemes', values.schemes, SCHEME_NAMES, ['w4a4', 'mxfp4', 'nvfp4', 'w4a16', 'w8a8']) as SchemeName[];
    const progress = new Progress(io, verbosityOf(values), 'demo');
    const report = await runDemo({
      schemes,
      rank: intOption('demo', 'rank', values.rank, 32, 0, 4096),
      tokens: intOption('demo', 'tokens', values.tokens, 1024, 1, 1 << 20),
      calibTokens,
      threads: intOption('demo', 'threads', values.threads, 0, 0, 1024),
      reps: intOption('demo', 'reps', values.reps, 5, 1, 1000),
      model,
    }, { info: (t) => progress.info(t), detail: (t) => progress.detail(t) });
    progress.end();
    io.stdout(values.json === true ? JSON.stringify(report, jsonNumbers, 2) + '\n' : formatDemo(report));
    return 0;
  },
};

/** JSON has no Infinity: written as null (PSNR of an exact result). */
export function jsonNumbers(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}
