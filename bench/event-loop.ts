// Event-loop responsiveness during forwards (issue 5 item 1): a 1 ms interval timer runs while the
// built-in model (tinyDit, 1024 tokens) does forwards; every gap between two ticks is recorded.
// Rows: the fp32 model and the w4a4 model with native inference, each with the early release of
// intermediates on (the default) and each forward's output disposed (Tensor.dispose) or dropped,
// and with release off (a no-op hook on every module switches it off); two floors of the same run:
// the idle loop, and the engine's threads busy with a GEMM job and no JavaScript work (the best a
// forward could do on this machine under full load). All in two processes: the compute threads'
// scheduler hint on (default) and off (SVDQUANT_SCHED_SLICE_MS=0). Medians over --runs runs.
// Unreliable rows are flagged (lib/bench/reliability.ts): 'spread' when the runs' ms/forward or p99
// disagree, 'loaded-floor' on every row of a process whose idle floor is itself disturbed (a timer
// that cannot keep 1 ms with nothing to do means other work on the machine). Never asserts.
// Run: node --import tsx bench/event-loop.ts [--runs 3] [--forwards 20]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { enableNativeInference, quantize, tinyDit, tinyDitInputs, type Module, type Tensor } from '../lib/index.js';
import { tinyDitCalibration } from '../lib/models/tiny-dit.js';
import { native } from '../lib/native.js';
import { Flags, flagLegend, type Flag } from '../lib/bench/reliability.js';

function intArg(name: string, fallback: number, min: number): number {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < min) {
    console.error(`${name} must be an integer >= ${min}`);
    process.exit(2);
  }
  return v;
}

const runs = intArg('--runs', 3, 1);
const forwards = intArg('--forwards', 20, 1);
const TOKENS = 1024, DIM = 768;

interface Gaps {
  ms: number;
  p50: number;
  p99: number;
  max: number;
  over4: number;
  majorGcs: number;
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Runs `work` with the 1 ms timer going; `work` undefined: just waits `idleMs`. */
async function measure(work: (() => Promise<void>) | undefined, idleMs: number): Promise<Gaps> {
  let majorGcs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majorGcs++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const gaps: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }, 1);
  const t0 = performance.now();
  if (work) await work();
  else await new Promise((r) => setTimeout(r, idleMs));
  const ms = performance.now() - t0;
  clearInterval(timer);
  gaps.push(performance.now() - last);
  await new Promise((r) => setImmediate(r)); // let the observer deliver
  obs.disconnect();
  gaps.sort((a, b) => a - b);
  return { ms, p50: gaps[Math.floor(gaps.length / 2)], p99: gaps[Math.floor(gaps.length * 0.99)], max: gaps[gaps.length - 1], over4: gaps.filter((g) => g > 4).length, majorGcs };
}

/** Switches early release off for the whole model (any hook in a subtree does) and back on. */
function releaseSwitch(model: Module): { off(): void; on(): void } {
  let handles: { remove(): void }[] = [];
  return {
    off: () => { handles = [...model.modules()].map((m) => m.registerForwardHook(() => undefined)); },
    on: () => { handles.forEach((h) => h.remove()); handles = []; },
  };
}

async function child(): Promise<void> {
  const x = tinyDitInputs(TOKENS, DIM, 99);
  const fp32 = tinyDit();
  const w4a4 = tinyDit();
  await quantize(w4a4, { scheme: 'w4a4', rank: 32 }, tinyDitCalibration(512, DIM).map((b) => [b]));
  await enableNativeInference(w4a4, { backend: 'cpu' });
  const loop = (m: Module, dispose: boolean) => async () => {
    let y: Tensor | undefined;
    for (let i = 0; i < forwards; i++) {
      const out: Tensor = await m.call(x);
      if (dispose) out.dispose();
      y = out;
    }
    void y;
  };
  // The engine's threads computing for `ms` (fp32 GEMMs at the model's shape, one native job per
  // 10 GEMMs) with no JavaScript work between them and no output handed to V8.
  const engineBusy = (ms: number) => async () => {
    const out = new Float64Array(11);
    const end = performance.now() + ms;
    while (performance.now() < end) await native().benchGemmF32(TOKENS, DIM, DIM, 0, 0, 10, out);
  };
  for (const m of [fp32, w4a4]) (await m.call(x)).dispose(); // warm-up: packing
  const rows: Record<string, Gaps[]> = {};
  const add = (k: string, g: Gaps) => (rows[k] ??= []).push(g);
  rows['floor: idle (no work)'] = [];
  rows['floor: engine busy, no JavaScript work'] = [];
  for (let r = 0; r < runs; r++) {
    for (const [name, model] of [['fp32', fp32], ['w4a4 native', w4a4]] as const) {
      const sw = releaseSwitch(model);
      const on = await measure(loop(model, true), 0);
      add(`${name}, release on, output disposed`, on);
      add(`${name}, release on, output dropped`, await measure(loop(model, false), 0));
      sw.off();
      add(`${name}, release off, output dropped`, await measure(loop(model, false), 0));
      sw.on();
      add('floor: idle (no work)', await measure(undefined, on.ms));
      add('floor: engine busy, no JavaScript work', await measure(engineBusy(on.ms), 0));
    }
  }
  process.stdout.write(JSON.stringify(rows));
}

/** An idle timer's p99 gap above this (ms) means the machine delays the loop with no work of ours. */
const LOADED_FLOOR_P99 = 2;

function summarize(label: string, rows: Record<string, Gaps[]>, raised: Array<{ flags: Flag[] }>): string[] {
  const out: string[] = [];
  const idle = rows['floor: idle (no work)'] ?? [];
  const loaded = idle.length > 0 && median(idle.map((g) => g.p99)) > LOADED_FLOOR_P99;
  for (const [k, gs] of Object.entries(rows)) {
    const med = (f: (g: Gaps) => number) => median(gs.map(f));
    const flags = new Flags().spread(k.startsWith('floor') ? [] : gs.map((g) => g.ms), gs.map((g) => g.p99)).add('loaded-floor', loaded).list();
    raised.push({ flags });
    const perForward = k.startsWith('floor') ? '-' : (med((g) => g.ms) / forwards).toFixed(0);
    out.push(`${`${label}, ${k}`.padEnd(52)} ${perForward.padStart(8)} ${med((g) => g.p50).toFixed(1).padStart(6)} ` +
      `${med((g) => g.p99).toFixed(1).padStart(6)} ${med((g) => g.max).toFixed(1).padStart(7)} ${med((g) => g.over4).toFixed(0).padStart(7)} ${med((g) => g.majorGcs).toFixed(0).padStart(10)}` +
      (flags.length > 0 ? `  ! ${flags.join(', ')}` : ''));
  }
  return out;
}

if (process.argv.includes('--child')) {
  await child();
} else {
  console.log(`event-loop gaps: 1 ms interval timer during ${forwards} tinyDit forwards of ${TOKENS} tokens; medians of ${runs} runs`);
  console.log(`${'configuration'.padEnd(52)} ${'ms/fwd'.padStart(8)} ${'p50'.padStart(6)} ${'p99'.padStart(6)} ${'max'.padStart(7)} ${'>4 ms'.padStart(7)} ${'major GCs'.padStart(10)}`);
  const self = fileURLToPath(import.meta.url);
  const raised: Array<{ flags: Flag[] }> = [];
  for (const [label, env] of [['hint on', {}], ['hint off', { SVDQUANT_SCHED_SLICE_MS: '0' }]] as const) {
    const r = spawnSync(process.execPath, [...process.execArgv, self, '--child', '--runs', String(runs), '--forwards', String(forwards)], {
      env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 24,
    });
    if (r.status !== 0) {
      console.error(`child (${label}) failed with status ${r.status}:\n${r.stderr}`);
      process.exit(1);
    }
    for (const line of summarize(label, JSON.parse(r.stdout) as Record<string, Gaps[]>, raised)) console.log(line);
  }
  console.log('gaps in ms between ticks of a 1 ms timer; ">4 ms": gaps over 4 ms per measurement; "hint": the compute threads\' long scheduler slice');
  const legend = flagLegend(raised);
  if (legend.length === 0) console.log('reliability: no row flagged');
  else for (const [flag, text] of legend) console.log(`! ${flag}: ${text} (flagged rows are not results)`);
}
