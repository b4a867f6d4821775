import t from 'tap';
import { ArgumentError } from '../lib/errors.js';
import { Tensor } from '../lib/tensor.js';
import { tensorToImages, unitToByte } from '../lib/image/from-tensor.js';

// Expected bytes worked out by hand from diffusers' postprocess: v = clamp(f32(f32(x / 2) + 0.5), 0, 1),
// then round_half_even(f32(v * 255)).
const BYTE_VECTORS: Array<[number, number, string]> = [
  [-1, 0, 'v = 0'],
  [1, 255, 'v = 1'],
  [-3, 0, 'clamped below'],
  [2.5, 255, 'clamped above'],
  [-Infinity, 0, '-Inf clamps to 0'],
  [Infinity, 255, 'Inf clamps to 1'],
  [NaN, 0, "NaN: numpy's cast to uint8 gives 0 on x86"],
  [0, 128, 'v = 0.5: 127.5 is a tie, rounds to even 128'],
  [-0.5, 64, 'v = 0.25: 63.75'],
  [0.5, 191, 'v = 0.75: 191.25'],
  // f32(v * 255) is exactly 64.5 although v * 255 in real numbers is 64.5000037...: float32
  // arithmetic makes the tie, which goes to even 64 (float64 arithmetic would give 65).
  [-0.4941176176071167, 64, 'f32 product 64.5, tie down to even'],
  // Likewise f32(v * 255) = 65.5 exactly: the tie goes up to even 66.
  [-0.48627448081970215, 66, 'f32 product 65.5, tie up to even'],
  [-1 + 2 ** -30, 0, 'v rounds to 0 in f32'],
];

t.test('values map to bytes as diffusers postprocess does, ties to even in float32', async (t) => {
  for (const [x, expected, why] of BYTE_VECTORS) t.equal(unitToByte(x), expected, `${x}: ${why}`);
  const tensor = Tensor.fromArray(BYTE_VECTORS.map(([x]) => x), [1, 1, 1, BYTE_VECTORS.length]);
  const [image] = tensorToImages(tensor);
  t.same(Array.from(image.data), BYTE_VECTORS.map(([, byte]) => byte), 'the same bytes through tensorToImages');
});

t.test('[B, C, H, W] planar values become B interleaved images in batch order', async (t) => {
  // Value at (b, c, y, x) encodes its position; bytes follow from x = 2 * byte / 255 - 1 exactly
  // enough: byte k maps back to k for every k used here.
  const [B, C, H, W] = [2, 3, 2, 3];
  const byteAt = (b: number, c: number, y: number, x: number) => 10 * b + 50 * c + 3 * y + x;
  const values: number[] = [];
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) values.push((2 * byteAt(b, c, y, x)) / 255 - 1);
  const images = tensorToImages(Tensor.fromArray(values, [B, C, H, W]));
  t.equal(images.length, 2);
  for (let b = 0; b < B; b++) {
    const image = images[b];
    t.same([image.width, image.height, image.channels], [W, H, C]);
    const expected: number[] = [];
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < C; c++) expected.push(byteAt(b, c, y, x));
    t.same(Array.from(image.data), expected, `image ${b}: row-major, channels interleaved`);
  }
});

t.test('[C, H, W] gives one image; C = 1 gray and C = 4 RGBA', async (t) => {
  const gray = tensorToImages(Tensor.fromArray([-1, 0, 1, 0.5], [1, 2, 2]));
  t.equal(gray.length, 1);
  t.same([gray[0].width, gray[0].height, gray[0].channels], [2, 2, 1]);
  t.same(Array.from(gray[0].data), [0, 128, 255, 191]);
  const rgba = tensorToImages(Tensor.fromArray([-1, 1, 0, -0.5], [4, 1, 1]));
  t.same([rgba[0].channels, ...rgba[0].data], [4, 0, 255, 128, 64]);
});

t.test('f16 and bf16 tensors give the bytes of their f32 values', async (t) => {
  const values = [-1, -0.5, 0, 0.25, 0.5, 1, 0.3];
  const f32 = Tensor.fromArray(values, [1, 1, 7]);
  for (const dtype of ['f16', 'bf16'] as const) {
    const narrow = f32.to(dtype);
    t.same(Array.from(tensorToImages(narrow)[0].data), Array.from(tensorToImages(narrow.to('f32'))[0].data), dtype);
  }
});

t.test('bad tensors get ArgumentErrors naming the tensor', async (t) => {
  t.throws(() => tensorToImages([1, 2] as never), ArgumentError);
  t.throws(() => tensorToImages(Tensor.zeros([1, 2, 4, 4], 'f32')), { argument: 'tensor', message: /1, 3 or 4/ });
  t.throws(() => tensorToImages(Tensor.zeros([4, 4], 'f32')), { argument: 'tensor', message: /\[B, C, H, W\]/ });
  t.throws(() => tensorToImages(Tensor.zeros([1, 1, 1, 2, 2], 'f32')), { argument: 'tensor', message: /\[B, C, H, W\]/ });
  t.throws(() => tensorToImages(Tensor.zeros([1, 1, 0, 2], 'f32')), { argument: 'tensor', message: /H and W/ });
  t.throws(() => tensorToImages(Tensor.zeros([1, 1, 2, 2], 'i32')), { argument: 'tensor', message: /dtype/ });
  const disposed = Tensor.zeros([1, 1, 2, 2], 'f32');
  disposed.dispose();
  t.throws(() => tensorToImages(disposed), { argument: 'tensor', message: /disposed/ });
  t.same(tensorToImages(Tensor.zeros([0, 3, 2, 2], 'f32')), [], 'an empty batch gives no images');
});
