#!/usr/bin/env node
// Builds a GPU backend library and its test and benchmark executables:
//   node scripts/build-gpu.mjs cuda [--arch=sm_80,sm_90a] [--jobs=N]   (npm run build:cuda)
//   node scripts/build-gpu.mjs hip  [--arch=gfx90a,gfx940] [--jobs=N]  (npm run build:hip)
// Architectures: --arch, else SVDQUANT_CUDA_ARCHS / SVDQUANT_HIP_ARCHS, else the defaults below.
// Compilers: NVCC / HIPCC (default: nvcc / hipcc on PATH), CXX for the host-only files (default g++).
// Outputs in build-gpu/: libsvdquant_<platform>.so (exports svdq_gpu_get_api; CUDA runtime linked
// statically), test_gpu_<platform>, bench_gpu_<platform>. Objects in build-gpu/obj-<platform>/.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, resolve, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build-gpu');

const DEFAULTS = { cuda: 'sm_80,sm_86,sm_89,sm_90a', hip: 'gfx90a,gfx940' };

function die(msg) {
  console.error(`build-gpu: ${msg}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const platform = args.find((a) => !a.startsWith('--'));
if (platform !== 'cuda' && platform !== 'hip') die('usage: node scripts/build-gpu.mjs cuda|hip [--arch=a,b] [--jobs=N]');
const opt = (name) => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : undefined;
};
const archList = (opt('arch') ?? process.env[platform === 'cuda' ? 'SVDQUANT_CUDA_ARCHS' : 'SVDQUANT_HIP_ARCHS'] ?? DEFAULTS[platform])
  .split(',').map((s) => s.trim()).filter(Boolean);
if (archList.length === 0) die('no architecture given');
const jobs = Math.max(1, Number(opt('jobs') ?? cpus().length) || 1);

const compiler = platform === 'cuda' ? (process.env.NVCC || 'nvcc') : (process.env.HIPCC || 'hipcc');
const cxx = process.env.CXX || 'g++';
for (const [tool, hint] of [[compiler, platform === 'cuda'
  ? 'install the CUDA toolkit (nvcc) or set NVCC to its path'
  : 'install hipcc and libamdhip64-dev (apt-get install -y hipcc libamdhip64-dev) or set HIPCC'],
[cxx, 'install g++ or set CXX']]) {
  const probe = spawnSync('sh', ['-c', `command -v "${tool}"`], { encoding: 'utf8' });
  if (probe.status !== 0) die(`${tool} not found: ${hint}`);
}

const env = { ...process.env };
if (platform === 'hip') env.HIP_PLATFORM = env.HIP_PLATFORM || 'amd';

const archFlags = [];
if (platform === 'cuda') {
  for (const a of archList) {
    const m = /^sm_(\d+[a-z]?)$/.exec(a);
    if (!m) die(`CUDA architecture "${a}" is not of the form sm_80 / sm_90a`);
    archFlags.push('-gencode', `arch=compute_${m[1]},code=sm_${m[1]}`);
  }
  // PTX of the lowest (non arch-specific) target, so that newer GPUs can JIT the kernels.
  const base = archList.map((a) => /^sm_(\d+)$/.exec(a)).filter(Boolean).map((m) => Number(m[1])).sort((x, y) => x - y)[0];
  if (base) archFlags.push('-gencode', `arch=compute_${base},code=compute_${base}`);
} else {
  for (const a of archList) {
    if (!/^gfx[0-9a-f]+$/.test(a)) die(`HIP architecture "${a}" is not of the form gfx90a`);
    archFlags.push(`--offload-arch=${a}`);
  }
}

const inc = ['-I', join(root, 'native/include'), '-I', join(root, 'native/tests')];
const define = [`-DSVDQ_BUILT_ARCHS="${archList.join(',')}"`];
const devFlags = platform === 'cuda'
  ? ['-std=c++17', '-O3', '--fmad=false', '-Xcompiler', '-fPIC,-fvisibility=hidden,-Wall,-Wextra', ...archFlags]
  : ['-std=c++17', '-O3', '-ffp-contract=off', '-fPIC', '-fvisibility=hidden', '-Wall', '-Wextra', ...archFlags];
const hostFlags = ['-std=c++17', '-O2', '-fPIC', '-fvisibility=hidden', '-Wall', '-Wextra', '-ffp-contract=off'];

const objDir = join(out, `obj-${platform}`);
mkdirSync(objDir, { recursive: true });

const g = (p) => join(root, 'native/gpu', p);
// The slowest first, so that the parallel jobs end together.
const libDevice = ['gemm_lowbit.cu', 'backend.cu', 'quantize_act.cu', 'lowrank.cu'];
const steps = [
  ...libDevice.map((f) => ({ src: g(f), obj: join(objDir, f.replace(/\.cu$/, '.o')), dev: true })),
  { src: g('repack.cpp'), obj: join(objDir, 'repack.o'), dev: false },
  { src: g('tests/test_gpu.cu'), obj: join(objDir, 'test_gpu.o'), dev: true },
  { src: g('bench/bench_gpu.cu'), obj: join(objDir, 'bench_gpu.o'), dev: true },
  { src: join(root, 'native/tests/lowbit_reference.cpp'), obj: join(objDir, 'lowbit_reference.o'), dev: false },
  { src: join(root, 'native/formats/quantize_portable.cpp'), obj: join(objDir, 'quantize_portable.o'), dev: false },
];

function run(cmd, argv, label) {
  return new Promise((res) => {
    const t0 = Date.now();
    const p = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (d) => { text += d; });
    p.stderr.on('data', (d) => { text += d; });
    p.on('error', (e) => res({ code: 127, text: String(e), secs: 0 }));
    p.on('close', (code) => {
      const secs = (Date.now() - t0) / 1000;
      // hipcc's rocm_agent_enumerator complains without /dev/kfd; that noise is not a diagnostic.
      const clean = text.split('\n').filter((l) => !/rocm_agent_enumerator|readFromKFD|topology_dir|target_list|kfd\/topology|^\s*\^+\s*$|^\s*File "|^Traceback|^FileNotFoundError|^\s+main\(\)|^\s+for node in/.test(l)).join('\n').trim();
      console.log(`  ${label} (${secs.toFixed(1)} s)${code === 0 ? '' : ' FAILED'}`);
      if (clean) console.log(clean.replace(/^/gm, '    '));
      res({ code, secs });
    });
  });
}

async function main() {
  const t0 = Date.now();
  console.log(`build-gpu: ${platform} backend with ${compiler} for ${archList.join(', ')} (${jobs} parallel jobs) → ${out}`);
  const queue = steps.map((s) => () => {
    const argv = s.dev
      ? [...devFlags, ...inc, ...define, '-c', s.src, '-o', s.obj]
      : [...hostFlags, ...inc, '-c', s.src, '-o', s.obj];
    return run(s.dev ? compiler : cxx, argv, `compile ${s.src.slice(root.length + 1)}`);
  });
  let failed = false;
  const workers = Array.from({ length: jobs }, async () => {
    while (queue.length) {
      const r = await queue.shift()();
      if (r.code !== 0) failed = true;
    }
  });
  await Promise.all(workers);
  if (failed) die('compilation failed');

  const o = (n) => join(objDir, n);
  const libObjs = [...libDevice.map((f) => o(f.replace(/\.cu$/, '.o'))), o('repack.o')];
  const link = platform === 'cuda' ? ['--cudart=static', ...archFlags] : [...archFlags];
  const lib = join(out, `libsvdquant_${platform}.so`);
  const targets = [
    { label: `link ${lib.slice(root.length + 1)}`, argv: ['-shared', ...(platform === 'cuda' ? ['-Xcompiler', '-fPIC'] : ['-fPIC']), ...link, ...libObjs, '-o', lib] },
    { label: `link build-gpu/test_gpu_${platform}`, argv: [...link, o('test_gpu.o'), ...libObjs, o('lowbit_reference.o'), o('quantize_portable.o'), '-o', join(out, `test_gpu_${platform}`)] },
    { label: `link build-gpu/bench_gpu_${platform}`, argv: [...link, o('bench_gpu.o'), ...libObjs, '-o', join(out, `bench_gpu_${platform}`)] },
  ];
  for (const t of targets) {
    const r = await run(compiler, t.argv, t.label);
    if (r.code !== 0) die(`${t.label} failed`);
  }
  const exp = spawnSync('nm', ['-D', '--defined-only', lib], { encoding: 'utf8' });
  if (exp.status === 0 && !/\bsvdq_gpu_get_api\b/.test(exp.stdout)) die(`${lib} does not export svdq_gpu_get_api`);
  console.log(`build-gpu: ${platform} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

await main();
