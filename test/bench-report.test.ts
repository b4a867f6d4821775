/**
 * The benchmark report writers of lib/bench on hand-made records (no measuring): the SVG plot, the
 * Markdown and text tables, the option parsers and the measurement plan.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApiRecord, KernelBenchRecord, KernelRecord, PeakRecord } from '../lib/bench/kernels.js';
import { median, planKernelBench } from '../lib/bench/kernels.js';
import { historyFile, machineKey, recordPeaks, usualPeaks } from '../lib/bench/history.js';
import { kernelMarkdown } from '../lib/bench/markdown.js';
import { Flags, flagLegend, marked, singleRunFlags, spread } from '../lib/bench/reliability.js';
import { issue17Targets } from '../lib/bench/targets.js';
import { BenchOptionError, parseCountList, parseSchemes, parseShapes, type SchemeName } from '../lib/bench/options.js';
import { kernelPlotSvg, logTicks } from '../lib/bench/plot-svg.js';
import { alignedTable, formatMs, kernelText } from '../lib/bench/text.js';
import { parseXml } from './support/xml-check.js';

const ISA = { active: 'avx2' as const, detected: 'avx512' as const, source: 'SVDQUANT_ISA' };

function peak(threads: number): PeakRecord {
  return { kind: 'peak', isa: 'avx2', threads, fp32Gflops: 100 * threads, int8Gops: 400 * threads, dramGBps: 20 * threads, amxInt8Gops: 0, phase: 'start', flags: [] };
}

function kernel(scheme: SchemeName | 'f32', M: number, K: number, N: number, lowRank: KernelRecord['lowRank'], threads: number): KernelRecord {
  const f32 = scheme === 'f32';
  const gops = (f32 ? 20 : 50) * threads * Math.log2(2 * M) * (lowRank === 'fused' ? 1 : 0.9);
  const ms = (2 * M * K * N) / (gops * 1e6);
  const record: KernelRecord = {
    kind: 'kernel', kernel: f32 ? 'gemm_f32' : 'svdquant_layer', scheme, isa: 'avx2', M, K, N, rank: lowRank === 'none' ? 0 : 32,
    lowRank, threads, ms, msAll: [ms, ms * 1.01, ms * 0.99], gops, peakFraction: gops / (400 * threads), peakOf: f32 ? 'fp32' : 'int8', bytes: (K * N) / 2, flags: [],
  };
  if (!f32) {
    record.bf16Bytes = 2 * K * N;
    record.speedupVsF32 = 2.5;
    if (M === 1) {
      record.weightGBps = record.bytes / (ms * 1e6);
      record.dramFraction = record.weightGBps / (20 * threads);
    }
  }
  return record;
}

/** Two shapes × M {1, 16, 256} × threads {1, 2}: fp32, and w4a4 / nvfp4 in three low-rank settings. */
function records(): KernelBenchRecord[] {
  const out: KernelBenchRecord[] = [peak(1), peak(2)];
  const shapes: Array<[number, number]> = [[3072, 3072], [3072, 12288]];
  for (const [K, N] of shapes) for (const M of [1, 16, 256]) for (const threads of [1, 2]) out.push(kernel('f32', M, K, N, 'none', threads));
  for (const scheme of ['w4a4', 'nvfp4'] as const) {
    for (const [K, N] of shapes) {
      for (const M of [256, 1, 16]) {
        for (const lowRank of ['fused', 'side', 'none'] as const) for (const threads of [1, 2]) out.push(kernel(scheme, M, K, N, lowRank, threads));
      }
    }
  }
  return out;
}

t.test('the SVG plot is well-formed and holds one line per scheme and shape', async (t) => {
  const svg = kernelPlotSvg(records(), { machine: 'Test CPU <model> & co' });
  const elements = parseXml(svg);
  t.equal(elements[0].name, 'svg');
  t.equal(elements[0].attributes.xmlns, 'http://www.w3.org/2000/svg');
  t.notMatch(svg, /NaN|Infinity|undefined/);

  const title = elements.find((e) => e.name === 'title');
  t.equal(title?.text, 'svdquant kernels: avx2, 2 threads (Test CPU <model> & co)', 'ISA and thread count in the title, escaped');
  const panels = elements.filter((e) => e.name === 'g' && e.attributes.class === 'panel');
  t.equal(panels.length, 2, 'one panel per shape');
  t.same(elements.filter((e) => e.attributes.class === 'panel-title').map((e) => e.text), ['K = 3072 → N = 3072', 'K = 3072 → N = 12288']);

  const polylines = elements.filter((e) => e.name === 'polyline');
  t.equal(polylines.length, 2 * 3, 'w4a4, nvfp4 and the fp32 GEMM in each panel');
  t.same(
    elements.filter((e) => e.name === 'g' && e.attributes.class === 'series').map((e) => e.attributes['data-series']),
    ['w4a4', 'nvfp4', 'f32', 'w4a4', 'nvfp4', 'f32'],
  );
  for (const line of polylines) {
    const points = line.attributes.points.split(' ').map((p) => p.split(',').map(Number));
    t.equal(points.length, 3, 'three M values');
    t.ok(points[0][0] < points[1][0] && points[1][0] < points[2][0], 'x grows with M (sorted)');
    t.ok(points[0][1] > points[2][1], 'more GOP/s is higher up');
  }
  const circles = elements.filter((e) => e.name === 'circle');
  t.equal(circles.length, 2 * 3 + 1, 'w4a4 circle markers on every point, and one in the legend');

  const int8 = elements.filter((e) => e.name === 'line' && /\bpeak-int8\b/.test(e.attributes.class ?? ''));
  const fp32 = elements.filter((e) => e.name === 'line' && /\bpeak-fp32\b/.test(e.attributes.class ?? ''));
  t.equal(int8.length, 2, 'the int8 peak in each panel');
  t.equal(fp32.length, 2, 'the fp32 peak in each panel');
  t.ok(int8.every((e) => e.attributes['stroke-dasharray'] !== undefined && e.attributes.y1 === e.attributes.y2), 'dashed and horizontal');
  t.ok(Number(int8[0].attributes.y1) < Number(fp32[0].attributes.y1), 'the int8 peak (800) is above the fp32 peak (200)');
  const labels = elements.filter((e) => e.attributes.class === 'peak-label').map((e) => e.text);
  t.same(labels.slice(0, 2), ['int8 peak 800.0 GOP/s', 'fp32 FMA peak 200.0 GFLOP/s']);
  t.ok(elements.some((e) => e.attributes.class === 'axis-label' && e.text === 'M (tokens, log scale)'));
  t.ok(elements.some((e) => e.attributes.class === 'axis-label' && e.text.startsWith('GOP/s')));
  const legend = elements.filter((e) => e.depth > 0 && e.name === 'text').filter((e) => ['w4a4', 'nvfp4', 'fp32 GEMM', 'measured peaks'].includes(e.text));
  t.equal(legend.length, 4, 'legend entries');
});

t.test('plot options: thread count, low-rank mode, a single M, no data', async (t) => {
  const one = parseXml(kernelPlotSvg(records(), { threads: 1 }));
  t.equal(one.find((e) => e.name === 'title')?.text, 'svdquant kernels: avx2, 1 thread');
  t.match(one.find((e) => e.attributes.class === 'peak-label')?.text ?? '', /^int8 peak 400\.0 GOP\/s$/);

  const side = kernelPlotSvg(records(), { lowRank: 'side' });
  t.match(side, /side rank-32 branch/);
  t.equal(parseXml(side).filter((e) => e.name === 'polyline').length, 6);

  const single = records().filter((r) => r.kind === 'peak' || r.M === 16);
  const svg = kernelPlotSvg(single);
  t.notMatch(svg, /NaN|Infinity/);
  t.equal(parseXml(svg).filter((e) => e.name === 'polyline').length, 6);

  const noPeaks = kernelPlotSvg(records().filter((r) => r.kind === 'kernel'));
  t.equal(parseXml(noPeaks).filter((e) => /\bpeak\b/.test(e.attributes.class ?? '')).length, 0, 'no peak lines without peak records');
  t.throws(() => kernelPlotSvg([peak(1)]), /no kernel records/);
  t.throws(() => kernelPlotSvg(records(), { threads: 3 }), /no kernel records to plot at 3 threads/);
});

t.test('log ticks', async (t) => {
  t.same(logTicks(15, 3000), [20, 50, 100, 200, 500, 1000, 2000]);
  t.same(logTicks(1, 1e6), [1, 10, 100, 1000, 10000, 100000, 1000000]);
  t.same(logTicks(3, 9), [3, 4, 5, 6, 7, 8, 9]);
  t.same(logTicks(10, 1000), [10, 20, 50, 100, 200, 500, 1000]);
});

t.test('the XML checker rejects what it should', async (t) => {
  t.throws(() => parseXml('<svg><g></svg>'), /closes <g>/);
  t.throws(() => parseXml('<svg><text>a < b</text></svg>'), /malformed tag|raw '<'/);
  t.throws(() => parseXml('<svg><text>a & b</text></svg>'), /bad entity/);
  t.throws(() => parseXml('<svg></svg><svg></svg>'), /second root/);
  t.throws(() => parseXml('<svg><g>'), /unclosed <g>/);
  t.throws(() => parseXml('<svg x=1></svg>'), /malformed tag/);
  t.equal(parseXml('<?xml version="1.0"?>\n<svg a="1"><g/><text>x &amp; y</text></svg>\n').length, 3);
});

function api(scheme: SchemeName, M: number, threads: number, disposeRatio: number, flags: ApiRecord['flags'] = []): ApiRecord {
  const kernelMs = 1;
  return {
    kind: 'api', kernel: 'svdquant_layer', scheme, isa: 'avx2', M, K: 3072, N: 3072, rank: 32, lowRank: 'fused', threads, kernelMs,
    disposeMs: kernelMs / disposeRatio, disposeMsAll: [kernelMs / disposeRatio], dropMs: 1.25, dropMsAll: [1.25], outMs: 1, outMsAll: [1],
    disposeRatio, dropRatio: 0.8, outRatio: 1, freshPerForward: 0.5, ...(M === 1 ? { weightGBps: 18, dramFraction: 0.9 } : {}), flags,
  };
}

t.test('Markdown and text tables', async (t) => {
  const recs = records().filter((r) => r.kind === 'peak' || (r.K === 3072 && r.N === 3072 && r.M === 1 && r.threads === 1));
  const fused = recs.find((r): r is KernelRecord => r.kind === 'kernel' && r.scheme === 'w4a4' && r.lowRank === 'fused')!;
  fused.overheadVsRank0 = 0.052;
  const side = recs.find((r): r is KernelRecord => r.kind === 'kernel' && r.scheme === 'w4a4' && r.lowRank === 'side')!;
  side.flags = ['spread', 'over-dram'];
  recs.push(api('w4a4', 1, 1, 0.95), api('nvfp4', 1, 1, 0.5, ['spread']));
  const info = { isa: ISA, threads: [1, 2], reps: 5 };
  const md = kernelMarkdown(info, recs);
  t.match(md, /^# svdquant bench\n\nCPU ISA: avx2 \(detected avx512, SVDQUANT_ISA\); threads: 1, 2; medians of 5 interleaved runs after warm-up\n\n## Machine peaks/);
  t.match(md, /\n\| avx2 \| 2 \| start \| 200\.0 \| 800\.0 \|  \| 40\.0 \|  \|  \|\n\n## Kernels\n\n\| kernel \| scheme \|/);
  t.match(md, /\n\| svdquant_layer \| w4a4 \| 1 \| 3072 \| 3072 \| 32 \| fused \| 1 \| [\d.]+ \| 50\.0 \| 12\.5% \| int8 \| 2\.50x \| \+5\.2% \| [\d.]+ \([\d.]+% of DRAM\) \| 0\.250 \|  \|\n/);
  t.match(md, /\n\| svdquant_layer \| w4a4 \| 1 \| 3072 \| 3072 \| 32 \| side \| 1 \| [\d.]+! \| [\d.]+! \| [\d.]+%! \| int8 \| 2\.50x \|  \| [\d.]+ \([\d.]+% of DRAM\)! \| 0\.250 \| spread, over-dram \|\n/, 'a flagged row: values marked, flags listed');
  t.match(md, /\n## Public API beside the kernel \(same rounds\)\n/);
  t.match(md, /\n\| svdquant_layer \| w4a4 \| 1 \| 3072 \| 3072 \| 1 \| 1\.000 \| 1\.053 \| 95\.0% \| 80\.0% \| 100\.0% \| 0\.50 \| 18\.0 \(90\.0% of DRAM\) \|  \|\n/);
  t.match(md, /\n\| svdquant_layer \| nvfp4 \| 1 \| 3072 \| 3072 \| 1 \| 1\.000! \| 2\.000! \| 50\.0%! \| 80\.0%! \| 100\.0%! \| 0\.50 \| 18\.0 \(90\.0% of DRAM\)! \| spread \|\n/);
  t.match(md, /\n## Targets \(issue 17\)\n/);
  t.match(md, /\n\| public API >= 90% of kernel throughput, output disposed \| 50\.0%! \| nvfp4 M=1 3072x3072, 1 thread \| 2 \| unreliable \(spread\) \|\n/);
  t.match(md, /\nUnreliable figures are marked with ! \(flags column\):\n\n- `spread`: the repetitions disagree/);
  t.match(md, /\n- `over-dram`: above the DRAM bandwidth/);

  const text = kernelText(info, recs);
  const lines = text.split('\n');
  const head = lines.findIndex((line) => /^ {2}KERNEL +SCHEME +M +K +N +RANK/.test(line));
  t.ok(head > 0, 'a kernel table header');
  const rows = lines.slice(head + 1, lines.findIndex((line, i) => i > head && line === '')).filter((line) => line.startsWith('  svdquant_layer') || line.startsWith('  gemm_f32'));
  t.equal(rows.length, 1 + 2 * 3);
  const end = (line: string, word: string): number => line.indexOf(word) + word.length;
  const timeEnd = end(lines[head], 'TIME');
  for (const row of rows) {
    t.match(row, / ms!? +[\d.]+ GOP\/s!? +[\d.]+%!?/, 'units on the numbers');
    t.equal(row.indexOf(' ms') + 3 + (row.includes(' ms!') ? 1 : 0), timeEnd, 'times right-aligned under TIME');
  }
  t.match(text, /\n {2}svdquant_layer +w4a4 +1 +3072 +3072 +32 +side +1 +[\d.]+ ms! .* spread,over-dram\n/);
  t.match(text, /\n {2}svdquant_layer +w4a4 +1 +3072 +3072 +32 +fused .* \+5\.2% /);
  t.match(text, /\n {2}avx2 +2 +start +200\.0 GFLOP\/s +800\.0 GOP\/s +40\.0 GB\/s\n/);
  t.match(text, /\nPublic API beside the kernel/);
  t.match(text, /\n {2}svdquant_layer +nvfp4 +1 +3072 +3072 +1 +1\.000 ms! +2\.000 ms! +50\.0%! +80\.0%! +100\.0%! +0\.50 +18\.0 GB\/s! +90\.0%! +spread\n/);
  t.match(text, /\nTargets \(issue 17\)\n/);
  t.match(text, /\nUnreliable figures are marked with ! \(FLAGS column\):\n {2}spread: /);

  t.equal(alignedTable([{ title: 'A', align: 'left' }, { title: 'NUM', align: 'right' }], [['xx', '1'], ['y', '100']]), '  A   NUM\n  xx    1\n  y   100\n');
  t.same([formatMs(0.004123), formatMs(0.242), formatMs(28.3771), formatMs(1234.56)], ['0.00412 ms', '0.242 ms', '28.38 ms', '1234.6 ms']);
});

t.test('reliability: spread, flags, marks, legend', async (t) => {
  t.equal(spread([1, 1]), 0, 'too few runs to judge');
  t.equal(spread([10, 10, 10, 10, 10]), 0);
  t.ok(Math.abs(spread([8, 9, 10, 11, 12]) - 0.2) < 1e-12, '(q3 − q1) / median = (11 − 9) / 10');
  t.ok(spread([10, 10.1, 10, 9.9, 40]) < 0.15, 'one outlier does not make a spread');
  t.same(new Flags().add('over-peak').spread([8, 9, 10, 11, 12]).add('spread').list(), ['spread', 'over-peak'], 'fixed order, no duplicates');
  t.same(new Flags().spread([10, 10, 10], [1, 1.01, 0.99]).list(), []);
  t.equal(marked('12.5%', ['spread']), '12.5%!');
  t.equal(marked('12.5%', []), '12.5%');
  t.equal(marked('', ['spread']), '', 'an empty cell stays empty');
  t.same(flagLegend([{ flags: ['negative-overhead'] }, { flags: [] }, {}]).map(([f]) => f), ['negative-overhead']);
});

t.test('targets: worst case, met, not met, unreliable, no data', async (t) => {
  const fused = (scheme: SchemeName, M: number, ms: number, overhead: number, peakFraction: number, flags: KernelRecord['flags'] = []): KernelRecord => ({
    kind: 'kernel', kernel: 'svdquant_layer', scheme, isa: 'avx512', M, K: 3072, N: 3072, rank: 32, lowRank: 'fused', threads: 2, ms, msAll: [ms],
    gops: 1, peakFraction, peakOf: 'amx-int8', bytes: 1, overheadVsRank0: overhead, flags,
  });
  const recs: KernelBenchRecord[] = [
    api('w4a4', 1, 2, 0.97), api('w4a4', 1024, 2, 0.92), api('mxfp4', 1024, 2, 0.95),
    fused('w4a4', 1024, 10, 0.02, 0.8), fused('w4a4', 4096, 40, 0.025, 0.76),
    fused('mxfp4', 1024, 10.5, 0.06, 0.7, ['spread']), fused('mxfp4', 4096, 41, 0.01, 0.74),
  ];
  const rows = issue17Targets(recs);
  const row = (prefix: string) => rows.find((r) => r.target.startsWith(prefix))!;
  t.match(row('public API >= 90% of kernel throughput, output disposed'), { worst: '92.0%', where: 'w4a4 M=1024 3072x3072, 2 threads', cases: 3, status: 'met' });
  t.match(row('public API >= 90% of kernel throughput, output dropped'), { worst: '80.0%', status: 'not met' });
  t.match(row('M = 1 through the public API'), { worst: '90.0%', cases: 1, status: 'met' });
  t.match(row('w4a4: fused rank-32 overhead'), { worst: '2.5%', where: 'w4a4 M=4096 3072x3072, 2 threads', status: 'met' });
  t.match(row('w4a4: fused rank 32 >= 75%'), { worst: '76.0%', status: 'met' });
  t.match(row('mxfp4: fused rank-32 overhead'), { worst: '6.0%', status: 'unreliable', flags: ['spread'] });
  t.match(row('mxfp4: fused rank 32 >= 75%'), { worst: '70.0%', status: 'unreliable' });
  t.match(row('mxfp4 within 3% of w4a4'), { worst: '5.0%', where: 'M=1024 3072x3072, 2 threads', cases: 2, status: 'unreliable' });
  t.match(issue17Targets([api('w4a4', 16, 1, 0.5)]).find((r) => r.target.startsWith('w4a4: fused rank-32')), { status: 'no data', cases: 0 });
});

t.test('peak history: usual peaks from earlier runs, off, unreadable files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'svdq-history-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'sub', 'peaks.json');
  t.equal(historyFile({ SVDQUANT_BENCH_HISTORY: 'off' }), null);
  t.equal(historyFile({ SVDQUANT_BENCH_HISTORY: file }), file);
  t.equal(historyFile({ XDG_CACHE_HOME: dir }), join(dir, 'svdquant', 'bench-peaks.json'));
  const key = machineKey(' Test CPU ', 'avx512', 2);
  t.equal(key, 'Test CPU|avx512|2');
  t.equal(usualPeaks(file, key), undefined, 'no file: no history');
  for (const int8 of [1000, 1800, 1900, 2000, 400]) await recordPeaks(file, [{ key, peak: { fp32Gflops: int8 / 4, int8Gops: int8, dramGBps: 20 } }]);
  const usual = usualPeaks(file, key)!;
  t.equal(usual.int8Gops, 1900, 'the upper quartile of 400, 1000, 1800, 1900, 2000');
  t.equal(usual.dramGBps, 20);
  t.equal(usualPeaks(file, machineKey('Other', 'avx512', 2)), undefined, 'per machine key');
  t.equal(usualPeaks(null, key), undefined, 'history off');
  for (let i = 0; i < 30; i++) await recordPeaks(file, [{ key, peak: { fp32Gflops: 1, int8Gops: 1, dramGBps: 1 } }]);
  t.equal((JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown[]>)[key].length, 20, 'the last 20 runs are kept');
  writeFileSync(file, '{not json');
  t.equal(usualPeaks(file, key), undefined, 'an unreadable file is no history');
  await recordPeaks(file, [{ key, peak: { fp32Gflops: 1, int8Gops: 2, dramGBps: 3 } }]);
  t.same(usualPeaks(file, key), { fp32Gflops: 1, int8Gops: 2, dramGBps: 3 }, 'and is replaced by the next run');
});

t.test('option parsers and the measurement plan', async (t) => {
  t.same(parseSchemes('w4a4,MXFP4,w4a4'), ['w4a4', 'mxfp4']);
  t.throws(() => parseSchemes('w4a4,int3'), new BenchOptionError('--schemes: unknown scheme "int3": expected w4a4, mxfp4, nvfp4, w8a8, w4a16'));
  t.throws(() => parseSchemes(''), BenchOptionError);
  t.same(parseShapes('256x512,3072X12288'), [[256, 512], [3072, 12288]]);
  t.throws(() => parseShapes('256'), /expected KxN/);
  t.throws(() => parseShapes('0x256'), /expected an integer from 1/);
  t.same(parseCountList('1,16,16,4096', '--m'), [1, 16, 4096]);
  for (const bad of ['1,,2', '1.5', '-1', '0', 'a', '1e3']) t.throws(() => parseCountList(bad, '--m'), BenchOptionError, bad);

  const plan = planKernelBench({ threads: [1, 2], schemes: ['w4a4', 'mxfp4'], ms: [1, 16], shapes: [[256, 256]], reps: 1, warmup: 1 });
  // Start peaks per thread count, fp32 cells (2 M × 2 threads), layer cells (2 schemes × 2 M × 2 threads), end peaks.
  t.equal(plan.length, 2 + 4 + 8 + 2);
  t.same(plan.map((m) => m.index), [...plan.keys()]);
  t.ok(plan.every((m) => m.total === plan.length));
  t.same(plan.map((m) => (m.kind === 'peak' ? `peak:${m.phase}` : `${m.scheme}:${m.M}:${m.threads}`)), [
    'peak:start', 'peak:start', 'f32:1:1', 'f32:1:2', 'f32:16:1', 'f32:16:2',
    'w4a4:1:1', 'w4a4:1:2', 'w4a4:16:1', 'w4a4:16:2', 'mxfp4:1:1', 'mxfp4:1:2', 'mxfp4:16:1', 'mxfp4:16:2', 'peak:end', 'peak:end',
  ]);
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5);
});

t.test('a single timed run is flagged when the load average exceeded the CPUs at its start or end', async (t) => {
  t.same(singleRunFlags([0.5, 1.9], 2), []);
  t.same(singleRunFlags([2.5, 1.0], 2), ['loaded-machine']);
  t.same(singleRunFlags([1.0, 3.0], 2), ['loaded-machine']);
  t.match(flagLegend([{ flags: singleRunFlags([9], 2) }])[0][1], /load average/);
});
