// Tensor.dispose(): frees an engine-allocated output at once (its bytes leave V8's external-memory
// count), marks the tensor and its views disposed, and every op and module rejects a disposed input.
import t from 'tap';
import { Tensor } from '../lib/tensor.js';
import { gelu, Linear, Sequential, GELU } from '../lib/graph/index.js';
import { ErrorCorrectedLinear } from '../lib/quant/error-corrected-linear.js';
import { quantize, enableNativeInference } from '../lib/index.js';
import { randomTensor, rng } from './support/graph-reference.js';

t.test('dispose frees a native output now and V8 stops counting it', async (t) => {
  const x = randomTensor([256, 512], 1, rng(1));
  const y = await gelu(x);
  const view = y.reshape([512, 256]);
  const bytes = y.byteLength;
  t.equal(bytes, 256 * 512 * 4);
  t.notOk(y.disposed);
  const before = process.memoryUsage().external;
  y.dispose();
  const after = process.memoryUsage().external;
  // process.memoryUsage() itself allocates a few external bytes; the 512 KiB must be gone.
  t.ok(before - after >= bytes - 4096, `external memory fell by ${before - after} bytes, about the ${bytes} freed`);
  t.ok(y.disposed);
  t.throws(() => y.data, { code: 'ERR_SVDQ_ARGUMENT', message: /not been disposed/ }, 'the storage is gone: reading it is a typed error');
  t.ok(view.disposed, 'a reshape view shares the storage, so it is disposed too');
  t.match(y.toString(), /disposed/);
  t.doesNotThrow(() => y.dispose(), 'idempotent');
  t.equal(x.data.length, 256 * 512, 'the input is untouched');
  t.notOk(x.disposed);
});

t.test('Symbol.dispose disposes (for `using`)', async (t) => {
  const y = await gelu(randomTensor([8, 16], 1, rng(2)));
  y[Symbol.dispose]();
  t.ok(y.disposed);
});

t.test('a JavaScript-owned tensor is marked disposed but its array is left to the collector', async (t) => {
  const x = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
  const view = x.reshape([4]);
  const data = view.data;
  x.dispose();
  t.ok(x.disposed);
  t.same([...data], [1, 2, 3, 4], 'nothing to free early: the array is intact');
  t.notOk(view.disposed, 'a view of JavaScript-owned storage is not affected (its storage still exists)');
  t.throws(() => x.data, { code: 'ERR_SVDQ_ARGUMENT' }, 'but the disposed tensor itself refuses every use');
});

t.test('ops and modules reject a disposed input with an ArgumentError naming it', async (t) => {
  const x = randomTensor([4, 8], 1, rng(3));
  const dead = await gelu(x);
  dead.dispose();
  await t.rejects(gelu(dead), { code: 'ERR_SVDQ_ARGUMENT', message: /'x'.*not been disposed/ });
  const own = Tensor.fromArray(new Array(32).fill(1), [4, 8]);
  own.dispose();
  await t.rejects(gelu(own), { code: 'ERR_SVDQ_ARGUMENT', message: /not been disposed/ }, 'also when the storage still exists');
  const model = new Sequential(new Linear(8, 8), new GELU());
  await t.rejects(model.call(dead), { code: 'ERR_SVDQ_ARGUMENT', message: /'inputs\[0\]'.*not been disposed/ });
  await t.rejects(model.call(own), { code: 'ERR_SVDQ_ARGUMENT', message: /'inputs\[0\]'/ });
  const fine = await model.call(x);
  t.equal(fine.shape.join(), '4,8', 'a live input still works');
});

t.test('quantized layers, reference and native, reject a disposed input', async (t) => {
  const model = new Sequential(new Linear(64, 64));
  await quantize(model, { scheme: 'w4a4', rank: 8 }, [[randomTensor([32, 64], 1, rng(4))]]);
  const layer = model.getSubmodule('0');
  t.ok(layer instanceof ErrorCorrectedLinear);
  const dead = await gelu(randomTensor([2, 64], 1, rng(5)));
  dead.dispose();
  await t.rejects((layer as ErrorCorrectedLinear).forward(dead), { code: 'ERR_SVDQ_ARGUMENT', message: /'x'.*not been disposed/ });
  await enableNativeInference(model, { backend: 'cpu' });
  const native = model.getSubmodule('0');
  await t.rejects(native.forward(dead), { code: 'ERR_SVDQ_ARGUMENT', message: /'x'.*not been disposed/ });
  const y = await model.call(randomTensor([2, 64], 1, rng(6)));
  y.dispose();
  t.ok(y.disposed, 'a native layer output can be disposed');
});
