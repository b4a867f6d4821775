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
import { chooseWithinBudget, type SensitivityLayer } from '../../quant/sensitivity.js';
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

Sensitivity-aware precision (off by default):
  --keep-sensitive B      keep the layers whose quantization error is largest per extra byte at higher
                          precision, within B extra bytes (an integer) or B% of the quantized layers' bytes
  --keep-as P             what a kept layer becomes: w8a8 (default; SVDQuant at w8a8) or fp32 (the original
                          tensors, unquantized). A model file cannot be run here, so each layer is ranked by
                          its own held-out output error (4-bit against kept), not by the model's output error
                          as quantize() in the library does (config.sensitivity)

${QUANT_OPTIONS_HELP}`;

export interface QuantizeFileReport {
  input: string;
  output: string;
  calibration: string;
  config: Omit<SVDQuantConfig, 'onProgress'>;
  layers: LayerReport[];
  /** --keep-sensitive: what was kept at higher precision and why, or null. */
  sensitivity: FileSensitivityReport | null;
  skipped: Array<{ name: string; reason: string }>;
  passthroughTensors: number;
  outputBytes: number;
  seconds: number;
}

export interface KeepSensitive {
  /** Extra bytes allowed, or a percentage of the quantized layers' bytes. */
  budget: { bytes: number } | { percent: number };
  keepAs: 'w8a8' | 'fp32';
}

export interface FileSensitivityReport {
  keepAs: KeepSensitive['keepAs'];
  budgetBytes: number;
  usedBytes: number;
  /** Every quantized layer, most error removed per extra byte first; errors are held-out layer errors. */
  layers: SensitivityLayer[];
}

/** --keep-sensitive and --keep-as, validated (null when not asked for). */
export function keepSensitiveOption(v: Record<string, unknown>, scheme: string): KeepSensitive | null {
  const raw = v['keep-sensitive'], as = v['keep-as'];
  if (raw === undefined) {
    if (as !== undefined) throw new UsageError('quantize: --keep-as needs --keep-sensitive BYTES|PERCENT%');
    return null;
  }
  const text = String(raw).trim();
  const m = /^(\d+(?:\.\d+)?)%$/.exec(text);
  let budget: KeepSensitive['budget'];
  if (m !== null && Number(m[1]) <= 100) budget = { percent: Number(m[1]) };
  else if (/^\d+$/.test(text) && Number.isSafeInteger(Number(text))) budget = { bytes: Number(text) };
  else throw new UsageError(`quantize: --keep-sensitive expects extra bytes (an integer >= 0) or a percentage in [0, 100] ending in %, got '${text}'`);
  const keepAs = as === undefined ? 'w8a8' : String(as);
  if (keepAs !== 'w8a8' && keepAs !== 'fp32') throw new UsageError(`quantize: --keep-as expects w8a8 or fp32, got '${keepAs}'`);
  if (keepAs === 'w8a8' && scheme === 'w8a8') throw new UsageError('quantize: --keep-as w8a8 keeps nothing with --scheme w8a8 (use --keep-as fp32)');
  return { budget, keepAs };
}

const entryBytes = (tensors: readonly SafetensorsTensorInput[]): number => tensors.reduce((s, t) => s + t.data.byteLength, 0);

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
      'keep-sensitive': { type: 'string' }, 'keep-as': { type: 'string' },
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
    const keep = keepSensitiveOption(values, config.scheme);
    const progress = new Progress(io, verbosityOf(values), 'quantize');
    const report = await quantizeFile(input, values.calib, output, config, progress, keep);
    progress.end();
    if (values.json === true) {
      io.stdout(JSON.stringify(report, jsonNumbers, 2) + '\n');
    } else {
      io.stdout(formatQuantizeReport(report));
    }
    return 0;
  },
};

async function quantizeFile(input: string, calibPath: string, output: string, config: SVDQuantConfig, progress: Progress,
  keep: KeepSensitive | null = null): Promise<QuantizeFileReport> {
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
      // Per layer: the 4-bit entry, and with --keep-sensitive the higher-precision alternative.
      const done: { name: string; tensorNames: readonly string[]; meta: string; tensors: SafetensorsTensorInput[]; report: LayerReport;
        high?: { meta: string; tensors: SafetensorsTensorInput[]; report: LayerReport }; highBytes: number }[] = [];
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
        const d: (typeof done)[number] = { name: l.name, tensorNames: l.tensorNames, meta: JSON.stringify(entry.meta), tensors: entry.tensors, report: r.report, highBytes: 0 };
        if (keep?.keepAs === 'w8a8') {
          const h = await quantizeLinear(weight, bias, stats, { ...config, scheme: 'w8a8', onProgress: undefined }, l.name);
          const he = quantizedLayerEntry(l.name, h.layer);
          d.high = { meta: JSON.stringify(he.meta), tensors: he.tensors, report: h.report };
          d.highBytes = entryBytes(he.tensors);
        } else if (keep?.keepAs === 'fp32') {
          d.highBytes = st.tensors.filter((t) => l.tensorNames.includes(t.name)).reduce((s, t) => s + t.byteLength, 0);
        }
        done.push(d);
      }
      let sensitivity: FileSensitivityReport | null = null;
      const keptNames = new Set<string>();
      if (keep !== null && done.length > 0) {
        const quantizedBytes = done.reduce((s, d) => s + entryBytes(d.tensors), 0);
        const budgetBytes = 'bytes' in keep.budget ? keep.budget.bytes : Math.floor(quantizedBytes * keep.budget.percent / 100);
        const measured = done.map((d) => ({
          name: d.name, errorQuantized: d.report.errorAfter, errorKept: d.high?.report.errorAfter ?? 0, extraBytes: d.highBytes - entryBytes(d.tensors),
        }));
        const chosen = chooseWithinBudget(measured, { budgetBytes, keep: keep.keepAs === 'fp32' ? 'none' : 'w8a8' });
        for (const l of chosen.layers) if (l.kept) keptNames.add(l.name);
        sensitivity = { keepAs: keep.keepAs, budgetBytes, usedBytes: chosen.usedBytes, layers: chosen.layers };
      }
      const layers: LayerReport[] = [];
      const quantized = new Set<string>();
      for (const d of done) {
        if (keptNames.has(d.name) && d.high === undefined) {
          // Kept in fp32: the original tensors are carried over; the layer is listed as skipped.
          skipped.push({ name: d.name, reason: `--keep-sensitive: ${sensitivity!.layers.find((l) => l.name === d.name)!.reason}` });
          continue;
        }
        const use = keptNames.has(d.name) ? d.high! : d;
        tensors.push(...use.tensors);
        metadata[`layer:${d.name}`] = use.meta;
        layers.push(use.report);
        for (const name of d.tensorNames) quantized.add(name);
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
        input, output, calibration: calibPath, config: plainConfig, layers, sensitivity, skipped, passthroughTensors: passthrough.length,
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
  if (r.sensitivity !== null) {
    const kept = r.sensitivity.layers.filter((l) => l.kept);
    out += `\n--keep-sensitive: ${kept.length} layer(s) kept at ${r.sensitivity.keepAs}, ${r.sensitivity.usedBytes} of ${r.sensitivity.budgetBytes} extra bytes ` +
      '(ranked by held-out layer error removed per extra byte)\n';
    if (kept.length > 0) out += formatTable(kept.map((l) => [`kept ${l.name}:`, l.reason.replace(/^kept at [^:]+: /, '')]), '  ');
  }
  out += `\n${r.layers.length} layers quantized, ${r.skipped.length} skipped, ${r.passthroughTensors} other tensors carried over\n`;
  if (r.skipped.length > 0) out += formatTable(r.skipped.map((s) => [`skipped ${s.name}:`, s.reason]), '  ');
  return out;
}
