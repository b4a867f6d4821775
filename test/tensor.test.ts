import t from 'tap';
import { Tensor, ArgumentError } from '../lib/index.js';
import { f32BitsToF16Bits } from '../lib/tensor-convert.js';

const bitsOf = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0];

t.test('f32 -> f16 rounds to nearest even (hand vectors)', async (t) => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff],
    [65519.99, 0x7bff], [65520, 0x7c00], [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [1 + 2 ** -11, 0x3c00], // tie -> even (mantissa 0)
    [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (mantissa 2)
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], // tie at half the smallest subnormal -> 0
    [1.5 * 2 ** -24, 0x0002], // tie 1|2 -> 2
    [2 ** -25 + 2 ** -40, 0x0001], [2 ** -26, 0x0000], [3 * 2 ** -16, 0x0300],
  ];
  for (const [x, want] of cases) t.equal(f32BitsToF16Bits(bitsOf(x)), want, `f16(${x})`);
  const nan = f32BitsToF16Bits(0x7fc00000);
  t.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, 'NaN stays NaN');
});

t.test('f32 -> bf16 rounds to nearest even and back', async (t) => {
  const src = Tensor.fromArray([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -3.5, NaN, Infinity, 3.4e38]);
  const b = src.to('bf16');
  t.equal(b.dtype, 'bf16');
  t.same(Array.from(b.data.slice(0, 5)), [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xc060]);
  t.ok(Number.isNaN(b.toArray()[5]), 'NaN survives');
  t.equal(b.toArray()[6], Infinity);
  t.equal(b.data[7], 0x7f80, '3.4e38 rounds up to Inf in bf16');
  const back = b.to('f32');
  t.same(back.toArray().slice(0, 5), [1, 1, 1 + 2 ** -6, 1 + 2 ** -7, -3.5]);
});

t.test('f16 round trip of every finite f16 value is exact', async (t) => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const f16 = Tensor.fromStorage(all, [65536], 'f16');
  const f32 = f16.to('f32');
  const again = f32.to('f16');
  let mismatches = 0;
  for (let i = 0; i < 65536; i++) {
    const isNaN16 = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (!isNaN16 && again.data[i] !== i) mismatches++;
  }
  t.equal(mismatches, 0);
});

t.test('shape, dtype, storage and views', async (t) => {
  const z = Tensor.zeros([2, 3, 4], 'f32');
  t.equal(z.numel, 24);
  t.equal(z.byteLength, 96);
  t.equal(z.device, 'cpu');
  const packed = Tensor.zeros([3, 10], 'int4');
  t.equal(packed.byteLength, 15, 'two 4-bit elements per byte');
  t.throws(() => Tensor.zeros([3, 5], 'fp4_e2m1'), ArgumentError, 'odd last dim for packed dtype');
  t.throws(() => Tensor.zeros([2, -1], 'f32'), { code: 'ERR_SVDQ_ARGUMENT', argument: 'shape' });
  t.throws(() => Tensor.zeros([2], 'f64' as never), /invalid argument 'dtype'/);
  const r = z.reshape([6, 4]);
  r.data[0] = 5;
  t.equal(z.data[0], 5, 'reshape shares storage');
  t.throws(() => z.reshape([5, 5]), /expected a shape with 24 elements/);
  const c = z.clone();
  c.data[0] = 7;
  t.equal(z.data[0], 5, 'clone copies');
  t.throws(() => Tensor.fromStorage(new Float32Array(3), [2, 2], 'f32'), /4 elements of storage/);
  t.throws(() => Tensor.fromStorage(new Uint8Array(4) as never, [4], 'f32'), /Float32Array/);
  const bytes = new Uint8Array(9);
  new Float32Array(bytes.buffer, 0, 2).set([1.5, -2]);
  t.throws(() => Tensor.fromBytes(bytes.subarray(2), [2], 'f32'), /expected 8 bytes/);
  const fromBytes = Tensor.fromBytes(bytes.subarray(0, 8), [2], 'f32');
  t.same(fromBytes.toArray(), [1.5, -2]);
  const shifted = new Uint8Array(12);
  shifted.set(bytes.subarray(0, 8), 1);
  t.same(Tensor.fromBytes(shifted.subarray(1, 9), [2], 'f32').toArray(), [1.5, -2], 'unaligned bytes are copied once');
  t.throws(() => Tensor.fromArray([1, 2, 3], [2, 2]), /3 elements/);
  t.throws(() => packed.toArray(), /dequantize/);
  t.same(Tensor.fromStorage(new Int8Array([-3, 4]), [2], 'i8').to('f32').toArray(), [-3, 4]);
});

t.test('bad construction is an ArgumentError naming the argument (issue 18)', async (t) => {
  // Storage too large for a typed array: before, a bare RangeError.
  for (const shape of [[1e6, 1e6], [1e5, 1e5]]) {
    t.throws(() => Tensor.zeros(shape, 'f32'), { name: 'ArgumentError', argument: 'shape', message: /^invalid argument 'shape': expected a shape whose storage can be allocated \(/ }, `zeros([${shape}])`);
  }
  // Values that are not numbers: before, silently NaN.
  t.throws(() => Tensor.fromArray([{}, 'x'] as unknown as number[]), { name: 'ArgumentError', argument: 'values[0]', message: /expected a number, got an object \(Object\)/ });
  t.throws(() => Tensor.fromArray([1, 'x'] as unknown as number[]), { name: 'ArgumentError', argument: 'values[1]', message: /got "x"/ });
  t.throws(() => Tensor.fromArray([1, undefined] as unknown as number[]), { name: 'ArgumentError', argument: 'values[1]' });
  t.same(Tensor.fromArray(new Int8Array([1, -2])).toArray(), [1, -2], 'typed arrays are numbers by construction');
  t.same(Tensor.fromArray([NaN, Infinity]).toArray(), [NaN, Infinity], 'NaN and Inf are numbers: kept');
  // The constructor is private: before, `new Tensor()` made a tensor with no shape.
  const Ctor = Tensor as unknown as new (...args: unknown[]) => Tensor;
  t.throws(() => new Ctor(), { name: 'ArgumentError', argument: 'new Tensor()', message: /use Tensor\.zeros, Tensor\.fromArray/ });
  t.throws(() => new Ctor('f32', [1], new Float32Array(1)), { name: 'ArgumentError' });
});

t.test('every use of a disposed tensor is an ArgumentError, never a TypeError (issue 18)', async (t) => {
  const { gelu } = await import('../lib/graph/index.js');
  // Engine-allocated storage (detached on dispose) and JavaScript-owned storage (only marked).
  for (const make of [async () => gelu(Tensor.fromArray([1, 2, 3, 4], [2, 2])), async () => Tensor.fromArray([1, 2, 3, 4], [2, 2])]) {
    const x = await make();
    const view = x.reshape([4]);
    x.dispose();
    const uses: Array<[string, () => unknown]> = [
      ['data', () => x.data], ['toArray', () => x.toArray()], ['clone', () => x.clone()], ['to(f16)', () => x.to('f16')],
      ['to(f32)', () => x.to('f32').data], ['bytes', () => x.bytes()], ['byteLength', () => x.byteLength], ['reshape', () => x.reshape([4])],
    ];
    for (const [label, use] of uses) {
      t.throws(use, { name: 'ArgumentError', code: 'ERR_SVDQ_ARGUMENT', message: /expected a tensor that has not been disposed/ }, label);
    }
    t.match(x.toString(), /disposed/, 'toString still works');
    t.equal(x.numel, 4, 'so do shape and numel');
    if (view.disposed) t.throws(() => view.toArray(), { name: 'ArgumentError' }, 'a view of freed storage is disposed too');
    else t.same(view.toArray(), [1, 2, 3, 4], 'a view of JavaScript-owned storage keeps working');
  }
});
