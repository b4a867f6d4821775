/**
 * quantizeModel when nothing would be quantized (issue 18 leftover): calibration batches that reach
 * none of the chosen layers, and a configuration that skips every Linear, are typed errors instead of
 * a successful report with every layer skipped; a model with nothing to quantize by design is not.
 */
import t from 'tap';
import { quantizeModel, Tensor, Sequential, Linear, Module, ErrorCorrectedLinear } from '../lib/index.js';

const x = (rows: number, k: number): Tensor => Tensor.fromArray(Array.from({ length: rows * k }, (_, i) => Math.sin(i * 0.7)), [rows, k]);

/** Two Linears reachable only through `path: 'main'`; the 'other' path never calls them. */
class TwoPaths extends Module {
  readonly a = new Linear(16, 16, { seed: 1 });
  readonly b = new Linear(16, 8, { seed: 2 });
  constructor() {
    super();
    this.registerModule('a', this.a);
    this.registerModule('b', this.b);
  }
  async forward(input: Tensor, path = 'main'): Promise<Tensor> {
    return path === 'main' ? this.b.call(await this.a.call(input)) : input;
  }
}

t.test('batches that never reach a chosen layer: an ArgumentError naming them, the model untouched', async (t) => {
  const model = new TwoPaths();
  await t.rejects(quantizeModel(model, { rank: 2 }, [[x(4, 16), 'other'], [x(4, 16), 'other']]), {
    name: 'ArgumentError',
    message: /invalid argument 'calibration': expected batches that reach the layers chosen for quantization: 2 batch\(es\) ran through the model, but none of 'a', 'b' was called/,
  });
  t.ok(model.getSubmodule('a') instanceof Linear && !(model.getSubmodule('a') instanceof ErrorCorrectedLinear), 'nothing replaced');
  // One batch reaching the layers is enough: then the layers run and are quantized.
  const r = await quantizeModel(model, { rank: 2, gptq: false, searchAlpha: false }, [[x(4, 16), 'other'], [x(8, 16), 'main']]);
  t.same(r.layers.map((l) => l.name), ['a', 'b']);
});

t.test('a configuration that skips every Linear: an ArgumentError naming the layers and reasons', async (t) => {
  const model = new Sequential(new Linear(16, 16, { seed: 1 }), new Linear(16, 8, { seed: 2 }));
  await t.rejects(quantizeModel(model, { rank: 2, exclude: ['*'] }, [[x(4, 16)]]), {
    name: 'ArgumentError',
    message: /invalid argument 'config': expected a configuration that leaves at least one Linear to quantize: all 2 of the model's Linear layers are skipped: '0' \(excluded by pattern '\*'\), '1' \(excluded by pattern '\*'\)/,
  });
  await t.rejects(quantizeModel(model, { rank: 2, minDim: 64 }, [[x(4, 16)]]), { name: 'ArgumentError', message: /'0' \(min\(N, K\) = 16 is below minDim 64\)/ });
  t.ok(!(model.getSubmodule('0') instanceof ErrorCorrectedLinear), 'nothing replaced');
});

t.test('nothing to quantize by design (no Linear, or all quantized already): an empty report', async (t) => {
  const noLinear = new Sequential(new Sequential());
  const r = await quantizeModel(noLinear, {}, [[x(2, 16)]]);
  t.same(r.layers, []);
  const model = new Sequential(new Linear(16, 16, { seed: 1 }));
  await quantizeModel(model, { rank: 2, gptq: false, searchAlpha: false }, [[x(8, 16)]]);
  const again = await quantizeModel(model, { rank: 2 }, [[x(8, 16)]]);
  t.same(again.layers, []);
  t.match(again.skipped, [{ name: '0', reason: /already an ErrorCorrectedLinear/ }]);
});
