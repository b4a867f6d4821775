/** `svdquant inspect FILE.safetensors [--json]`: list a safetensors file's tensors and metadata. */

import { openSafetensors, type SafetensorsFile } from '../../io/safetensors.js';
import { FileFormatError } from '../../errors.js';
import { CHECKPOINT_FORMAT, PASSTHROUGH_KEY, parsePassthrough } from '../../runtime/checkpoint.js';
import { UsageError, parseCommandArgs, type CliCommand, type CliIo } from '../command.js';
import { displayText, formatBytes, formatCount, formatTable } from '../format.js';

const HELP = `Usage: svdquant inspect FILE.safetensors [--json]

Print the tensors (name, dtype, shape, parameters, size) and metadata of a safetensors file,
and the totals. The file is validated; only its header is read. For an svdquant checkpoint (written
by 'svdquant quantize' or saveCheckpoint) it also lists every quantized layer: scheme, weight format,
group size, rank, shape, smoothing, bias, and its bytes against the same layer in bf16.

Options:
  --json      print one JSON document instead of a table
  -h, --help  show this help
`;

/** The --json document. */
export interface InspectReport {
  file: string;
  fileBytes: number;
  headerBytes: number;
  metadata: Record<string, string>;
  tensors: Array<{ name: string; dtype: string; shape: number[]; parameters: number; bytes: number; offset: number }>;
  totals: { tensors: number; parameters: number; bytes: number };
  /** Present for svdquant checkpoints. */
  checkpoint?: CheckpointSummary;
}

export interface CheckpointSummary {
  formatVersion: string;
  layers: Array<{
    name: string; kind: string; scheme: string | null; weightFormat: string | null; group: number | null; rank: number | null;
    outFeatures: number | null; inFeatures: number | null; smooth: boolean | null; bias: boolean | null; bytes: number; bf16Bytes: number | null;
  }>;
  quantizedLayers: number;
  passthroughTensors: number;
}

export const inspectCommand: CliCommand = {
  name: 'inspect',
  summary: 'list the tensors and metadata of a .safetensors file (and the layers of a quantized checkpoint)',
  examples: ['svdquant inspect model.safetensors', 'svdquant inspect model.w4a4.safetensors --json'],
  help: HELP,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('inspect', args, {
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length !== 1) {
      throw new UsageError(
        `inspect: expected exactly one FILE.safetensors argument, got ${positionals.length} (see 'svdquant inspect --help')`,
      );
    }
    const file = await openSafetensors(positionals[0]);
    let report: InspectReport;
    try {
      report = buildReport(file);
    } finally {
      await file.close();
    }
    io.stdout(values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
    return 0;
  },
};

function buildReport(file: SafetensorsFile): InspectReport {
  const tensors = file.tensors.map((tensor) => ({
    name: tensor.name,
    dtype: tensor.dtype,
    shape: [...tensor.shape],
    // Exact: numel x dtype size = byteLength, which is bounded by the file size.
    parameters: tensor.shape.reduce((product, dim) => product * dim, 1),
    bytes: tensor.byteLength,
    offset: tensor.byteOffset,
  }));
  const checkpoint = file.metadata.format === CHECKPOINT_FORMAT ? summarizeCheckpoint(file, tensors) : undefined;
  return {
    ...(checkpoint ? { checkpoint } : {}),
    file: file.path,
    fileBytes: file.fileByteLength,
    headerBytes: file.headerByteLength,
    metadata: { ...file.metadata },
    tensors,
    totals: {
      tensors: tensors.length,
      parameters: tensors.reduce((sum, tensor) => sum + tensor.parameters, 0),
      bytes: tensors.reduce((sum, tensor) => sum + tensor.bytes, 0),
    },
  };
}

function summarizeCheckpoint(file: SafetensorsFile, tensors: ReadonlyArray<{ name: string; bytes: number }>): CheckpointSummary {
  const layers: CheckpointSummary['layers'] = [];
  const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const bool = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null);
  for (const [key, text] of Object.entries(file.metadata)) {
    if (!key.startsWith('layer:')) continue;
    const name = key.slice('layer:'.length);
    let meta: Record<string, unknown>;
    try {
      const v: unknown = JSON.parse(text);
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      meta = v as Record<string, unknown>;
    } catch {
      throw new FileFormatError(file.path, `metadata '${key}' is not a JSON object`);
    }
    const prefix = name === '' ? '' : `${name}.`;
    const own = tensors.filter((t) => t.name.startsWith(prefix) && !t.name.slice(prefix.length).includes('.'));
    const n = num(meta.out_features), k = num(meta.in_features);
    layers.push({
      name, kind: str(meta.kind) ?? '?', scheme: str(meta.scheme), weightFormat: str(meta.weight_format), group: num(meta.group), rank: num(meta.rank),
      outFeatures: n, inFeatures: k, smooth: bool(meta.smooth), bias: bool(meta.bias),
      bytes: own.reduce((sum, t) => sum + t.bytes, 0),
      bf16Bytes: n !== null && k !== null ? 2 * n * k + (meta.bias === true ? 2 * n : 0) : null,
    });
  }
  return {
    formatVersion: file.metadata.format_version ?? '?',
    layers,
    quantizedLayers: layers.filter((l) => l.kind === 'svdquant').length,
    passthroughTensors: parsePassthrough(file.path, file.metadata[PASSTHROUGH_KEY]).size,
  };
}

function formatCheckpoint(c: CheckpointSummary): string {
  let out = `\nsvdquant checkpoint (format version ${displayText(c.formatVersion)}): ${c.quantizedLayers} quantized ${c.quantizedLayers === 1 ? 'layer' : 'layers'}, ` +
    `${c.layers.length - c.quantizedLayers} other modules, ${c.passthroughTensors} tensors carried over\n`;
  const rows = [['LAYER', 'KIND', 'SCHEME', 'WEIGHTS', 'GROUP', 'RANK', 'SHAPE (NxK)', 'SMOOTH', 'BIAS', 'SIZE', 'VS BF16']];
  for (const l of c.layers) {
    const q = l.kind === 'svdquant';
    rows.push([
      displayText(l.name), l.kind, q ? l.scheme ?? '?' : '-', q ? l.weightFormat ?? '?' : '-', q && l.group !== null ? String(l.group) : '-',
      q && l.rank !== null ? String(l.rank) : '-', l.outFeatures !== null ? `${l.outFeatures}x${l.inFeatures}` : '-',
      l.smooth === null ? '-' : l.smooth ? 'yes' : 'no', l.bias === null ? '-' : l.bias ? 'yes' : 'no',
      formatBytes(l.bytes), l.bf16Bytes ? `${(l.bytes / l.bf16Bytes).toFixed(3)}x` : '-',
    ]);
  }
  return out + formatTable(rows, '  ');
}

/** Long metadata values (tensor lists, configurations) cut for the table; --json prints them whole. */
function shorten(text: string): string {
  return text.length <= 160 ? text : `${text.slice(0, 120)}... (${text.length} characters; --json prints all)`;
}

function formatReport(report: InspectReport): string {
  let out = `file: ${displayText(report.file)}\n`;
  out += `size: ${formatBytes(report.fileBytes)} (${formatCount(report.fileBytes)} bytes; header ${formatCount(report.headerBytes)} bytes)\n`;

  // A checkpoint's per-layer entries are shown as the layer table at the end.
  const all = Object.entries(report.metadata);
  const metadata = report.checkpoint ? all.filter(([key]) => !key.startsWith('layer:')) : all;
  const hidden = all.length - metadata.length;
  out += `\nmetadata (${all.length} ${all.length === 1 ? 'entry' : 'entries'}${hidden > 0 ? `; the ${hidden} 'layer:' entries are in the layer table below` : ''})\n`;
  if (metadata.length > 0) out += formatTable(metadata.map(([key, value]) => [displayText(key) + ':', shorten(displayText(value))]), '  ');

  out += `\ntensors (${report.tensors.length})\n`;
  if (report.tensors.length > 0) {
    const rows = [['NAME', 'DTYPE', 'SHAPE', 'PARAMETERS', 'BYTES', 'SIZE']];
    for (const tensor of report.tensors) {
      rows.push([
        displayText(tensor.name),
        tensor.dtype,
        `[${tensor.shape.join(', ')}]`,
        formatCount(tensor.parameters),
        formatCount(tensor.bytes),
        formatBytes(tensor.bytes),
      ]);
    }
    out += formatTable(rows, '  ');
  }

  const { totals } = report;
  out += `\ntotal: ${formatCount(totals.tensors)} ${totals.tensors === 1 ? 'tensor' : 'tensors'}, `;
  out += `${formatCount(totals.parameters)} parameters, ${formatBytes(totals.bytes)} (${formatCount(totals.bytes)} bytes)\n`;
  if (report.checkpoint) out += formatCheckpoint(report.checkpoint);
  return out;
}
