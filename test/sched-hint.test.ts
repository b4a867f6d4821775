// The compute threads' scheduler hint (native/include/svdquant/compute_slice.h) as the kernel sees
// it: after an async op, the libuv worker that ran it keeps the long slice, and the JavaScript
// thread never gets it. Linux 6.12+ only (custom slices, and se.slice in /proc/<tid>/sched).
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { gelu } from '../lib/graph/index.js';
import { native } from '../lib/native.js';
import { randomTensor, rng } from './support/graph-reference.js';

/** The slice (ns) of every thread of this process, by thread id; empty where the kernel does not say. */
function slices(): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const m = /^se\.slice\s*:\s*(\d+)/m.exec(readFileSync(`/proc/self/task/${tid}/sched`, 'utf8'));
    if (m) out.set(Number(tid), Number(m[1]));
  }
  return out;
}

const info = native().schedInfo();
const supported = process.platform === 'linux' && info.sliceMs > 0 && info.threadSliceMs === info.sliceMs && slices().size > 0;

t.test('a libuv worker keeps the long slice after a job; the JavaScript thread never has it', { skip: supported ? false : 'no custom scheduler slices here (Linux 6.12+ with the hint on)' }, async (t) => {
  const long = info.sliceMs * 1e6;
  const count = () => [...slices().values()].filter((s) => s === long).length;
  t.equal(count(), 0, 'no thread has the long slice before the first job');
  // threads: 1 makes the pool worker-less: the job computes on the libuv worker alone.
  for (let i = 0; i < 4; i++) await gelu(randomTensor([64, 64], 1, rng(i)), { threads: 1 });
  t.ok(count() >= 1, 'the libuv worker that ran the jobs still has the long slice');
  t.not(slices().get(process.pid), long, 'the JavaScript thread keeps the default slice');
});
