/**
 * `svdquant bench`: the benchmark suites of lib/bench (kernel throughput against this machine's
 * measured peaks, or the quantizer's output error), with tables on stdout, progress on stderr and
 * optional JSON Lines, Markdown and SVG files.
 */

import {
  BenchOptionError,
  DEFAULT_KERNEL_BENCH,
  QUICK_KERNEL_BENCH,
  SCHEMES,
  parseCount,
  parseCountList,
  parseSchemes,
  parseShapes,
  type KernelBenchConfig,
} from '../../bench/options.js';
import { checkOutputFile } from '../../io/output-path.js';
import { UsageError, parseCommandArgs, type CliCommand, type CliIo } from '../command.js';
import { Progress, verbosityOf } from '../progress.js';

const HELP = `Usage: svdquant bench [--suite kernels|quality] [options]

Measure this machine: its peaks (fp32 FMA, int8 dot products, DRAM read), then, per layer shape,
token count M and thread count, the fp32 Linear and the SVDQuant layer of each scheme (low-rank
modes fused, side, unfused with a rank-32 branch, and rank 0), each timed as the kernels alone and
through the public API (the output disposed, dropped, or written into a caller's buffer), all
variants of a cell interleaved run by run (--suite kernels, the default); or the quantizer's
relative output error on synthetic layers and its timings (--suite quality).
Results are aligned tables on stdout, then the targets of issue 17; progress goes to stderr. Each
time is the median of --reps rounds after one warm-up round. Figures a run cannot trust (wide
spread, above a measured peak, a loaded machine, peaks that moved during the run, a negative
overhead, an API faster than its kernel) are marked with ! and their flags. The peaks of each run
are kept in $SVDQUANT_BENCH_HISTORY (default ~/.cache/svdquant/bench-peaks.json; 'off' disables
it) as the machine's usual ones. The full kernel suite takes tens of minutes; --quick, a few.

Options:
  --suite NAME          kernels (default) or quality
  --quick               a small subset: M 1,1024, shape 3072x3072, schemes w4a4,mxfp4
                        (quality: the 256x256 layer only, no quantizer timings)
  --schemes LIST        schemes, comma-separated: ${SCHEMES.join(', ')} (default: all)
  --m LIST              token counts M (default ${DEFAULT_KERNEL_BENCH.ms.join(',')})
  --shapes LIST         layer shapes KxN, input x output features
                        (default ${DEFAULT_KERNEL_BENCH.shapes.map(([k, n]) => `${k}x${n}`).join(',')})
  --threads LIST        thread counts (default: 1 and the physical cores);
                        quality: one count (default: the physical cores)
  --reps N              timed rounds per cell (default ${DEFAULT_KERNEL_BENCH.reps})

Output (stdout carries the results only; files are replaced atomically):
  --json                print the records as JSON Lines (one object per measurement)
                        instead of tables
  --markdown            print Markdown tables instead of aligned tables
  --out-json FILE       also write the records to FILE as JSON Lines
  --out-markdown FILE   also write the Markdown tables to FILE
  --plot FILE.svg       also write an SVG plot: GOP/s against M per scheme and shape (the
                        largest thread count, fused rank-32 branch, with the fp32 GEMM) and the
                        measured peaks; kernels suite only
  -q, --quiet           no progress on stderr
  --verbose             progress with every variant's runs
  -h, --help            show this help

Records (kernels): {kind: 'peak', isa, threads, fp32Gflops, int8Gops, dramGBps, amxInt8Gops,
phase, usual?, flags}, {kind: 'kernel', kernel, scheme, isa, M, K, N, rank, lowRank, threads, ms,
msAll, gops, peakFraction, peakOf, bytes, bf16Bytes?, weightGBps?, dramFraction?, speedupVsF32?, overheadVsRank0?,
flags} and {kind: 'api', kernel, scheme, isa, M, K, N, rank, lowRank, threads, kernelMs,
disposeMs, disposeMsAll, dropMs, dropMsAll, outMs, outMsAll, disposeRatio, dropRatio, outRatio,
freshPerForward, weightGBps?, dramFraction?, flags}; quality: {kind: 'quality', scheme, method,
rank, relError, layer} and {kind: 'quantize-timing', ...}.
Exit codes: 0 done, 1 the benchmark failed, 2 bad usage.
`;

const EXAMPLES = [
  'svdquant bench --quick',
  'svdquant bench --schemes w4a4,nvfp4 --m 1,256,4096 --threads 8 --plot bench.svg',
  'svdquant bench --json > bench.jsonl',
  'svdquant bench --suite quality --quick',
];

type Suite = 'kernels' | 'quality';

interface BenchArgs {
  suite: Suite;
  kernels: KernelBenchConfig;
  qualityThreads?: number;
  quick: boolean;
  stdoutFormat: 'text' | 'json' | 'markdown';
  outJson?: string;
  outMarkdown?: string;
  plot?: string;
}

function usage(message: string): UsageError {
  return new UsageError(`bench: ${message} (see 'svdquant bench --help')`);
}

function parseBenchArgs(values: Record<string, unknown>, positionals: readonly string[]): BenchArgs {
  if (positionals.length > 0) throw usage(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const suite = (values.suite ?? 'kernels') as string;
  if (suite !== 'kernels' && suite !== 'quality') throw usage(`--suite: expected kernels or quality, got ${JSON.stringify(suite)}`);
  if (values.json === true && values.markdown === true) throw usage('--json and --markdown both choose what stdout prints: give one');
  if (values.quiet === true && values.verbose === true) throw usage('--quiet and --verbose contradict each other');
  const quick = values.quick === true;
  const str = (name: string): string | undefined => values[name] as string | undefined;
  const kernels: KernelBenchConfig = {
    ...structuredClone(DEFAULT_KERNEL_BENCH),
    ...(quick ? structuredClone(QUICK_KERNEL_BENCH) : {}),
  };
  let qualityThreads: number | undefined;
  try {
    if (suite === 'quality') {
      for (const name of ['schemes', 'm', 'shapes', 'reps', 'plot']) {
        if (values[name] !== undefined) throw usage(`--${name} applies to --suite kernels only`);
      }
      if (str('threads') !== undefined) qualityThreads = parseCount(str('threads')!, '--threads', 1, 1024);
    } else {
      if (str('schemes') !== undefined) kernels.schemes = parseSchemes(str('schemes')!);
      if (str('m') !== undefined) kernels.ms = parseCountList(str('m')!, '--m');
      if (str('shapes') !== undefined) kernels.shapes = parseShapes(str('shapes')!);
      if (str('threads') !== undefined) kernels.threads = parseCountList(str('threads')!, '--threads', 1, 1024);
      if (str('reps') !== undefined) kernels.reps = parseCount(str('reps')!, '--reps', 1, 100000);
    }
  } catch (error) {
    if (error instanceof BenchOptionError) throw usage(error.message);
    throw error;
  }
  for (const name of ['out-json', 'out-markdown', 'plot']) {
    if (values[name] === '') throw usage(`--${name}: expected a file name`);
  }
  return {
    suite,
    kernels,
    qualityThreads,
    quick,
    stdoutFormat: values.json === true ? 'json' : values.markdown === true ? 'markdown' : 'text',
    outJson: str('out-json'),
    outMarkdown: str('out-markdown'),
    plot: str('plot'),
  };
}

/**
 * Fails early (before minutes of measuring) when an output file cannot be written: its folder is
 * missing, not writable or on a pseudo file system such as /proc, or it is not a regular file.
 */
async function checkWritable(files: ReadonlyArray<string | undefined>): Promise<void> {
  for (const file of files) if (file !== undefined) await checkOutputFile(file);
}

export const benchCommand: CliCommand = {
  name: 'bench',
  summary: "measure the kernels against this machine's peaks, or the quantizer's error",
  help: HELP,
  examples: EXAMPLES,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('bench', args, {
      suite: { type: 'string' },
      quick: { type: 'boolean' },
      schemes: { type: 'string' },
      m: { type: 'string' },
      shapes: { type: 'string' },
      threads: { type: 'string' },
      reps: { type: 'string' },
      json: { type: 'boolean' },
      markdown: { type: 'boolean' },
      'out-json': { type: 'string' },
      'out-markdown': { type: 'string' },
      plot: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    const options = parseBenchArgs(values, positionals);
    await checkWritable([options.outJson, options.outMarkdown, options.plot]);
    const progress = new Progress(io, verbosityOf(values), 'bench');
    return options.suite === 'kernels' ? runKernels(options, io, progress) : runQuality(options, io, progress);
  },
};

/**
 * A progress label that fits on one terminal line next to the bar (a wrapped line could not be
 * redrawn in place); unchanged when stderr is not a terminal.
 */
function fit(io: CliIo, label: string): string {
  const columns = io.stderrIsTTY === true ? process.stderr.columns : undefined;
  if (columns === undefined || columns <= 0) return label;
  const room = Math.max(20, columns - 52);
  return label.length <= room ? label : label.slice(0, room - 1) + '…';
}

/** On a terminal, redraws the progress line every half second so the elapsed time moves. */
function ticker(progress: Progress, io: CliIo): { show(done: number, total: number, label: string): void; stop(): void } {
  let current: [number, number, string] | undefined;
  const timer = io.stderrIsTTY === true ? setInterval(() => current && progress.step(...current, false), 500) : undefined;
  timer?.unref();
  return {
    show(done, total, label) {
      current = [done, total, fit(io, label)];
      progress.step(...current, false);
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      current = undefined;
      progress.end();
    },
  };
}

async function writeOutputs(
  options: BenchArgs,
  progress: Progress,
  records: readonly object[],
  markdown: () => string,
  svg?: () => string,
): Promise<void> {
  const { jsonLines, writeTextAtomic } = await import('../../bench/files.js');
  if (options.outJson !== undefined) {
    await writeTextAtomic(options.outJson, jsonLines(records));
    progress.info(`wrote ${records.length} records to ${options.outJson}`);
  }
  if (options.outMarkdown !== undefined) {
    await writeTextAtomic(options.outMarkdown, markdown());
    progress.info(`wrote the Markdown tables to ${options.outMarkdown}`);
  }
  if (options.plot !== undefined && svg !== undefined) {
    await writeTextAtomic(options.plot, svg());
    progress.info(`wrote the plot to ${options.plot}`);
  }
}

/** ' (flags: a, b)' for a flagged record, else ''. */
const flagged = (flags: readonly string[]): string => (flags.length > 0 ? ` (flags: ${flags.join(', ')})` : '');

async function runKernels(options: BenchArgs, io: CliIo, progress: Progress): Promise<number> {
  // Loaded here, not at the top: other commands should not pay for the benchmark modules.
  const { benchMachine, describeMeasurement, planKernelBench, resolveThreads, runKernelBench } = await import('../../bench/kernels.js');
  const { kernelMarkdown } = await import('../../bench/markdown.js');
  const { formatMs, kernelText } = await import('../../bench/text.js');
  const { kernelPlotSvg } = await import('../../bench/plot-svg.js');

  const machine = benchMachine();
  const config: KernelBenchConfig = { ...options.kernels, threads: resolveThreads(options.kernels.threads, machine) };
  const info = { isa: machine.isa, threads: config.threads, reps: config.reps };
  const total = planKernelBench(config).length;
  progress.info(
    `kernels on ${machine.isa.active}, threads ${config.threads.join(', ')}: ${total} measurements, ` +
      `${config.reps} timed ${config.reps === 1 ? 'run' : 'runs'} each`,
  );
  const tick = ticker(progress, io);
  let records;
  try {
    records = await runKernelBench(
      config,
      {
        onStart: (m) => tick.show(m.index, total, describeMeasurement(m)),
        onRecord: (record, m) => {
          if (record.kind !== 'kernel') return;
          const what = record.kernel === 'gemm_f32' ? 'kernel' : record.rank > 0 ? `rank ${record.rank} ${record.lowRank}` : 'rank 0';
          progress.detail(`${describeMeasurement(m)}, ${what}: ${formatMs(record.ms)}, ${record.gops.toFixed(1)} GOP/s${flagged(record.flags)}; runs: ${record.msAll.map((ms) => formatMs(ms)).join(', ')}`);
        },
        onDone: (m, cell) => {
          const peak = cell.find((r) => r.kind === 'peak');
          const api = cell.find((r) => r.kind === 'api');
          const kernel = cell.find((r) => r.kind === 'kernel');
          let result = '';
          if (peak?.kind === 'peak') {
            result = `${peak.fp32Gflops.toFixed(1)} GFLOP/s fp32, ${peak.int8Gops.toFixed(1)} GOP/s int8, ${peak.dramGBps.toFixed(1)} GB/s DRAM${flagged(peak.flags)}`;
          } else if (kernel?.kind === 'kernel') {
            result = `kernel ${formatMs(kernel.ms)}, ${kernel.gops.toFixed(1)} GOP/s${flagged(kernel.flags)}`;
            if (api?.kind === 'api') result += `; API ${(100 * api.disposeRatio).toFixed(1)}% of it (dropped ${(100 * api.dropRatio).toFixed(1)}%)${flagged(api.flags)}`;
          }
          progress.step(m.index + 1, total, fit(io, `${describeMeasurement(m)}: ${result}`), true);
        },
      },
      machine,
    );
  } finally {
    tick.stop();
  }

  if (options.stdoutFormat === 'json') {
    const { jsonLines } = await import('../../bench/files.js');
    io.stdout(jsonLines(records));
  } else if (options.stdoutFormat === 'markdown') {
    io.stdout(kernelMarkdown(info, records));
  } else {
    io.stdout(kernelText(info, records));
  }
  await writeOutputs(
    options,
    progress,
    records,
    () => kernelMarkdown(info, records),
    () => kernelPlotSvg(records, { machine: machine.model }),
  );
  return 0;
}

async function runQuality(options: BenchArgs, io: CliIo, progress: Progress): Promise<number> {
  const { runQualityBench } = await import('../../bench/quality.js');
  const { qualityMarkdown } = await import('../../bench/markdown.js');
  const { qualityText } = await import('../../bench/text.js');
  const { native } = await import('../../native.js');

  const threads = options.qualityThreads ?? native().physicalCores();
  const timings = !options.quick;
  progress.info(`quality on ${options.quick ? '1 synthetic layer' : '2 synthetic layers'}${timings ? ' and quantizeLinear timings' : ''}, ${threads} ${threads === 1 ? 'thread' : 'threads'}`);
  const tick = ticker(progress, io);
  let result;
  let last: { index: number; total: number; label: string } | undefined;
  const finish = (): void => {
    if (last !== undefined) progress.step(last.index + 1, last.total, fit(io, last.label), true);
    last = undefined;
  };
  try {
    result = await runQualityBench(
      { threads, quick: options.quick, timings },
      {
        onStart: (step) => {
          finish();
          last = step;
          tick.show(step.index, step.total, step.label);
        },
      },
    );
    finish();
  } finally {
    tick.stop();
  }

  if (options.stdoutFormat === 'json') {
    const { jsonLines } = await import('../../bench/files.js');
    io.stdout(jsonLines(result.records));
  } else if (options.stdoutFormat === 'markdown') {
    io.stdout(qualityMarkdown(result));
  } else {
    io.stdout(qualityText(result));
  }
  await writeOutputs(options, progress, result.records, () => qualityMarkdown(result));
  return 0;
}
