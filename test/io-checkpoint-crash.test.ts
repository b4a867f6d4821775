// Crash safety of checkpoints (issue 18): a process killed with SIGKILL at random points of
// saveCheckpoint never damages the checkpoint already there. After every kill the file is, byte
// for byte, one of the two complete checkpoints the child was alternating between (so it loads
// bit-identically), every temporary file left behind is either rejected as malformed or a complete
// copy (never taken for the checkpoint: it has the temporary name), and the next save sweeps them.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError } from '../lib/errors.js';
import { LayerNorm, Linear, Sequential, type Module } from '../lib/graph/index.js';
import { openSafetensors } from '../lib/io/safetensors.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/runtime/checkpoint.js';
import { ROOT, requireBuiltCli } from './support/cli.js';

t.before(requireBuiltCli); // the child runs the built package

const RUNS = 24;
const crashModel = (seed: number): Module => new Sequential(new Linear(512, 512, { seed }), new LayerNorm(512), new Linear(512, 384, { seed: seed + 1 }));

function parameters(model: Module): Buffer {
  const parts: Buffer[] = [];
  for (const [, m] of model.namedModules()) {
    if (m instanceof Linear || m instanceof LayerNorm) {
      for (const p of [m.weight, m.bias]) if (p !== null) parts.push(Buffer.from(p.bytes()));
    }
  }
  return Buffer.concat(parts);
}

/** Seeded delays (ms) so a failing run can be reproduced. */
function delays(count: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 120;
  });
}

function killDuringSaves(file: string, delayMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join('test', 'support', 'checkpoint-kill-child.mjs'), file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.once('data', () => setTimeout(() => child.kill('SIGKILL'), delayMs));
    child.on('error', reject);
    child.on('exit', () => resolve());
  });
}

t.test(`${RUNS} saves killed with SIGKILL at random points: the checkpoint is always one of the complete ones`, async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'model.safetensors');
  const a = crashModel(1), b = crashModel(3);
  await saveCheckpoint(b, join(dir, 'b.ref'));
  await saveCheckpoint(a, file); // the checkpoint that must survive
  const bytesA = readFileSync(file), bytesB = readFileSync(join(dir, 'b.ref'));
  const paramsA = parameters(a), paramsB = parameters(b);
  let tempsSeen = 0, partialTemps = 0, completeTemps = 0, newer = 0;
  for (const [run, delay] of delays(RUNS, 18).entries()) {
    await killDuringSaves(file, delay);
    const bytes = readFileSync(file);
    const isA = bytes.equals(bytesA), isB = bytes.equals(bytesB);
    if (!(isA || isB)) {
      t.fail(`run ${run} (kill after ${delay.toFixed(1)} ms): the checkpoint is neither complete version (${bytes.length} bytes)`);
      continue;
    }
    if (isB) newer++;
    const restored = crashModel(99);
    await loadCheckpoint(file, restored);
    t.ok(parameters(restored).equals(isA ? paramsA : paramsB), `run ${run}: loads bit-identically`);
    for (const name of readdirSync(dir).filter((f) => f.endsWith('.svdq-tmp'))) {
      tempsSeen++;
      const temp = join(dir, name);
      const tempBytes = readFileSync(temp);
      if (tempBytes.equals(bytesA) || tempBytes.equals(bytesB)) {
        completeTemps++; // killed between fsync and rename: complete, and still not the checkpoint
        continue;
      }
      partialTemps++;
      const error = await openSafetensors(temp).then(async (st) => {
        await st.close();
        return undefined;
      }, (e: unknown) => e);
      t.type(error, FileFormatError, `run ${run}: the partial temporary file ${name} (${tempBytes.length} bytes) is rejected`);
    }
    // The next save sweeps what the dead writer left.
    await saveCheckpoint(a, file);
    t.same(readdirSync(dir).filter((f) => f.endsWith('.svdq-tmp')), [], `run ${run}: stale temporary files swept by the next save`);
  }
  t.ok(tempsSeen > 0, `kills landed mid-save (${tempsSeen} temporary files left: ${partialTemps} partial, ${completeTemps} complete)`);
  t.comment(`${RUNS} runs: ${newer} left the newer checkpoint, ${RUNS - newer} the older one`);
});
