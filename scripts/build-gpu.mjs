#!/usr/bin/env node
// Builds a GPU backend library and its test and benchmark executables:
//   node scripts/build-gpu.mjs cuda [--arch=sm_80,sm_90a] [--jobs=N]   (npm run build:cuda)
//   node scripts/build-gpu.mjs hip  [--arch=gfx90a,gfx942] [--jobs=N]  (npm run build:hip)
//   node scripts/build-gpu.mjs emu  [--arch=sm_80,gfx942] [--jobs=N] [--sanitize]  (npm run build:gpu-emu)
// Architectures: --arch, else SVDQUANT_CUDA_ARCHS / SVDQUANT_HIP_ARCHS / SVDQUANT_EMU_ARCHS, else the
// defaults of native/gpu/build.json; for HIP the default is every target of hip_archs that the
// compiler accepts (each is probed; the skipped ones are listed with the compiler's reason).
// Compilers: NVCC (default nvcc); for HIP, HIPCC when set, else the newest clang++-N (N >= 17) when
// ROCm device libraries are installed (Debian: clang-19 + rocm-device-libs, which knows gfx942 where
// Debian's hipcc, ROCm 5.2's clang 15, stops at gfx940), else hipcc; CXX for the host-only files and
// the emulator (default g++). Sources and flags: native/gpu/build.json.
// Outputs in build-gpu/: libsvdquant_<platform>.so (exports svdq_gpu_get_api; CUDA runtime linked
// statically), test_gpu_<platform>, bench_gpu_<platform>; objects in build-gpu/obj-<platform>/.
// The emulator (native/gpu/emu) builds, for each flavour (a CUDA or AMD target), build-gpu/emu-<arch>/
// (emu-asan-<arch>/ with --sanitize: AddressSanitizer + UBSan) holding test_gpu, test_emu and
// libsvdquant_<cuda|hip>.so: the same kernel sources compiled for the host.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, resolve, join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatResources, parseAmdRemarks, parsePtxas, spills } from './gpu-resources.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'build-gpu');
const cfg = JSON.parse(readFileSync(join(root, 'native/gpu/build.json'), 'utf8'));

const DEFAULTS = { cuda: cfg.cuda_archs, hip: cfg.hip_archs, emu: cfg.emu_flavours };
const ENV_ARCHS = { cuda: 'SVDQUANT_CUDA_ARCHS', hip: 'SVDQUANT_HIP_ARCHS', emu: 'SVDQUANT_EMU_ARCHS' };
// Emulator flavours: the target macros each one compiles the kernels with (emu/emu_runtime.h).
const EMU_FLAVOURS = {
  sm_80: ['-DSVDQ_EMU_SM=800'],
  sm_90a: ['-DSVDQ_EMU_SM=900', '-DSVDQ_EMU_SM90A=1'],
  gfx90a: ['-DSVDQ_EMU_GFX=0x90a'],
  gfx940: ['-DSVDQ_EMU_GFX=0x940'],
  gfx942: ['-DSVDQ_EMU_GFX=0x942'],
};

function die(msg) {
  console.error(`build-gpu: ${msg}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const platform = args.find((a) => !a.startsWith('--'));
if (!['cuda', 'hip', 'emu'].includes(platform)) die('usage: node scripts/build-gpu.mjs cuda|hip|emu [--arch=a,b] [--jobs=N] [--sanitize]');
const opt = (name) => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : undefined;
};
const sanitize = args.includes('--sanitize');
const explicitArchs = opt('arch') ?? process.env[ENV_ARCHS[platform]];
let archList = (explicitArchs ?? DEFAULTS[platform]).split(',').map((s) => s.trim()).filter(Boolean);
if (archList.length === 0) die('no architecture given');
const jobs = Math.max(1, Number(opt('jobs') ?? cpus().length) || 1);

const commandExists = (tool) => spawnSync('sh', ['-c', `command -v "${tool}"`], { encoding: 'utf8' }).status === 0;

// The HIP compiler (see the header): { kind: 'hipcc' | 'clang', cmd, devlibs? }.
function hipToolchain() {
  if (process.env.HIPCC) return { kind: 'hipcc', cmd: process.env.HIPCC };
  const devlibs = process.env.ROCM_DEVICE_LIB_PATH || '/usr/lib/x86_64-linux-gnu/amdgcn/bitcode';
  if (existsSync(join(devlibs, 'ocml.bc')))
    for (let v = 22; v >= 17; --v) if (commandExists(`clang++-${v}`)) return { kind: 'clang', cmd: `clang++-${v}`, devlibs };
  return { kind: 'hipcc', cmd: 'hipcc' };
}

const cxx = process.env.CXX || 'g++';
const hip = platform === 'hip' ? hipToolchain() : null;
const compiler = platform === 'cuda' ? (process.env.NVCC || 'nvcc') : platform === 'hip' ? hip.cmd : cxx;
for (const [tool, hint] of [[compiler, platform === 'cuda'
  ? 'install the CUDA toolkit (nvcc) or set NVCC to its path'
  : platform === 'hip' ? 'install hipcc and libamdhip64-dev (apt-get install -y hipcc libamdhip64-dev) or set HIPCC'
    : 'install g++ or set CXX'],
[cxx, 'install g++ or set CXX']]) {
  const probe = spawnSync('sh', ['-c', `command -v "${tool}"`], { encoding: 'utf8' });
  if (probe.status !== 0) die(`${tool} not found: ${hint}`);
}

const env = { ...process.env };
if (platform === 'hip') env.HIP_PLATFORM = env.HIP_PLATFORM || 'amd';

const p = (rel) => join(root, rel);
const inc = cfg.include.flatMap((d) => ['-I', p(d)]);
const objName = (src) => basename(src).replace(/\.(cu|cpp)$/, '.o');

function run(cmd, argv, label, quiet = false) {
  return new Promise((res) => {
    const t0 = Date.now();
    const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d) => { text += d; });
    child.stderr.on('data', (d) => { text += d; });
    child.on('error', (e) => res({ code: 127, text: String(e), secs: 0 }));
    child.on('close', (code) => {
      const secs = (Date.now() - t0) / 1000;
      // hipcc's rocm_agent_enumerator complains without /dev/kfd; that noise is not a diagnostic.
      const clean = text.split('\n').filter((l) => !/rocm_agent_enumerator|readFromKFD|topology_dir|target_list|kfd\/topology|^\s*\^+\s*$|^\s*File "|^Traceback|^FileNotFoundError|^\s+main\(\)|^\s+for node in|ptxas info|bytes stack frame|remark:/.test(l)).join('\n').trim();
      console.log(`  ${label} (${secs.toFixed(1)} s)${code === 0 ? '' : ' FAILED'}`);
      if (clean && (!quiet || code !== 0)) console.log(clean.replace(/^/gm, '    '));
      res({ code, secs, text });
    });
  });
}

// Runs the compile steps `jobs` at a time; dies on the first failure once all have ended.
// Returns each step's compiler output, in the steps' order.
async function compileAll(steps, what = 'compile') {
  const texts = new Array(steps.length).fill('');
  const queue = steps.map((s, i) => async () => {
    const r = await run(s.cmd, s.argv, `${what} ${s.src.slice(root.length + 1)}${s.tag ? ` [${s.tag}]` : ''}`, what !== 'compile');
    texts[i] = r.text ?? '';
    return r;
  });
  let failed = false;
  await Promise.all(Array.from({ length: jobs }, async () => {
    while (queue.length) {
      const r = await queue.shift()();
      if (r.code !== 0) failed = true;
    }
  }));
  if (failed) die(`${what} failed`);
  return texts;
}

// The resource figures of every kernel (gpu-resources.mjs): printed, written to
// build-gpu/resources-<platform>.{txt,json}; a GEMM kernel that spills to memory fails the build.
function reportResources(rows) {
  const lines = formatResources(rows);
  writeFileSync(join(out, `resources-${platform}.txt`), lines.join('\n') + '\n');
  writeFileSync(join(out, `resources-${platform}.json`), JSON.stringify(rows, null, 2) + '\n');
  console.log(`  kernel resources (build-gpu/resources-${platform}.txt):`);
  for (const l of lines) console.log(`    ${l}`);
  const bad = rows.filter((r) => /^gemm/.test(r.kernel) && spills(r));
  if (rows.length === 0) die('no kernel resource figures in the compiler output');
  if (bad.length > 0) die(`GEMM kernels spill to memory: ${bad.map((r) => `${r.kernel} (${r.arch})`).join(', ')}`);
  const other = rows.filter((r) => spills(r));
  if (other.length > 0) console.log(`  note: spills outside the GEMM kernels: ${other.map((r) => `${r.kernel} (${r.arch})`).join(', ')}`);
}

// clang's HIP mode needs oclc_isa_version_<target>.bc for each target; Debian's device libraries
// (ROCm 5.2) stop at gfx940. build-gpu/rocm-device-libs/ links them all and adds the missing ones for
// gfx94x, one constant each: the ISA version (gfx942 → 9402).
function hipDeviceLibs(targets) {
  const dir = join(out, 'rocm-device-libs');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(hip.devlibs)) if (f.endsWith('.bc')) symlinkSync(join(hip.devlibs, f), join(dir, f));
  for (const t of targets) {
    const m = /^gfx(9)(4)([0-9a-f])$/.exec(t);
    const file = join(dir, `oclc_isa_version_${t.slice(3)}.bc`);
    if (!m || existsSync(file)) continue;
    const version = Number(m[1]) * 1000 + Number(m[2]) * 100 + parseInt(m[3], 16);
    const ll = join(dir, `oclc_isa_version_${t.slice(3)}.ll`);
    writeFileSync(ll, `target triple = "amdgcn-amd-amdhsa"\n@__oclc_ISA_version = linkonce_odr protected local_unnamed_addr addrspace(4) constant i32 ${version}, align 4\n`);
    const r = spawnSync(hip.cmd, ['-c', '-emit-llvm', '-nogpulib', '--target=amdgcn-amd-amdhsa', ll, '-o', file], { encoding: 'utf8' });
    if (r.status !== 0) die(`could not make ${file}: ${r.stderr}`);
  }
  return dir;
}

// The compiler's HIP flags (beyond build.json's): clang needs the language, the ROCm paths and code
// object version 4, which the ROCm 5 runtime that the library links against can load.
function hipModeFlags(devlibDir) {
  return hip !== null && hip.kind === 'clang'
    ? ['-x', 'hip', '--rocm-path=/usr', `--rocm-device-lib-path=${devlibDir}`, '-mcode-object-version=4', '-D__HIP_PLATFORM_AMD__']
    : [];
}

// Which of `targets` the HIP compiler accepts: compiles a one-line kernel for each. Returns
// { ok: [...], skipped: [[target, reason], ...] }.
function probeHipTargets(targets, devlibDir) {
  const src = join(out, 'probe-target.hip');
  writeFileSync(src, '#include <hip/hip_runtime.h>\n__global__ void k(int* p) { p[threadIdx.x] = 1; }\n');
  const ok = [];
  const skipped = [];
  for (const t of targets) {
    const r = spawnSync(compiler, [...hipModeFlags(devlibDir), `--offload-arch=${t}`, '--offload-device-only', '-c', src, '-o', join(out, 'probe-target.o')],
      { env, encoding: 'utf8' });
    if (r.status === 0) ok.push(t);
    else skipped.push([t, (r.stderr.split('\n').find((l) => /error/.test(l)) ?? `exit status ${r.status}`).trim()]);
  }
  return { ok, skipped };
}

async function buildDevice() {
  const archFlags = [];
  let devlibDir = '';
  if (platform === 'hip') {
    mkdirSync(out, { recursive: true });
    if (hip.kind === 'clang') devlibDir = hipDeviceLibs(archList);
    const { ok, skipped } = probeHipTargets(archList, devlibDir);
    for (const [t, why] of skipped) console.log(`  ${explicitArchs ? 'cannot build' : 'skipped'} ${t}: ${compiler} does not accept it (${why})`);
    if (explicitArchs && skipped.length > 0) die(`${compiler} cannot build ${skipped.map((x) => x[0]).join(', ')}`);
    if (ok.length === 0) die(`${compiler} accepts none of ${archList.join(', ')}`);
    archList = ok;
  }
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
  // What the library holds, as backend.cu checks devices against it (with the PTX target on CUDA).
  const ptx = archFlags.filter((f) => /code=compute_/.test(f)).map((f) => /code=(compute_\w+)/.exec(f)[1]);
  const define = [`-DSVDQ_BUILT_ARCHS="${[...archList, ...ptx].join(',')}"`];
  const devFlags = [...(platform === 'cuda' ? cfg.cuda_flags : cfg.hip_flags), ...hipModeFlags(devlibDir), ...archFlags];
  const objDir = join(out, `obj-${platform}`);
  mkdirSync(objDir, { recursive: true });
  const dev = (src, extra = []) => ({ src: p(src), obj: join(objDir, objName(src)), cmd: compiler, argv: [...devFlags, ...extra, ...inc, ...define, '-c', p(src), '-o', join(objDir, objName(src))] });
  const host = (src) => ({ src: p(src), obj: join(objDir, objName(src)), cmd: cxx, argv: [...cfg.host_flags, ...inc, '-c', p(src), '-o', join(objDir, objName(src))] });
  // The slowest first, so that the parallel jobs end together.
  const lib = [...cfg.library_device.map((f) => dev(f, platform === 'cuda' ? ['-Xptxas', '-v'] : [])), ...cfg.library_host.map(host)];
  const test = [dev(cfg.test_device), ...cfg.test_host.map(host)];
  const bench = dev(cfg.bench_device);
  const texts = await compileAll([...lib, ...test, bench]);
  if (platform === 'cuda') {
    reportResources(texts.slice(0, cfg.library_device.length).flatMap(parsePtxas));
  } else {
    // clang's remarks do not name the target: one device-only pass per target.
    const passes = archList.flatMap((a) => cfg.library_device.map((f) => ({
      src: p(f), tag: a, cmd: compiler,
      argv: [...cfg.hip_flags, ...hipModeFlags(devlibDir), `--offload-arch=${a}`, '--offload-device-only', '-Rpass-analysis=kernel-resource-usage',
        ...inc, ...define, '-c', p(f), '-o', join(objDir, `resources-${a}-${objName(f)}`)],
    })));
    const rtexts = await compileAll(passes, 'resources of');
    reportResources(passes.flatMap((ps, i) => parseAmdRemarks(rtexts[i], ps.tag)));
  }

  const link = platform === 'cuda' ? ['--cudart=static', ...archFlags]
    : hip.kind === 'clang' ? ['--hip-link', '--rocm-path=/usr', `--rocm-device-lib-path=${devlibDir}`, ...archFlags] : [...archFlags];
  const libPath = join(out, `libsvdquant_${platform}.so`);
  const libObjs = lib.map((s) => s.obj);
  const targets = [
    { label: `link ${libPath.slice(root.length + 1)}`, argv: ['-shared', ...(platform === 'cuda' ? ['-Xcompiler', '-fPIC'] : ['-fPIC']), ...link, ...libObjs, '-o', libPath] },
    { label: `link build-gpu/test_gpu_${platform}`, argv: [...link, ...test.map((s) => s.obj), ...libObjs, '-o', join(out, `test_gpu_${platform}`)] },
    { label: `link build-gpu/bench_gpu_${platform}`, argv: [...link, bench.obj, ...libObjs, '-o', join(out, `bench_gpu_${platform}`)] },
  ];
  for (const t of targets) {
    const r = await run(compiler, t.argv, t.label);
    if (r.code !== 0) die(`${t.label} failed`);
  }
  const exp = spawnSync('nm', ['-D', '--defined-only', libPath], { encoding: 'utf8' });
  if (exp.status === 0 && !/\bsvdq_gpu_get_api\b/.test(exp.stdout)) die(`${libPath} does not export svdq_gpu_get_api`);
}

async function buildEmu() {
  for (const a of archList) if (!EMU_FLAVOURS[a]) die(`no emulator flavour "${a}" (known: ${Object.keys(EMU_FLAVOURS).join(', ')})`);
  const san = sanitize ? ['-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=undefined'] : [];
  const flags = [...cfg.emu_flags, ...san];
  const common = join(out, sanitize ? 'emu-asan-common' : 'emu-common');
  mkdirSync(common, { recursive: true });
  // Flavour-independent objects (no gpu_compat.h): the repacking, the test driver and its references.
  const commonSrc = [...cfg.library_host, cfg.test_device, ...cfg.test_host];
  const stepFor = (src, dir, extra, tag) => ({
    src: p(src), obj: join(dir, objName(src)), cmd: cxx, tag,
    argv: [...flags, ...extra, ...inc, '-I', p('native/gpu'), ...(src.endsWith('.cu') ? ['-x', 'c++'] : []), '-c', p(src), '-o', join(dir, objName(src))],
  });
  const steps = commonSrc.map((s) => stepFor(s, common, [], 'common'));
  const perFlavour = [...cfg.library_device, ...cfg.emu_runtime, cfg.emu_test];
  const dirs = {};
  for (const a of archList) {
    const dir = join(out, `${sanitize ? 'emu-asan' : 'emu'}-${a}`);
    dirs[a] = dir;
    mkdirSync(dir, { recursive: true });
    const define = [...EMU_FLAVOURS[a], `-DSVDQ_BUILT_ARCHS="${a}"`];
    steps.unshift(...perFlavour.map((s) => stepFor(s, dir, define, a)));
  }
  await compileAll(steps);
  const ldSan = sanitize ? ['-fsanitize=address,undefined'] : [];
  for (const a of archList) {
    const dir = dirs[a];
    const o = (src, d = dir) => join(d, objName(src));
    const libObjs = [...cfg.library_device.map((s) => o(s)), ...cfg.emu_runtime.map((s) => o(s)), ...cfg.library_host.map((s) => o(s, common))];
    const plat = a.startsWith('sm_') ? 'cuda' : 'hip';
    const targets = [
      { label: `link ${dir.slice(root.length + 1)}/libsvdquant_${plat}.so`, argv: ['-shared', ...ldSan, ...libObjs, '-o', join(dir, `libsvdquant_${plat}.so`), '-lpthread'] },
      { label: `link ${dir.slice(root.length + 1)}/test_gpu`, argv: [...ldSan, o(cfg.test_device, common), ...cfg.test_host.map((s) => o(s, common)), ...libObjs, '-o', join(dir, 'test_gpu'), '-lpthread'] },
      { label: `link ${dir.slice(root.length + 1)}/test_emu`, argv: [...ldSan, o(cfg.emu_test), ...cfg.emu_runtime.map((s) => o(s)), '-o', join(dir, 'test_emu'), '-lpthread'] },
    ];
    for (const t of targets) {
      const r = await run(cxx, t.argv, t.label);
      if (r.code !== 0) die(`${t.label} failed`);
    }
  }
}

const t0 = Date.now();
console.log(`build-gpu: ${platform}${sanitize ? ' (sanitizers)' : ''} with ${compiler} for ${archList.join(', ')}${platform === 'hip' && !explicitArchs ? ' (the ones it accepts)' : ''} (${jobs} parallel jobs) → ${out}`);
if (platform === 'emu') await buildEmu();
else await buildDevice();
console.log(`build-gpu: ${platform} for ${archList.join(', ')} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
