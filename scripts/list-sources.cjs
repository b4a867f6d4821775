// Lists the kernel sources for binding.gyp by naming convention, so that adding a kernel file needs
// no build-file edit: native/{cpu,formats,quant}/*_avx2.cpp -> the AVX2 library, *_avx512.cpp -> the
// AVX-512 library, every other .cpp there -> the baseline (no -m flag) part of the addon.
// Usage: node scripts/list-sources.cjs core|avx2|avx512   (CMakeLists.txt globs the same way)
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const kind = process.argv[2];
const files = [];
for (const dir of ['native/cpu', 'native/formats', 'native/quant']) {
  if (!fs.existsSync(path.join(root, dir))) continue;
  for (const f of fs.readdirSync(path.join(root, dir)).sort()) {
    if (!f.endsWith('.cpp')) continue;
    const isa = f.endsWith('_avx512.cpp') ? 'avx512' : f.endsWith('_avx2.cpp') ? 'avx2' : 'core';
    if (isa === kind) files.push(`${dir}/${f}`);
  }
}
process.stdout.write(files.join(' '));
