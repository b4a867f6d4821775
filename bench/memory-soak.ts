// Resident-memory soak (issue 5 item 6): a small quantized model with native inference on, N forward
// calls, RSS reported at intervals and the growth from call 1000 to the end. Never asserts (exit 0);
// prints a verdict line. Run: node --import tsx bench/memory-soak.ts [--calls 10000]
import { Tensor, Sequential, LayerNorm, MLP, Linear, quantizeModel, enableNativeInference, disableNativeInference } from '../lib/index.js';

const arg = process.argv.indexOf('--calls');
const calls = arg >= 0 ? Number(process.argv[arg + 1]) : 10000;
if (!Number.isInteger(calls) || calls < 1000) {
  console.error('--calls must be an integer >= 1000');
  process.exit(2);
}
let s = 7;
const rand = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 2;
const batch = (): Tensor[] => [Tensor.fromArray(Array.from({ length: 16 * 128 }, rand), [16, 128])];
const model = new Sequential(new LayerNorm(128), new MLP(128, 512, { seed: 1 }), new Linear(128, 64, { seed: 2 }));
await quantizeModel(model, { scheme: 'w4a4', rank: 16 }, [batch(), batch()]);
const report = await enableNativeInference(model, { backend: 'cpu' });
console.log(`model: LayerNorm(128) -> MLP(128, 512) -> Linear(128, 64), w4a4 rank 16, native layers ${report.converted.join(', ')}`);
const [x] = batch();
const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
const every = Math.max(1, Math.floor(calls / 10));
let at1000 = 0;
const t0 = performance.now();
for (let i = 1; i <= calls; i++) {
  await model.call(x);
  if (i === 1000) at1000 = process.memoryUsage().rss;
  if (i % every === 0 || i === 1 || i === 1000) {
    const m = process.memoryUsage();
    console.log(`call ${String(i).padStart(6)}: rss ${mib(m.rss)} MiB, heapUsed ${mib(m.heapUsed)} MiB, external ${mib(m.external)} MiB`);
  }
}
const end = process.memoryUsage().rss;
const growth = end - at1000;
const perCall = growth / (calls - 1000);
console.log(`${calls} calls in ${((performance.now() - t0) / 1000).toFixed(1)} s; rss growth from call 1000 to ${calls}: ${mib(growth)} MiB (${perCall.toFixed(1)} bytes/call)`);
// Verdict: growth under 16 MiB (allocator and JIT noise) counts as stable.
console.log(`verdict: ${growth < 16 * 2 ** 20 ? 'STABLE' : 'GROWING'} (threshold 16 MiB from call 1000 to the end)`);
disableNativeInference(model);
