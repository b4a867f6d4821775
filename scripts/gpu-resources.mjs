// The compilers' resource figures of every GPU kernel (registers, spills, stack/scratch, shared
// memory), parsed from `ptxas -v` (nvcc -Xptxas -v) and clang's kernel-resource-usage remarks, for
// scripts/build-gpu.mjs: it writes them to build-gpu/resources-<platform>.{txt,json} and fails the
// build when a GEMM kernel spills (NVIDIA: spill stores/loads or a stack frame; AMD: VGPR spills or
// scratch memory). SGPR spills on AMD go to VGPR lanes, not memory: reported, not failed.
import { spawnSync } from 'node:child_process';

function demangle(names) {
  const r = spawnSync('c++filt', [], { input: names.join('\n'), encoding: 'utf8' });
  const out = r.status === 0 ? r.stdout.split('\n') : names;
  // "svdq_gpu::(anonymous namespace)::gemm_kernel<0, 1>(svdq_gpu::LayerView, ...)" → "gemm_kernel<0, 1>"
  return names.map((n, i) => (out[i] ?? n).replace(/\(anonymous namespace\)::/g, '').replace(/\(.*$/, '').replace(/^.*::/, ''));
}

/** Kernels from nvcc -Xptxas -v output: [{ kernel, arch, registers, stack, spillStores, spillLoads, smem }]. */
export function parsePtxas(text) {
  const rows = [];
  let cur = null;
  for (const line of text.split('\n')) {
    let m = /Compiling entry function '([^']+)' for '([^']+)'/.exec(line);
    if (m) {
      cur = { mangled: m[1], arch: m[2], registers: 0, stack: 0, spillStores: 0, spillLoads: 0, smem: 0 };
      rows.push(cur);
      continue;
    }
    if (!cur) continue;
    m = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (m) [cur.stack, cur.spillStores, cur.spillLoads] = m.slice(1).map(Number);
    m = /Used (\d+) registers/.exec(line);
    if (m) {
      cur.registers = Number(m[1]);
      const s = /(\d+) bytes smem/.exec(line);
      cur.smem = s ? Number(s[1]) : 0;
    }
  }
  const names = demangle(rows.map((r) => r.mangled));
  return rows.map((r, i) => ({ kernel: names[i], arch: r.arch, registers: r.registers, stack: r.stack, spillStores: r.spillStores, spillLoads: r.spillLoads, smem: r.smem }));
}

/** Kernels from clang -Rpass-analysis=kernel-resource-usage output for one target. */
export function parseAmdRemarks(text, arch) {
  const FIELDS = { 'SGPRs Spill': 'sgprSpill', 'VGPRs Spill': 'vgprSpill', SGPRs: 'sgprs', VGPRs: 'vgprs', AGPRs: 'agprs',
    'ScratchSize [bytes/lane]': 'scratch', 'LDS Size [bytes/block]': 'lds' };
  const re = /remark: .*?(Function Name|SGPRs Spill|VGPRs Spill|SGPRs|VGPRs|AGPRs|ScratchSize \[bytes\/lane\]|LDS Size \[bytes\/block\]): (\S+)/;
  const rows = [];
  for (const line of text.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    if (m[1] === 'Function Name') {
      rows.push({ mangled: m[2], arch, vgprs: 0, agprs: 0, sgprs: 0, scratch: 0, vgprSpill: 0, sgprSpill: 0, lds: 0 });
    } else if (rows.length > 0) {
      rows[rows.length - 1][FIELDS[m[1]]] = Number(m[2]);
    }
  }
  const names = demangle(rows.map((r) => r.mangled));
  return rows.map(({ mangled, ...r }, i) => ({ ...r, kernel: names[i] }));
}

/** True when the kernel spills to memory. */
export function spills(row) {
  return row.spillStores !== undefined
    ? row.spillStores > 0 || row.spillLoads > 0 || row.stack > 0
    : row.vgprSpill > 0 || row.scratch > 0;
}

/** The report as aligned text lines. */
export function formatResources(rows) {
  const cuda = rows.length > 0 && rows[0].spillStores !== undefined;
  const head = cuda
    ? ['kernel', 'arch', 'registers', 'stack B', 'spill st/ld B', 'static smem B']
    : ['kernel', 'arch', 'VGPRs', 'AGPRs', 'SGPRs', 'scratch B/lane', 'VGPR/SGPR spills', 'static LDS B'];
  const body = rows.map((r) => (cuda
    ? [r.kernel, r.arch, String(r.registers), String(r.stack), `${r.spillStores}/${r.spillLoads}`, String(r.smem)]
    : [r.kernel, r.arch, String(r.vgprs), String(r.agprs), String(r.sgprs), String(r.scratch), `${r.vgprSpill}/${r.sgprSpill}`, String(r.lds)]));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cols) => cols.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
}
