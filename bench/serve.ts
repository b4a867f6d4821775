/**
 * Load figures of `svdquant serve` with the built-in model (node --import tsx bench/serve.ts; the CLI
 * must be built: npx tsc -p tsconfig.build.json). Benchmarks never assert; they print.
 *
 * 1. Throughput and latency: autocannon, C concurrent clients on loopback, one image per request
 *    (labels and seeds vary), batching on against batching off (the baseline, same run), medians of
 *    R runs: images/s, p50/p99 latency, status codes (429s must only come from a full queue).
 * 2. Back-pressure: a queue smaller than the clients, so 429s appear (counted against queue_full).
 * 3. RSS over a long run (sampled from /metrics every few seconds).
 * 4. Two workers over a real redis-server, one killed with SIGKILL mid-run: requests lost.
 *
 * Options: --connections C (16) --duration S per run (15) --runs R (3) --steps N (20) --long S (120)
 *          --jobs N for the worker run (32) --skip a,b (throughput, pressure, long, workers)
 */
import autocannon from 'autocannon';
import { loadavg, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { metric, postImages, startRedis, startServe, startWorker } from '../test/support/serve-process.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '16' },
    duration: { type: 'string', default: '15' },
    runs: { type: 'string', default: '3' },
    steps: { type: 'string', default: '20' },
    long: { type: 'string', default: '120' },
    jobs: { type: 'string', default: '32' },
    skip: { type: 'string', default: '' },
  },
});
const C = Number(values.connections), DURATION = Number(values.duration), RUNS = Number(values.runs);
const STEPS = Number(values.steps), LONG = Number(values.long), JOBS = Number(values.jobs);
const skip = new Set(values.skip.split(',').filter(Boolean));
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(`# svdquant serve load figures\n\nmachine: ${cpus().length} logical cores (${cpus()[0]?.model.trim()}), load average at start ${load()}`);
console.log(`requests: one image each, ${STEPS} steps, guidance 4 (CFG: the denoiser sees twice the batch); ${C} concurrent clients\n`);

let seed = 0;
interface RunFigures { imagesPerSecond: number; p50: number; p99: number; codes: Record<string, number>; errors: number }

async function cannon(url: string, seconds: number, connections = C): Promise<RunFigures> {
  const result = await autocannon({
    url: `${url}/v1/images`,
    connections,
    duration: seconds,
    timeout: 300,
    requests: [{
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      setupRequest: (request) => ({ ...request, body: JSON.stringify({ labels: [seed % 10], seed: seed++, steps: STEPS, guidance: 4 }) }),
    }],
  });
  const codes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) codes[code] = (stats as { count: number }).count;
  return { imagesPerSecond: (codes['200'] ?? 0) / seconds, p50: result.latency.p50, p99: result.latency.p99, codes, errors: result.errors + result.timeouts };
}

if (!skip.has('throughput')) {
  console.log('## Throughput: batching on against off\n');
  console.log('| mode | images/s (median) | p50 ms | p99 ms | status codes (all runs) | runs (images/s) |');
  console.log('|---|---:|---:|---:|---|---|');
  const figures: Record<string, number> = {};
  for (const [mode, args] of [['batching off', ['--no-batching']], ['batching on (max batch 8, window 10 ms)', ['--max-batch', '8', '--batch-window-ms', '10']]] as const) {
    const server = await startServe([...args, '--max-queue', String(4 * C)]);
    await postImages(server.url, { labels: [0], steps: STEPS }); // warm-up
    const runs: RunFigures[] = [];
    for (let r = 0; r < RUNS; r++) runs.push(await cannon(server.url, DURATION));
    const codes: Record<string, number> = {};
    for (const run of runs) for (const [code, n] of Object.entries(run.codes)) codes[code] = (codes[code] ?? 0) + n;
    const ips = median(runs.map((x) => x.imagesPerSecond));
    figures[mode] = ips;
    const meanBatch = (await metric(server.url, 'svdquant_batch_images_sum')) / Math.max(1, await metric(server.url, 'svdquant_batch_images_count'));
    console.log(`| ${mode} (mean batch ${meanBatch.toFixed(1)}) | ${ips.toFixed(2)} | ${median(runs.map((x) => x.p50))} | ${median(runs.map((x) => x.p99))} | ${JSON.stringify(codes)}${runs.some((x) => x.errors > 0) ? `, ${runs.reduce((s, x) => s + x.errors, 0)} errors` : ''} | ${runs.map((x) => x.imagesPerSecond.toFixed(2)).join(', ')} |`);
    server.kill('SIGTERM');
    await server.exited;
  }
  const [off, on] = Object.values(figures);
  console.log(`\nbatching on / off: ${(on / off).toFixed(2)}x images/s; load average now ${load()}\n`);
}

if (!skip.has('pressure')) {
  console.log(`## Back-pressure: max queue ${Math.floor(C / 4)}, ${C} clients\n`);
  const server = await startServe(['--max-batch', '4', '--max-queue', String(Math.floor(C / 4))]);
  const run = await cannon(server.url, DURATION);
  const queueFull = await metric(server.url, 'svdquant_errors_total{kind="queue_full"}');
  console.log(`status codes ${JSON.stringify(run.codes)}; 429s counted as queue_full by the server: ${queueFull}; other errors: ${run.errors}\n`);
  server.kill('SIGTERM');
  await server.exited;
}

if (!skip.has('long')) {
  console.log(`## RSS over a ${LONG} s run (batching on, ${C} clients)\n`);
  const server = await startServe(['--max-batch', '8', '--max-queue', String(4 * C)]);
  const samples: Array<[number, number]> = [];
  const started = performance.now();
  const sampler = setInterval(() => {
    void metric(server.url, 'svdquant_native_memory_bytes{kind="rss"}').then((rss) => samples.push([(performance.now() - started) / 1000, rss]));
  }, 5000);
  const run = await cannon(server.url, LONG);
  clearInterval(sampler);
  const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
  const rss = samples.map(([, b]) => b);
  const firstHalf = rss.slice(0, Math.ceil(rss.length / 2)), secondHalf = rss.slice(Math.ceil(rss.length / 2));
  console.log(`images ${run.codes['200'] ?? 0} (${run.imagesPerSecond.toFixed(2)}/s); RSS MiB first sample ${mib(rss[0])}, last ${mib(rss[rss.length - 1])}, max ${mib(Math.max(...rss))}; median first half ${mib(median(firstHalf))}, second half ${mib(median(secondHalf))}`);
  console.log(`samples (s: MiB): ${samples.map(([s, b]) => `${s.toFixed(0)}: ${mib(b)}`).join(', ')}; load average ${load()}\n`);
  server.kill('SIGTERM');
  await server.exited;
}

if (!skip.has('workers')) {
  console.log(`## Two workers over Redis, one killed with SIGKILL mid-run (${JOBS} requests)\n`);
  const redis = await startRedis();
  const recovery = ['--lock-duration-ms', '4000', '--stalled-interval-ms', '1000'];
  const front = await startServe(['--queue', redis.url, '--max-queue', String(JOBS)]);
  const a = await startWorker(['--queue', redis.url, ...recovery]);
  const b = await startWorker(['--queue', redis.url, ...recovery]);
  const started = performance.now();
  const pending = Array.from({ length: JOBS }, (_, i) => postImages(front.url, { labels: [i % 10], seed: i, steps: STEPS }));
  // Killed while it holds jobs: after its first completion, at its next job start.
  await a.waitFor(/job \S+ completed[\s\S]*job \S+ active/);
  a.kill('SIGKILL');
  await a.exited;
  const ids = (text: string, state: string): string[] => [...text.matchAll(new RegExp(`job (\\S+) ${state}`, 'g'))].map((m) => m[1]);
  const completedByA = new Set(ids(a.output(), 'completed'));
  const heldAtKill = [...new Set(ids(a.output(), 'active'))].filter((id) => !completedByA.has(id));
  const results = await Promise.all(pending);
  const seconds = (performance.now() - started) / 1000;
  const ok = results.filter((r) => r.status === 200);
  const rescued = heldAtKill.filter((id) => ids(b.output(), 'completed').includes(id));
  console.log(`${ok.length} of ${JOBS} requests answered 200, ${JOBS - ok.length} lost; the killed worker held ${heldAtKill.length} unfinished jobs, ${rescued.length} of them completed by the other worker; ${completedByA.size} completed by the killed worker before; ${seconds.toFixed(1)} s in all (lock 4 s); load average ${load()}\n`);
  for (const p of [b, front]) p.kill('SIGTERM');
  await Promise.all([b.exited, front.exited, a.exited]);
  await redis.stop();
}
