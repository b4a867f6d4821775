// The README's quick start runs as written (examples/quickstart.mjs imports the built package).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../lib/native.js';

t.test('examples/quickstart.mjs runs and its reloaded model matches', async (t) => {
  const r = spawnSync(process.execPath, [join(packageRoot, 'examples', 'quickstart.mjs')], { cwd: packageRoot, encoding: 'utf8' });
  t.equal(r.status, 0, `exit status 0 (stderr: ${r.stderr})`);
  t.match(r.stdout, /native layers: 1\.fc1, 1\.fc2, 2 \(backend cpu\)/);
  t.match(r.stdout, /reloaded model matches the reference path: true/);
  t.match(r.stdout, /LoRA on 1\.fc1: output changed true, restored exactly after remove true/);
  const err = /relative output error of the quantized model: ([0-9.]+)/.exec(r.stdout);
  t.ok(err !== null && Number(err[1]) < 0.5, 'the quantized model stays close to the original');
});
