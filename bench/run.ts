/**
 * `npm run bench`: measures this machine's peaks (fp32 FMA, int8 dot products, DRAM read), then the
 * kernels, and prints a Markdown table of figures and ratios against baselines measured in the same
 * run. `--json FILE` writes one JSON record per measurement. Benchmarks never assert.
 *
 * Options: --json FILE   --threads 1,2   --quick (fewer shapes)   --only peaks|kernels
 */
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { cpuIsa, native } from '../lib/native.js';

export interface PeakRecord {
  kind: 'peak';
  isa: string;
  threads: number;
  fp32Gflops: number;
  int8Gops: number;
  dramGBps: number;
}

const ISA_LEVEL: Record<string, number> = { portable: 0, avx2: 1, avx512: 2 };

function parseArgs(argv: string[]): { json?: string; threads: number[]; quick: boolean; only?: string } {
  const out: { json?: string; threads: number[]; quick: boolean; only?: string } = { threads: [], quick: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') out.json = argv[++i];
    else if (a === '--threads') out.threads = argv[++i].split(',').map(Number);
    else if (a === '--quick') out.quick = true;
    else if (a === '--only') out.only = argv[++i];
    else throw new Error(`unknown option ${a}: expected --json FILE, --threads LIST, --quick, --only peaks|kernels`);
  }
  if (out.threads.length === 0) out.threads = [...new Set([1, Math.max(1, availableCores())])];
  return out;
}

function availableCores(): number {
  return cpus().length;
}

async function measurePeaks(threads: number, isa: string): Promise<PeakRecord> {
  const out = new Float64Array(3);
  await native().measurePeaks(threads, ISA_LEVEL[isa], out);
  return { kind: 'peak', isa, threads, fp32Gflops: out[0], int8Gops: out[1], dramGBps: out[2] };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const isa = cpuIsa();
  const records: object[] = [];
  console.log(`# svdquant bench\n\nCPU ISA: ${isa.active} (detected ${isa.detected}, ${isa.source}); threads: ${args.threads.join(', ')}\n`);
  console.log('## Machine peaks (measured in this run)\n');
  console.log('| ISA | threads | fp32 FMA GFLOP/s | int8 GOP/s | DRAM read GB/s |');
  console.log('|---|---:|---:|---:|---:|');
  for (const threads of args.threads) {
    const p = await measurePeaks(threads, isa.active);
    records.push(p);
    console.log(`| ${p.isa} | ${threads} | ${p.fp32Gflops.toFixed(1)} | ${p.int8Gops.toFixed(1)} | ${p.dramGBps.toFixed(1)} |`);
  }
  if (args.json) {
    await writeFile(args.json, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    console.log(`\nwrote ${records.length} records to ${args.json}`);
  }
}

await main();
