/** `svdquant inspect FILE.safetensors [--json]`: list a safetensors file's tensors and metadata. */

import { openSafetensors, type SafetensorsFile } from '../../io/safetensors.js';
import { UsageError, parseCommandArgs, type CliCommand, type CliIo } from '../command.js';
import { displayText, formatBytes, formatCount, formatTable } from '../format.js';

const HELP = `Usage: svdquant inspect FILE.safetensors [--json]

Print the tensors (name, dtype, shape, parameters, size) and metadata of a safetensors file,
and the totals. The file is validated; only its header is read.

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
}

export const inspectCommand: CliCommand = {
  name: 'inspect',
  summary: 'list the tensors and metadata of a .safetensors file',
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
  return {
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

function formatReport(report: InspectReport): string {
  let out = `file: ${displayText(report.file)}\n`;
  out += `size: ${formatBytes(report.fileBytes)} (${formatCount(report.fileBytes)} bytes; header ${formatCount(report.headerBytes)} bytes)\n`;

  const metadata = Object.entries(report.metadata);
  out += `\nmetadata (${metadata.length} ${metadata.length === 1 ? 'entry' : 'entries'})\n`;
  if (metadata.length > 0) out += formatTable(metadata.map(([key, value]) => [displayText(key) + ':', displayText(value)]), '  ');

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
  return out;
}
