// Builds the fake GPU backend (native/tests/fake_gpu_backend.cpp: the gpu_abi.h C ABI on the host)
// with g++ into a directory, for the tests of the GPU loader, layers and toggles on machines without
// a GPU. A failing compile throws: the tests that need it fail, they are never skipped silently.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function gxx(args: string[]): void {
  try {
    execFileSync(process.env.CXX ?? 'g++', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`compiling the fake GPU backend failed: ${err.stderr?.toString() ?? err.message}`);
  }
}

/** Compiles the fake backend to `dir/name` (a name containing "hip" makes it report platform 'hip'). */
export function buildFakeGpuBackend(dir: string, name = 'libsvdquant_cuda.so'): string {
  const out = join(dir, name);
  gxx([
    '-std=c++17', '-O2', '-shared', '-fPIC', '-fvisibility=hidden', '-Inative/include', '-Inative/tests',
    'native/tests/fake_gpu_backend.cpp', 'native/tests/lowbit_reference.cpp', 'native/formats/quantize_portable.cpp',
    '-o', out,
  ]);
  return out;
}

/** A valid shared library that does not export svdq_gpu_get_api. */
export function buildLibraryWithoutSymbol(dir: string): string {
  const src = join(dir, 'nosym.cpp');
  writeFileSync(src, 'extern "C" int svdq_not_the_api(void) { return 42; }\n');
  const out = join(dir, 'libnosym.so');
  gxx(['-shared', '-fPIC', src, '-o', out]);
  return out;
}

/** Sets environment variables for the duration of `fn` (undefined deletes), then restores them. */
export async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = new Map<string, string | undefined>();
  for (const [k, v] of Object.entries(vars)) {
    saved.set(k, process.env[k]);
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
