// DESIGN.md §5 / issue 2: one binary for every x86-64 CPU. Only the functions of the AVX2 and
// AVX-512 kernel namespaces may contain VEX/EVEX (AVX) instructions; everything else — the addon
// glue, the portable kernels, static initializers that run at load time — must be baseline x86-64.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../lib/native.js';

const addon = join(packageRoot, 'build', 'Release', 'svdquant.node');
const objdump = spawnSync('objdump', ['--version'], { encoding: 'utf8' });

t.test('AVX instructions appear only inside the avx2/avx512 kernel namespaces', { skip: process.arch !== 'x64' ? 'not an x86-64 machine' : objdump.status !== 0 ? 'objdump is not installed' : !existsSync(addon) ? 'no node-gyp build at build/Release' : false }, async (t) => {
  const dis = spawnSync('objdump', ['-d', '-C', '--no-show-raw-insn', addon], { encoding: 'utf8', maxBuffer: 1 << 28 });
  t.equal(dis.status, 0, 'objdump ran');
  const offenders = new Map<string, string>();
  const allowed = new Set<string>();
  let fn = '';
  let avxFunctions = 0;
  for (const line of dis.stdout.split('\n')) {
    const head = /^[0-9a-f]+ <(.*)>:$/.exec(line);
    if (head) { fn = head[1]; continue; }
    const insn = /^\s+[0-9a-f]+:\s+(v[a-z0-9]+)\s/.exec(line);
    if (!insn || /^(verr|verw|vm[a-z]+)$/.test(insn[1])) continue;
    if (/svdq::(avx2|avx512)::/.test(fn)) { if (!allowed.has(fn)) { allowed.add(fn); avxFunctions++; } continue; }
    if (!offenders.has(fn)) offenders.set(fn, insn[1]);
  }
  t.same([...offenders.entries()].map(([f, i]) => `${f}: ${i}`), [], 'no AVX instruction outside the SIMD kernels');
  t.ok(avxFunctions > 0, `the SIMD kernels are there (${avxFunctions} functions use AVX)`);
});
