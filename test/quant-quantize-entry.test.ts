/** quantize(): the public name takes a model (SVDQuant, as quantizeModel) or a tensor (element format). */
import t from 'tap';
import { quantize, quantizeModel, quantizeTensor, Tensor, Sequential, LayerNorm, Linear, ErrorCorrectedLinear } from '../lib/index.js';

const batch = (): Tensor[] => [Tensor.fromArray(Array.from({ length: 8 * 64 }, (_, i) => Math.sin(i) * (i % 64 === 3 ? 20 : 1)), [8, 64])];
const model = () => new Sequential(new LayerNorm(64), new Linear(64, 32, { seed: 1 }));

t.test('a model: the same result as quantizeModel', async (t) => {
  const a = model(), b = model();
  const ra = await quantize(a, { rank: 4, scheme: 'mxfp4' }, [batch()]);
  const rb = await quantizeModel(b, { rank: 4, scheme: 'mxfp4' }, [batch()]);
  t.same(ra.layers.map((l) => [l.name, l.errorAfter]), rb.layers.map((l) => [l.name, l.errorAfter]));
  t.ok(a.getSubmodule('1') instanceof ErrorCorrectedLinear);
  const x = batch()[0];
  t.same(Array.from((await a.call(x)).data), Array.from((await b.call(x)).data), 'bit-identical models');
});

t.test('a tensor: the element-format quantizer', async (t) => {
  const x = Tensor.fromArray([0.5, -1, 3, 6, 0, 2, -6, 1.5], [1, 8]);
  const a = await quantize(x, 'mxfp4');
  const b = await quantizeTensor(x, 'mxfp4');
  t.equal(a.format, 'mxfp4');
  t.same(Array.from(a.codes.data as Uint8Array), Array.from(b.codes.data as Uint8Array));
});

t.test('anything else: a typed error naming the argument', async (t) => {
  await t.rejects(quantize(42 as never, 'int4' as never), { name: 'ArgumentError', message: /invalid argument 'target': expected a Module .* or a Tensor/ });
});
