/**
 * `svdquant bench`, run as a user would: node dist/cli/main.js (the test runner builds dist/ with
 * `tsc -p tsconfig.build.json` first). The measuring runs use the smallest settings that still go
 * through every path: one 256x256 shape, M 1 and 16, one thread, one timed run.
 */
import t, { type Test } from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseXml } from './support/xml-check.js';
import { assertOneLineError, requireBuiltCli, svdquant as run, type CliResult } from './support/cli.js';

// No peak history from the user's cache: the runs here would be flagged against it, and must not add to it.
const svdquant = (...args: string[]): Promise<CliResult> => run(args, { env: { ...process.env, SVDQUANT_BENCH_HISTORY: 'off' } });
t.before(requireBuiltCli);
const SMALL = ['--quick', '--reps', '1', '--m', '1,16', '--shapes', '256x256', '--threads', '1'];


/** Exit code 0; stderr shown as a comment when not (it can be long). */
function assertOk(t: Test, result: CliResult): void {
  if (result.code !== 0) t.comment(result.stderr);
  t.equal(result.code, 0, 'exit code 0');
}


const KERNEL_FIELDS = ['kind', 'kernel', 'scheme', 'isa', 'M', 'K', 'N', 'rank', 'lowRank', 'threads', 'ms', 'msAll', 'gops', 'peakFraction', 'peakOf', 'bytes'];

t.test('bench: tables on stdout, progress on stderr, JSON Lines, Markdown and SVG files', async (t) => {
  const dir = t.testdir();
  const json = join(dir, 'bench.jsonl');
  const md = join(dir, 'bench.md');
  const svg = join(dir, 'bench.svg');
  const result = await svdquant('bench', ...SMALL, '--out-json', json, '--out-markdown', md, '--plot', svg, '--verbose');
  assertOk(t, result);

  // stdout: the aligned tables. Figures may carry a '!' (flagged: this machine is shared).
  const out = result.stdout;
  t.match(out, /^svdquant bench: kernels on (portable|avx2|avx512) \(detected \w+, [^)]*\); threads 1; medians of 1 interleaved run after warm-up\n/);
  t.match(out, /\nMachine peaks \(measured in this run, at its start and end\)\n {2}ISA +THREADS +PHASE +FP32 FMA +INT8 DOT +(?:AMX INT8 +)?DRAM READ +FLAGS\n {2}\w+ +1 +start +[\d.]+ GFLOP\/s!? +[\d.]+ GOP\/s!? +(?:[\d.]+ GOP\/s!? +)?[\d.]+ GB\/s!?.*\n {2}\w+ +1 +end +[\d.]+ GFLOP\/s/);
  t.match(out, /\n {2}KERNEL +SCHEME +M +K +N +RANK +LOW-RANK +THREADS +TIME +THROUGHPUT +OF PEAK +VS FP32 +VS RANK 0 +WEIGHTS \(M=1\) +OF DRAM +SIZE\/BF16 +FLAGS\n/);
  t.match(out, /\n {2}gemm_f32 +f32 +16 +256 +256 +0 +none +1 +[\d.]+ ms!? +[\d.]+ GOP\/s!? +[\d.]+%!?/);
  t.match(out, /\n {2}svdquant_layer +w4a4 +1 +256 +256 +32 +fused +1 +[\d.]+ ms!? +[\d.]+ GOP\/s!? +[\d.]+%!? +[\d.]+x +[+-][\d.]+%!? +[\d.]+ GB\/s!? +[\d.]+%!? +[\d.]+%/);
  t.match(out, /\n {2}svdquant_layer +mxfp4 +16 +256 +256 +0 +none +1 +[\d.]+ ms!? +[\d.]+ GOP\/s!? +[\d.]+%!? +[\d.]+x +[\d.]+%/);
  const kernelRows = out.split('\n').filter((line) => /^ {2}(gemm_f32|svdquant_layer) +\S+ +\d+ +\d+ +\d+ +\d+ +(fused|side|unfused|none) /.test(line));
  t.equal(kernelRows.length, 2 + 2 * 2 * 4, 'fp32 at 2 M, then 2 schemes × 2 M × 4 low-rank settings');
  t.match(out, /\nPublic API beside the kernel/);
  t.match(out, /\n {2}KERNEL +SCHEME +M +K +N +THREADS +KERNEL TIME +API TIME +API\/KERNEL +DROPPED +INTO OUT +FRESH\/FWD +API WEIGHTS \(M=1\) +OF DRAM +FLAGS\n/);
  const apiRows = out.split('\n').filter((line) => /^ {2}svdquant_layer +\S+ +\d+ +\d+ +\d+ +\d+ +[\d.]+ ms/.test(line));
  t.equal(apiRows.length, 2 * 2, 'the API beside the fused kernel for 2 schemes × 2 M (fp32: only at the physical core count)');
  t.match(out, /\nTargets \(issue 17\)\n {2}TARGET +WORST +WHERE +CASES +STATUS\n {2}public API >= 90% of kernel throughput, output disposed +[\d.]+%!? +\w+ M=\d+ 256x256, 1 thread +4 +(met|not met|unreliable)/);

  // stderr (not a terminal here): plain progress lines, per-variant times with --verbose, the files.
  const err = result.stderr.split('\n').filter((line) => line !== '');
  t.match(err[0], /^bench: kernels on \w+, threads 1: 8 measurements, 1 timed run each$/);
  t.match(err[1], /^bench: \[1\/8\] peaks \(start\), 1 thread: [\d.]+ GFLOP\/s fp32, [\d.]+ GOP\/s int8, [\d.]+ GB\/s DRAM.* \([\d.]+ s\)$/);
  t.ok(err.some((line) => /^bench: \[7\/8\] mxfp4, M=16 K=256 N=256, 1 thread: kernel [\d.]+ ms, [\d.]+ GOP\/s.*; API [\d.]+% of it \(dropped [\d.]+%\).* \([\d.]+ s\)$/.test(line)));
  t.ok(err.some((line) => /^bench: \[8\/8\] peaks \(end\), 1 thread: /.test(line)));
  t.equal(err.filter((line) => /^bench: {3}.*: [\d.]+ ms, [\d.]+ GOP\/s.*; runs: [\d.]+ ms$/.test(line)).length, 18, 'one runs line per kernel variant');
  t.notMatch(result.stderr, /\r|\x1b/, 'no terminal control codes when stderr is not a terminal');
  t.match(result.stderr, `bench: wrote 24 records to ${json}\n`);

  // The JSON Lines file: 2 start peaks... (1 thread: 1), 2 fp32 kernels, 2 × 2 × (4 kernels + 1 API), 1 end peak.
  const records = readFileSync(json, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.equal(records.length, 24);
  t.same(Object.keys(records[0]).slice(0, 8), ['kind', 'isa', 'threads', 'fp32Gflops', 'int8Gops', 'dramGBps', 'amxInt8Gops', 'phase']);
  t.match(records[0], { kind: 'peak', phase: 'start', flags: Array });
  t.match(records[23], { kind: 'peak', phase: 'end', flags: Array });
  const kernels = records.filter((r) => r.kind === 'kernel');
  for (const r of kernels) {
    t.same(Object.keys(r).slice(0, KERNEL_FIELDS.length), KERNEL_FIELDS, `${r.scheme} M=${r.M} ${r.lowRank}`);
    t.ok(typeof r.ms === 'number' && r.ms > 0 && (r.gops as number) > 0 && (r.msAll as number[]).length === 1 && Array.isArray(r.flags));
  }
  const w4a4 = kernels.find((r) => r.scheme === 'w4a4' && r.M === 1 && r.lowRank === 'fused')!;
  t.match(w4a4, { kernel: 'svdquant_layer', K: 256, N: 256, rank: 32, threads: 1, bf16Bytes: Number, weightGBps: Number, dramFraction: Number, speedupVsF32: Number, overheadVsRank0: Number });
  t.equal(kernels.filter((r) => r.kernel === 'gemm_f32').length, 2);
  const apis = records.filter((r) => r.kind === 'api');
  t.equal(apis.length, 4);
  for (const r of apis) {
    t.match(r, { kernel: 'svdquant_layer', rank: 32, lowRank: 'fused', threads: 1, kernelMs: Number, disposeMs: Number, dropMs: Number, outMs: Number, disposeRatio: Number, dropRatio: Number, outRatio: Number, freshPerForward: Number, flags: Array });
    t.equal((r.disposeMsAll as number[]).length, 1);
  }
  t.match(apis.find((r) => r.M === 1), { weightGBps: Number, dramFraction: Number });

  // The Markdown file: the `npm run bench` tables.
  const markdown = readFileSync(md, 'utf8');
  t.match(markdown, /^# svdquant bench\n\nCPU ISA: \w+ .*; threads: 1; medians of 1 interleaved runs after warm-up\n\n## Machine peaks/);
  t.match(markdown, /\n## Public API beside the kernel \(same rounds\)\n/);
  t.match(markdown, /\n## Targets \(issue 17\)\n/);
  t.match(markdown, /\n\| svdquant_layer \| w4a4 \| 1 \| 256 \| 256 \| 32 \| fused \| 1 \| /);

  // The SVG file: well-formed, one line per scheme plus the fp32 GEMM, the peaks.
  const elements = parseXml(readFileSync(svg, 'utf8'));
  t.equal(elements[0].name, 'svg');
  t.equal(elements.filter((e) => e.name === 'polyline').length, 3);
  t.equal(elements.filter((e) => e.name === 'line' && /\bpeak-int8\b/.test(e.attributes.class ?? '')).length, 1);
  t.match(elements.find((e) => e.name === 'title')?.text ?? '', /^svdquant kernels: (portable|avx2|avx512), 1 thread/);
  t.same(readdirSync(dir).sort(), ['bench.jsonl', 'bench.md', 'bench.svg'], 'no temporary files left');
});

t.test('bench --json prints JSON Lines only; --quiet prints nothing on stderr', async (t) => {
  const result = await svdquant('bench', ...SMALL, '--schemes', 'nvfp4', '--m', '4', '--json', '--quiet');
  assertOk(t, result);
  t.equal(result.stderr, '', 'nothing on stderr');
  const records = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.same(records.map((r) => `${r.kind}:${r.scheme ?? ''}:${r.M ?? ''}:${r.lowRank ?? ''}`), [
    'peak:::', 'kernel:f32:4:none', 'kernel:nvfp4:4:fused', 'kernel:nvfp4:4:side', 'kernel:nvfp4:4:unfused', 'kernel:nvfp4:4:none', 'api:nvfp4:4:fused', 'peak:::',
  ]);
  t.notOk('weightGBps' in records[2], 'no weight streaming figures at M > 1');

  const markdown = await svdquant('bench', ...SMALL, '--schemes', 'w8a8', '--m', '2', '--markdown', '-q');
  assertOk(t, markdown);
  t.equal(markdown.stderr, '');
  t.match(markdown.stdout, /^# svdquant bench\n/);
  t.match(markdown.stdout, /\n\| svdquant_layer \| w8a8 \| 2 \| 256 \| 256 \| 0 \| none \| 1 \| /);
});

t.test('bench --suite quality --quick', async (t) => {
  const text = await svdquant('bench', '--suite', 'quality', '--quick', '--threads', '1');
  assertOk(t, text);
  t.match(text.stdout, /^svdquant bench: quality\n\nRelative output error ‖Y_q − Y‖\/‖Y‖, synthetic 256x256 layer, 1024 calibration \+ 1024 evaluation tokens/);
  t.match(text.stdout, /\n {2}SCHEME +METHOD +RANK +REL\. ERROR\n/);
  t.match(text.stdout, /\n {2}mxfp4 +svdquant +32 +[\d.]+%\n/);
  t.match(text.stderr, /^bench: quality on 1 synthetic layer, 1 thread\nbench: \[1\/1\] quality study, synthetic 256x256 layer \([\d.]+ s\)\n$/);

  const json = await svdquant('bench', '--suite', 'quality', '--quick', '--threads', '1', '--json', '--quiet');
  assertOk(t, json);
  t.equal(json.stderr, '');
  const records = json.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.equal(records.length, 22, '2 schemes × 11 methods and ranks');
  t.same(Object.keys(records[0]), ['kind', 'scheme', 'method', 'rank', 'relError', 'layer']);
});

t.test('bad usage: one line on stderr, exit 2, before measuring anything', async (t) => {
  assertOneLineError(t, await svdquant('bench', '--frobnicate'), 2, /^svdquant: bench: Unknown option '--frobnicate'/);
  assertOneLineError(t, await svdquant('bench', '--schemes', 'w4a4,int3'), 2, /bench: --schemes: unknown scheme "int3": expected w4a4, mxfp4, nvfp4, w8a8, w4a16/);
  assertOneLineError(t, await svdquant('bench', '--m', '1,x'), 2, /bench: --m: expected an integer from 1 to \d+, got "x"/);
  assertOneLineError(t, await svdquant('bench', '--m', ''), 2, /bench: --m: expected a comma-separated list/);
  assertOneLineError(t, await svdquant('bench', '--shapes', '256'), 2, /bench: --shapes: expected KxN/);
  assertOneLineError(t, await svdquant('bench', '--reps', '0'), 2, /bench: --reps: expected an integer from 1/);
  assertOneLineError(t, await svdquant('bench', '--threads', '1,0'), 2, /bench: --threads/);
  assertOneLineError(t, await svdquant('bench', '--suite', 'speed'), 2, /bench: --suite: expected kernels or quality, got "speed"/);
  assertOneLineError(t, await svdquant('bench', '--suite', 'quality', '--plot', 'x.svg'), 2, /bench: --plot applies to --suite kernels only/);
  assertOneLineError(t, await svdquant('bench', '--suite', 'quality', '--threads', '1,2'), 2, /bench: --threads: expected an integer/);
  assertOneLineError(t, await svdquant('bench', '--json', '--markdown'), 2, /bench: --json and --markdown/);
  assertOneLineError(t, await svdquant('bench', '--quiet', '--verbose'), 2, /bench: --quiet and --verbose/);
  assertOneLineError(t, await svdquant('bench', '--json=x'), 2, /bench: Option '--json' does not take an argument/);
  assertOneLineError(t, await svdquant('bench', 'kernels'), 2, /bench: unexpected argument "kernels"/);
  assertOneLineError(t, await svdquant('bench', '--plot'), 2, /bench: Option '--plot <value>' argument missing/);
});

t.test('an unusable output file: exit 1 before measuring (no progress line, no file)', async (t) => {
  // "Before measuring" is shown by stderr holding only the error: the progress lines of a started
  // run would precede it. How fast that is, is a figure: bench/fail-fast.ts.
  const dir = t.testdir({ sub: {} });
  assertOneLineError(t, await svdquant('bench', ...SMALL, '--plot', join(dir, 'no', 'such', 'dir', 'x.svg')), 1, /^svdquant: could not write '.*x\.svg': directory '.*dir' does not exist\n$/);
  assertOneLineError(t, await svdquant('bench', ...SMALL, '--out-json', join(dir, 'sub')), 1, /^svdquant: could not write '.*sub': it is a directory: expected a regular file or a new file name\n$/);
  if (process.platform === 'linux') {
    assertOneLineError(t, await svdquant('bench', ...SMALL, '--plot', '/proc/x.svg'), 1, /^svdquant: could not write '\/proc\/x\.svg': '\/proc' is on the kernel's proc pseudo file system/);
  }
  t.same(readdirSync(dir), ['sub'], 'nothing written');
});

t.test('help: the command and the examples in the global help', async (t) => {
  const help = await svdquant('bench', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: svdquant bench \[--suite kernels\|quality\] \[options\]\n/);
  for (const option of ['--quick', '--schemes', '--m', '--shapes', '--threads', '--reps', '--json', '--markdown', '--out-json', '--out-markdown', '--plot', '--quiet', '--verbose']) {
    t.match(help.stdout, new RegExp(`\\n {2}(?:-\\w, )?${option}\\b`), option);
  }
  const global = await svdquant('--help');
  t.equal(global.code, 0);
  t.match(global.stdout, /\n {2}bench +measure the kernels/);
  t.match(global.stdout, /\nExamples:\n(?: {2}svdquant \S.*\n)+/);
  t.match(global.stdout, /\n {2}svdquant bench --quick\n/);
  t.match(global.stdout, /\n {2}svdquant inspect /);
});
