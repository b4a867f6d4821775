/** `svdquant doctor [--json]`: what this machine can run — the CPU engine and the GPU backends. */

import { cpus } from 'node:os';
import { cpuIsa, native, type NativeIsaInfo, type NativeSchedInfo } from '../../native.js';
import { gpuBackends, type GpuBackendReport } from '../../runtime/gpu-backend.js';
import { UsageError, parseCommandArgs, type CliCommand, type CliIo } from '../command.js';
import { displayText, formatBytes, formatTable } from '../format.js';
import { packageVersion } from '../version.js';

const HELP = `Usage: svdquant doctor [--json]

Report what this machine can run: the CPU instruction-set level the kernels use, the default
thread count and the compute threads' scheduler hint, and for each GPU backend (cuda, hip) whether it is available and if not why, the
library path, the targets compiled into it and its devices. Always exits 0 when the report could
be made: a machine without a GPU is not an error.

GPU backend libraries are looked for at $SVDQUANT_CUDA_LIB / $SVDQUANT_HIP_LIB when set, else at
build-gpu/libsvdquant_cuda.so and build-gpu/libsvdquant_hip.so in the package.

Options:
  --json      print one JSON document instead of text
  -h, --help  show this help
`;

/** The --json document. */
export interface DoctorReport {
  version: string;
  node: string;
  platform: string;
  arch: string;
  cpu: {
    model: string;
    logicalCores: number;
    /** Default native thread count (physical cores). */
    threads: number;
    isa: NativeIsaInfo;
    /** The compute threads' scheduler hint (SVDQUANT_SCHED_SLICE_MS). */
    sched: NativeSchedInfo;
  };
  gpu: { cuda: GpuBackendReport; hip: GpuBackendReport };
}

export const doctorCommand: CliCommand = {
  name: 'doctor',
  summary: 'report the CPU engine and the GPU backends this machine can use',
  help: HELP,
  examples: ['svdquant doctor --json'],
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('doctor', args, {
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length !== 0) {
      throw new UsageError(`doctor: expected no arguments, got ${JSON.stringify(positionals[0])} (see 'svdquant doctor --help')`);
    }
    const report = await buildReport();
    io.stdout(values.json === true ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
    return 0;
  },
};

async function buildReport(): Promise<DoctorReport> {
  const cpu = cpus();
  const gpu = await gpuBackends();
  return {
    version: packageVersion(),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    cpu: {
      model: cpu[0]?.model.trim() ?? 'unknown',
      logicalCores: cpu.length,
      threads: native().physicalCores(),
      isa: cpuIsa(),
      sched: { ...native().schedInfo() },
    },
    gpu,
  };
}

function formatGpu(r: GpuBackendReport): string {
  let out = `${r.platform}: ${r.available ? 'available' : 'not available'}\n`;
  const rows: string[][] = [];
  if (!r.available || r.reason !== '') rows.push([r.available ? 'note:' : 'reason:', displayText(r.reason)]);
  rows.push(['library:', `${displayText(r.path)} (${r.source === 'env' ? `from $SVDQUANT_${r.platform.toUpperCase()}_LIB` : 'default'})`]);
  if (r.builtArchs.length > 0) rows.push(['built for:', r.builtArchs.join(', ')]);
  if (r.available || r.devices.length > 0) rows.push(['devices:', String(r.devices.length)]);
  out += formatTable(rows, '  ');
  for (const d of r.devices) {
    out += `  [${d.index}] ${displayText(d.name)} (${displayText(d.arch)}), ${formatBytes(d.totalMemory)} total, ${formatBytes(d.freeMemory)} free, ` +
      `${d.multiprocessors} multiprocessors, driver ${d.driverVersion}, runtime ${d.runtimeVersion}, ` +
      (d.supported ? `matrix path ${d.matrixPath}\n` : `not supported: the library holds no code for ${displayText(d.arch)} (built for ${r.builtArchs.join(', ')})\n`);
  }
  return out;
}

/** One line on the compute threads' scheduler hint and whether this kernel honours it. */
export function describeSched(s: NativeSchedInfo): string {
  if (s.sliceMs === 0) return `no hint (${s.source})`;
  const asked = `compute threads ask for a ${s.sliceMs} ms slice (${s.source})`;
  if (s.threadSliceMs < 0) return `${asked}; not Linux: no effect`;
  if (s.threadSliceMs === 0) return `${asked}; this kernel has no custom slices (Linux < 6.12): no effect`;
  return `${asked}; granted: ${s.threadSliceMs} ms`;
}

function formatReport(r: DoctorReport): string {
  let out = `svdquant ${r.version} (node ${r.node}, ${r.platform}-${r.arch})\n\n`;
  out += 'cpu: available\n';
  const isa = r.cpu.isa;
  out += formatTable([
    ['model:', displayText(r.cpu.model)],
    ['isa:', `${isa.active} (detected: ${isa.detected}; chosen by: ${isa.source})`],
    ['threads:', `${r.cpu.threads} (physical cores; ${r.cpu.logicalCores} logical)`],
    ['scheduler:', describeSched(r.cpu.sched)],
  ], '  ');
  out += '\n' + formatGpu(r.gpu.cuda) + '\n' + formatGpu(r.gpu.hip);
  const any = r.gpu.cuda.available || r.gpu.hip.available;
  out += `\nnative inference 'auto' would use: ${r.gpu.cuda.available ? 'cuda' : r.gpu.hip.available ? 'hip' : 'cpu'}${any ? ' (device 0)' : ''}\n`;
  return out;
}
