/**
 * The peer benchmark (issue 17 item 6): our layers against onnxruntime-node, the engine a Node user
 * would pick instead, in one process, each cell's variants interleaved run by run (ABAB...), with
 * ratios taken within the cell. Not part of the tests or of `npm install`: onnxruntime-node is an
 * optional tool installed on demand into .peer/ (with --ignore-scripts: its install script would
 * download GPU libraries); the ONNX graphs are written from JavaScript (bench/peer/onnx-writer.ts).
 *
 * Per shape (K×N), token count M and thread count:
 *   fp32     our Linear kernel (linearF32, what Linear.forward calls) vs ORT Gemm (MLAS sgemm)
 *   4-bit    our w4a4 layer, fused rank-32 branch and bias, through NativeLowbitLayer.forward, vs ORT
 *            MatMulNBits (bits 4, block 32 and 64, accuracy_level 4) and vs ORT's int8
 *            DynamicQuantizeMatMul; our w8a8 layer vs DynamicQuantizeMatMul
 *   mlp      a D → 4D → D block: our two w4a4 layers and GELU vs ORT MatMulNBits, Gelu, MatMulNBits
 * Outputs are released as each engine allows (ours disposed; ORT's left to the collector). At M = 1
 * every run first reads twice the last-level cache, so both engines stream their weights from DRAM.
 * RATIO = ORT time / our time (above 1: we are faster). Flags as in lib/bench/reliability.ts.
 *
 * Run:  node --import tsx bench/peer-ort.ts [--install] [--quick] [--threads 1,2] [--m 1,16,...]
 *       [--shapes 3072x3072,...] [--reps 5] [--json FILE]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeLowbitLayer, Tensor, quantize, gelu } from '../lib/index.js';
import { native } from '../lib/native.js';
import { lastLevelCacheBytes, randomArray } from '../lib/bench/kernels.js';
import { jsonLines, writeTextAtomic } from '../lib/bench/files.js';
import { Flags, flagLegend, marked, median, type Flag } from '../lib/bench/reliability.js';
import { alignedTable, formatMs } from '../lib/bench/text.js';
import { parseCount, parseCountList, parseShapes, type Shape } from '../lib/bench/options.js';
import { dynamicQuantizeMatMul, gemmF32, matMulNBits, mlpNBits } from './peer/ort-graphs.js';

const ORT_VERSION = '1.31.1';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PEER = join(ROOT, '.peer');

// ---- options -----------------------------------------------------------------------------------

interface Options {
  install: boolean;
  threads: number[];
  ms: number[];
  shapes: Shape[];
  reps: number;
  json?: string;
  mlp: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { install: false, threads: [], ms: [1, 16, 256, 1024], shapes: [[3072, 3072], [3072, 12288]], reps: 5, mlp: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--install') o.install = true;
    else if (a === '--quick') Object.assign(o, { ms: [1, 16, 1024], shapes: [[3072, 3072]], mlp: false });
    else if (a === '--threads') o.threads = parseCountList(value(), a, 1, 1024);
    else if (a === '--m') o.ms = parseCountList(value(), a);
    else if (a === '--shapes') o.shapes = parseShapes(value(), a);
    else if (a === '--reps') o.reps = parseCount(value(), a, 1, 1000);
    else if (a === '--json') o.json = value();
    else if (a === '--no-mlp') o.mlp = false;
    else throw new Error(`unknown option ${a}: expected --install, --quick, --threads LIST, --m LIST, --shapes LIST, --reps N, --json FILE, --no-mlp`);
  }
  return o;
}

// ---- onnxruntime-node, on demand ---------------------------------------------------------------

interface OrtTensor { data: Float32Array }
interface OrtSession { run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>>; release(): Promise<void> }
interface Ort {
  InferenceSession: { create(model: Uint8Array, options: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: string, data: Float32Array, dims: number[]) => unknown;
}

function loadOrt(install: boolean): Ort {
  const dir = join(PEER, 'node_modules', 'onnxruntime-node');
  if (!existsSync(dir)) {
    if (!install) {
      console.error(`onnxruntime-node is not installed in ${PEER}: run with --install (npm install --ignore-scripts onnxruntime-node@${ORT_VERSION} into .peer/)`);
      process.exit(2);
    }
    mkdirSync(PEER, { recursive: true });
    if (!existsSync(join(PEER, 'package.json'))) writeFileSync(join(PEER, 'package.json'), '{ "private": true }\n');
    execFileSync('npm', ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', `onnxruntime-node@${ORT_VERSION}`], { cwd: PEER, stdio: 'inherit' });
  }
  return createRequire(join(PEER, 'package.json'))('onnxruntime-node') as Ort;
}

// ---- timing ------------------------------------------------------------------------------------

type Run = () => Promise<number>;

const timed = (f: () => Promise<unknown>): Run => async () => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};

/** Every variant once per round (after one warm-up round); each variant's times. */
async function interleave(runs: readonly Run[], reps: number, before: () => Promise<void>): Promise<number[][]> {
  for (const r of runs) {
    await before();
    await r();
  }
  const times = runs.map(() => [] as number[]);
  for (let i = 0; i < reps; i++) {
    for (let v = 0; v < runs.length; v++) {
      await before();
      times[v].push(await runs[v]());
    }
  }
  return times;
}

interface PeerRecord {
  kind: 'peer';
  family: 'fp32' | '4-bit' | 'int8' | 'mlp';
  ours: string;
  ort: string;
  M: number;
  K: number;
  N: number;
  threads: number;
  oursMs: number;
  oursMsAll: number[];
  ortMs: number;
  ortMsAll: number[];
  /** ORT time over ours (above 1: ours is faster). */
  ratio: number;
  flags: Flag[];
}


async function svdqLayer(scheme: 'w4a4' | 'w8a8', K: number, N: number, weights: Float32Array): Promise<NativeLowbitLayer> {
  const t = (d: Float32Array, shape: number[]): Tensor<'f32'> => Tensor.fromStorage(d, shape, 'f32');
  return NativeLowbitLayer.create({
    scheme,
    weight: await quantize(t(weights, [N, K]), scheme === 'w4a4' ? 'int4' : 'int8'),
    smooth: t(Float32Array.from(randomArray(K, 0.25, 2), (v) => 1 + Math.abs(v)), [K]),
    lDown: t(randomArray(32 * K, 0.02, 3), [32, K]),
    lUp: t(randomArray(N * 32, 0.02, 4), [N, 32]),
    bias: t(randomArray(N, 0.1, 5), [N]),
  });
}

async function main(): Promise<void> {
  const opt = parseArgs(process.argv.slice(2));
  const ort = loadOrt(opt.install);
  const addon = native();
  const threadsList = opt.threads.length > 0 ? opt.threads : [...new Set([1, addon.physicalCores()])];
  const flush = 2 * lastLevelCacheBytes();
  const records: PeerRecord[] = [];
  const load0 = (await import('node:os')).loadavg()[0];

  const session = (model: Uint8Array, threads: number): Promise<OrtSession> =>
    ort.InferenceSession.create(model, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
  const ortRun = (s: OrtSession, x: Float32Array, M: number, K: number) => () => s.run({ x: new ort.Tensor('float32', x, [M, K]) });

  const record = (family: PeerRecord['family'], ours: string, ortName: string, M: number, K: number, N: number, threads: number, oursMsAll: number[], ortMsAll: number[]): void => {
    const oursMs = median(oursMsAll), ortMs = median(ortMsAll);
    const r: PeerRecord = { kind: 'peer', family, ours, ort: ortName, M, K, N, threads, oursMs, oursMsAll, ortMs, ortMsAll, ratio: ortMs / oursMs, flags: new Flags().spread(oursMsAll, ortMsAll).list() };
    records.push(r);
    console.error(`  ${family} ${ours} vs ${ortName}, M=${M} ${K}x${N}, ${threads} thr: ours ${formatMs(oursMs)}, ORT ${formatMs(ortMs)}, ratio ${r.ratio.toFixed(2)}${r.flags.length ? ` (${r.flags.join(',')})` : ''}`);
  };

  for (const [K, N] of opt.shapes) {
    const weights = randomArray(N * K, 0.05, 1);
    const w4a4 = await svdqLayer('w4a4', K, N, weights);
    const w8a8 = await svdqLayer('w8a8', K, N, weights);
    const linearW = randomArray(N * K, 0.05, 7), linearB = randomArray(N, 0.1, 8);
    const packed = await addon.packF32Weights(linearW, N, K, 0);
    for (const threads of threadsList) {
      const s = {
        gemm: await session(gemmF32(K, N), threads),
        nb32: await session(matMulNBits(K, N, 32), threads),
        nb64: await session(matMulNBits(K, N, 64), threads),
        dq: await session(dynamicQuantizeMatMul(K, N), threads),
      };
      for (const M of opt.ms) {
        const x = randomArray(M * K, 1, 11);
        const xt = Tensor.fromStorage(x, [M, K], 'f32');
        const before = M === 1 ? () => addon.benchFlushCaches(flush) : async () => {};
        const ours4 = timed(async () => (await w4a4.forward(xt, { threads })).dispose());
        const ours8 = timed(async () => (await w8a8.forward(xt, { threads })).dispose());
        const oursF = timed(async () => addon.releaseF32(await addon.linearF32(packed, x, M, linearB, null, threads)));
        const runs = [oursF, timed(ortRun(s.gemm, x, M, K)), ours4, timed(ortRun(s.nb32, x, M, K)), timed(ortRun(s.nb64, x, M, K)), timed(ortRun(s.dq, x, M, K)), ours8];
        const t = await interleave(runs, opt.reps, before);
        record('fp32', 'Linear', 'Gemm', M, K, N, threads, t[0], t[1]);
        record('4-bit', 'w4a4 r32', 'MatMulNBits b32', M, K, N, threads, t[2], t[3]);
        record('4-bit', 'w4a4 r32', 'MatMulNBits b64', M, K, N, threads, t[2], t[4]);
        record('int8', 'w4a4 r32', 'DynamicQuantizeMatMul', M, K, N, threads, t[2], t[5]);
        record('int8', 'w8a8 r32', 'DynamicQuantizeMatMul', M, K, N, threads, t[6], t[5]);
      }
      for (const v of Object.values(s)) await v.release();
    }
    w4a4.dispose();
    w8a8.dispose();
  }

  if (opt.mlp) {
    const D = 3072, H = 12288;
    const fc1 = await svdqLayer('w4a4', D, H, randomArray(H * D, 0.05, 21));
    const fc2 = await svdqLayer('w4a4', H, D, randomArray(D * H, 0.05, 22));
    for (const threads of threadsList) {
      const mlp = await session(mlpNBits(D, H, 32), threads);
      for (const M of opt.ms) {
        const x = randomArray(M * D, 1, 23);
        const xt = Tensor.fromStorage(x, [M, D], 'f32');
        const ours = timed(async () => {
          const h = await fc1.forward(xt, { threads });
          const g = await gelu(h, { threads });
          h.dispose();
          const y = await fc2.forward(g, { threads });
          g.dispose();
          y.dispose();
        });
        const before = M === 1 ? () => addon.benchFlushCaches(flush) : async () => {};
        const t = await interleave([ours, timed(ortRun(mlp, x, M, D))], opt.reps, before);
        record('mlp', 'w4a4 r32 ×2 + GELU', 'MatMulNBits b32 ×2 + Gelu', M, D, H, threads, t[0], t[1]);
      }
      await mlp.release();
    }
    fc1.dispose();
    fc2.dispose();
  }

  const load1 = (await import('node:os')).loadavg()[0];
  console.log(`svdquant vs onnxruntime-node ${ORT_VERSION}: medians of ${opt.reps} interleaved runs; load average ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`);
  console.log('RATIO = ORT time / our time (above 1: svdquant is faster)\n');
  console.log(alignedTable(
    [{ title: 'FAMILY', align: 'left' }, { title: 'OURS', align: 'left' }, { title: 'ORT', align: 'left' }, { title: 'M', align: 'right' }, { title: 'K', align: 'right' },
      { title: 'N', align: 'right' }, { title: 'THREADS', align: 'right' }, { title: 'OURS TIME', align: 'right' }, { title: 'ORT TIME', align: 'right' },
      { title: 'RATIO', align: 'right' }, { title: 'FLAGS', align: 'left' }],
    records.map((r) => [r.family, r.ours, r.ort, String(r.M), String(r.K), String(r.N), String(r.threads), marked(formatMs(r.oursMs), r.flags), marked(formatMs(r.ortMs), r.flags),
      marked(`${r.ratio.toFixed(2)}x`, r.flags), r.flags.join(',')]),
  ));
  const legend = flagLegend(records);
  if (legend.length > 0) console.log('Unreliable figures are marked with !:\n' + legend.map(([f, t]) => `  ${f}: ${t}`).join('\n'));
  if (opt.json !== undefined) await writeTextAtomic(opt.json, jsonLines(records));
}

await main();
