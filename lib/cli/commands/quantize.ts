/** `svdquant quantize IN --calib CALIB -o OUT`: SVDQuant of a model file's linear layers. */

import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { checkOutputFile } from '../../io/output-path.js';
import { openSafetensors, writeSafetensors } from '../../io/safetensors.js';
import type { SafetensorsTensorInput } from '../../io/safetensors-encode.js';
import { layerDecision, resolveConfig, type SVDQuantConfig } from '../../quant/config.js';
import { LayerStatsCollector } from '../../quant/calibration.js';
import { quantizeLinear, type LayerReport } from '../../quant/quantize-layer.js';
import { CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, PASSTHROUGH_KEY, quantizedLayerEntry } from '../../runtime/checkpoint.js';
import { parseCommandArgs, UsageError, type CliCommand, type CliIo } from '../command.js';
import { formatBytes, formatTable } from '../format.js';
import { linearLayersOf, openCalibration, readCalibrationInputs, readLinear } from '../model-file.js';
import { Progress, verbosityOf } from '../progress.js';
import { QUANT_OPTIONS, QUANT_OPTIONS_HELP, quantConfigFromOptions } from '../quant-options.js';
import { packageVersion } from '../version.js';
import { jsonNumbers } from './demo.js';

const HELP = `Usage: svdquant quantize IN.safetensors --calib CALIB.safetensors -o OUT.safetensors [options]

Quantize the linear layers of a model file with SVDQuant and write an svdquant checkpoint.

IN: a safetensors model; every 2-D F32/F16/BF16 tensor 'P.weight' is a linear layer P with weight
[N, K] (and 'P.bias' its bias). Other tensors are copied to OUT unchanged.
CALIB: calibration inputs, one tensor per linear layer named exactly as the layer (P) holding inputs
[tokens, K] (F32/F16/BF16) the layer saw on representative data. Layers without one are skipped and
reported. OUT: the canonical checkpoint (DESIGN.md §7; 'svdquant inspect OUT' lists its layers), written
atomically; an existing OUT is only replaced with --force.

Options:
  --calib FILE            calibration inputs (required)
  -o, --output FILE       the checkpoint to write (required)
  --force                 replace OUT if it exists
  --json                  print the per-layer report as JSON on stdout
  -q, --quiet             no progress on stderr     -v, --verbose   stages of every layer on stderr
  -h, --help              show this help

${QUANT_OPTIONS_HELP}`;

export interface QuantizeFileReport {
  input: string;
  output: string;
  calibration: string;
  config: Omit<SVDQuantConfig, 'onProgress'>;
  layers: LayerReport[];
  skipped: Array<{ name: string; reason: string }>;
  passthroughTensors: number;
  outputBytes: number;
  seconds: number;
}

export const quantizeCommand: CliCommand = {
  name: 'quantize',
  summary: 'quantize the linear layers of a .safetensors model with SVDQuant',
  help: HELP,
  examples: [
    'svdquant quantize model.safetensors --calib calib.safetensors -o model.w4a4.safetensors',
    "svdquant quantize model.safetensors --calib calib.safetensors --scheme mxfp4 --rank 64 --gptq --exclude '**.proj_out' -o out.safetensors",
  ],
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('quantize', args, {
      ...QUANT_OPTIONS,
      calib: { type: 'string' }, output: { type: 'string', short: 'o' }, force: { type: 'boolean' },
      json: { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, verbose: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(`quantize: expected exactly one IN.safetensors argument, got ${positionals.length} (see 'svdquant quantize --help')`);
    if (typeof values.calib !== 'string') throw new UsageError("quantize: --calib CALIB.safetensors is required (see 'svdquant quantize --help')");
    if (typeof values.output !== 'string') throw new UsageError("quantize: -o OUT.safetensors is required (see 'svdquant quantize --help')");
    if (values.quiet === true && values.verbose === true) throw new UsageError('quantize: --quiet and --verbose exclude each other');
    const input = positionals[0];
    const output = values.output;
    if (resolve(output) === resolve(input) || resolve(output) === resolve(values.calib)) throw new UsageError('quantize: -o must name a new file, not IN or CALIB');
    // The output is checked before any work: a missing folder or a device fails now, not after minutes.
    await checkOutputFile(output);
    if (existsSync(output) && values.force !== true) throw new UsageError(`quantize: '${output}' exists (pass --force to replace it)`);
    const config = resolveConfig(quantConfigFromOptions('quantize', values));
    const progress = new Progress(io, verbosityOf(values), 'quantize');
    const report = await quantizeFile(input, values.calib, output, config, progress);
    progress.end();
    if (values.json === true) {
      io.stdout(JSON.stringify(report, jsonNumbers, 2) + '\n');
    } else {
      io.stdout(formatQuantizeReport(report));
    }
    return 0;
  },
};

async function quantizeFile(input: string, calibPath: string, output: string, config: SVDQuantConfig, progress: Progress): Promise<QuantizeFileReport> {
  const t0 = performance.now();
  const st = await openSafetensors(input);
  try {
    const linears = linearLayersOf(st);
    const calib = await openCalibration(calibPath, linears);
    try {
      const skipped: Array<{ name: string; reason: string }> = [];
      const todo = linears.filter((l) => {
        const d = layerDecision(l.name, l.outFeatures, l.inFeatures, config);
        if (!d.quantize) skipped.push({ name: l.name, reason: d.reason });
        else if (!calib.tokens.has(l.name)) skipped.push({ name: l.name, reason: `no calibration inputs in '${calibPath}' (a tensor named '${l.name}')` });
        else return true;
        return false;
      });
      // A rank above min(N, K) cannot be represented: refused rather than clipped (which made small
      // layers larger than bf16 without a word).
      for (const l of todo) {
        const maxRank = Math.min(l.outFeatures, l.inFeatures);
        if (config.rank > maxRank) {
          throw new UsageError(`quantize: --rank ${config.rank} is above min(N, K) = ${maxRank} of layer '${l.name}' (${l.outFeatures}x${l.inFeatures}): give --rank ${maxRank} or less, or skip small layers with --min-dim or --exclude`);
        }
      }
      progress.info(`${linears.length} linear layers in '${input}': quantizing ${todo.length} with ${config.scheme}, rank ${config.rank}, ${config.gptq === false ? 'RTN' : 'GPTQ'}${config.searchAlpha ? ', alpha search' : ''}; ${skipped.length} skipped`);
      const tensors: SafetensorsTensorInput[] = [];
      const metadata: Record<string, string> = {
        format: CHECKPOINT_FORMAT, format_version: CHECKPOINT_FORMAT_VERSION, producer: `svdquant ${packageVersion()}`,
      };
      const layers: LayerReport[] = [];
      const quantized = new Set<string>();
      for (const [i, l] of todo.entries()) {
        const { weight, bias } = await readLinear(st, l);
        const stats = LayerStatsCollector.forConfig(l.inFeatures, config, l.name);
        await stats.observeAsync(await readCalibrationInputs(calib.file, l));
        await stats.flush();
        const cfg: SVDQuantConfig = {
          ...config,
          onProgress: (e) => {
            progress.step(i + (e.stage === 'done' ? 1 : 0), todo.length, `${l.name} ${e.stage}`, e.stage === 'done');
            if (e.stage !== 'done') progress.detail(`${l.name}: ${e.stage}`);
          },
        };
        const r = await quantizeLinear(weight, bias, stats, cfg, l.name, { index: i, total: todo.length });
        const entry = quantizedLayerEntry(l.name, r.layer);
        tensors.push(...entry.tensors);
        metadata[`layer:${l.name}`] = JSON.stringify(entry.meta);
        layers.push(r.report);
        for (const name of l.tensorNames) quantized.add(name);
      }
      const passthrough: string[] = [];
      for (const t of st.tensors) {
        if (quantized.has(t.name)) continue;
        const data = await st.readTensor(t.name);
        tensors.push({ name: t.name, dtype: data.dtype, shape: data.shape, data: data.data });
        passthrough.push(t.name);
      }
      metadata[PASSTHROUGH_KEY] = JSON.stringify(passthrough);
      const { onProgress: _p, ...plainConfig } = config;
      metadata.quantize_config = JSON.stringify(plainConfig);
      progress.info(`writing '${output}' (${layers.length} quantized layers, ${passthrough.length} tensors carried over)`);
      await writeSafetensors(output, tensors, metadata);
      const outputBytes = (await stat(output)).size;
      return {
        input, output, calibration: calibPath, config: plainConfig, layers, skipped, passthroughTensors: passthrough.length,
        outputBytes, seconds: (performance.now() - t0) / 1000,
      };
    } finally {
      await calib.file.close();
    }
  } finally {
    await st.close();
  }
}

export function formatQuantizeReport(r: QuantizeFileReport): string {
  const c = r.config;
  let out = `quantized '${r.input}' -> '${r.output}' (${formatBytes(r.outputBytes)}) in ${r.seconds.toFixed(1)} s\n`;
  out += `scheme ${c.scheme}, rank ${c.rank}, smoothing ${c.smooth ? (c.searchAlpha ? 'alpha searched' : `alpha ${c.smoothAlpha}`) : 'off'}, residual ${c.gptq === false ? 'RTN' : 'GPTQ'}\n\n`;
  if (r.layers.length > 0) {
    const rows = [['LAYER', 'SHAPE (NxK)', 'ALPHA', 'RANK', 'RESIDUAL', 'ERR RTN', 'ERR SVDQUANT', 'IN-SAMPLE', 'TOKENS', 'TIME']];
    for (const l of r.layers) {
      rows.push([l.name, `${l.outFeatures}x${l.inFeatures}`, l.alpha === null ? '-' : String(l.alpha), String(l.rank),
        l.gptq?.fallback === true ? 'rtn (gptq worse)' : l.residual,
        l.errorBefore.toFixed(4), l.errorAfter.toFixed(4), l.inSample.errorAfter.toFixed(4),
        `${l.calibrationTokens.fit}+${l.calibrationTokens.score}`, `${l.seconds.toFixed(2)} s`]);
    }
    out += formatTable(rows);
    const heldOut = r.layers.every((l) => l.heldOut);
    out += `ERR: relative output error ||Y_q - Y|| / ||Y|| on ${heldOut ? 'held-out calibration tokens (never used for the statistics)' : 'the calibration tokens'},\n`;
    out += 'of plain round-to-nearest (no smoothing, no low-rank branch) and of the SVDQuant layer, both in the deployed\n';
    out += 'scheme; IN-SAMPLE: the SVDQuant layer on the tokens the statistics came from; TOKENS: fit + held out.\n';
  }
  const warnings = r.layers.flatMap((l) => l.warnings);
  if (warnings.length > 0) out += `\nwarnings:\n${warnings.map((w) => `  ${w}`).join('\n')}\n`;
  out += `\n${r.layers.length} layers quantized, ${r.skipped.length} skipped, ${r.passthroughTensors} other tensors carried over\n`;
  if (r.skipped.length > 0) out += formatTable(r.skipped.map((s) => [`skipped ${s.name}:`, s.reason]), '  ');
  return out;
}
