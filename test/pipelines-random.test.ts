// The pipelines' seeded Gaussian noise (lib/pipelines/random.ts) against an independent reference
// written here from the algorithm its file comment documents (BigInt arithmetic instead of int32
// tricks), plus its statistics, per-seed batches and argument checks.
import t from 'tap';
import { ArgumentError, GaussianRandom, randn, randnBatch } from '../lib/index.js';

const M32 = (1n << 32n) - 1n;

/** SplitMix32 as documented: a running sum x += 0x9e3779b9 + input, then the murmur3 finaliser. */
function referenceState(seed: number): bigint[] {
  let x = 0n;
  const mix = (input: bigint): bigint => {
    x = (x + 0x9e3779b9n + input) & M32;
    let z = x;
    z = ((z ^ (z >> 16n)) * 0x85ebca6bn) & M32;
    z = ((z ^ (z >> 13n)) * 0xc2b2ae35n) & M32;
    return (z ^ (z >> 16n)) & M32;
  };
  const big = BigInt(seed);
  return [mix(big & M32), mix(big >> 32n), mix(0n), mix(0n)];
}

function referenceGaussians(seed: number, count: number): number[] {
  const s = referenceState(seed);
  const rotl = (v: bigint, k: bigint) => ((v << k) | (v >> (32n - k))) & M32;
  const next = (): bigint => {
    const result = (rotl((s[1] * 5n) & M32, 7n) * 9n) & M32;
    const tt = (s[1] << 9n) & M32;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= tt;
    s[3] = rotl(s[3], 11n);
    return result;
  };
  const uniform = () => {
    const a = next();
    const b = next() >> 11n;
    return Number(a * (1n << 21n) + b + 1n) / 2 ** 53;
  };
  const out: number[] = [];
  while (out.length < count) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    out.push(r * Math.cos(theta), r * Math.sin(theta));
  }
  return out.slice(0, count).map(Math.fround);
}

t.test('matches the documented algorithm (independent BigInt reference)', async (t) => {
  for (const seed of [0, 1, 42, 2 ** 32, 2 ** 53 - 1]) {
    const got = randn([7, 11], seed).toArray();
    t.same(got, referenceGaussians(seed, 77), `seed ${seed}`);
  }
});

t.test('standard normal statistics', async (t) => {
  const values = randn([200_000], 7).toArray();
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
  // 200k samples: the standard error of the mean is 0.0022 and of the variance 0.0032.
  t.ok(Math.abs(mean) < 0.01, `mean ${mean.toFixed(4)}`);
  t.ok(Math.abs(variance - 1) < 0.015, `variance ${variance.toFixed(4)}`);
  const within1 = values.filter((v) => Math.abs(v) < 1).length / values.length;
  t.ok(Math.abs(within1 - 0.6827) < 0.005, `P(|z| < 1) = ${within1.toFixed(4)}`);
});

t.test('seeds: deterministic, distinct, and per item in a batch', async (t) => {
  t.same(randn([16], 3).toArray(), randn([16], 3).toArray());
  t.notSame(randn([16], 0).toArray(), randn([16], 2 ** 32).toArray(), 'the high bits of the seed count');
  const batch = randnBatch([2, 3], [9, 4, 9]);
  t.same(batch.shape, [3, 2, 3]);
  const values = batch.toArray();
  t.same(values.slice(0, 6), randn([2, 3], 9).toArray());
  t.same(values.slice(6, 12), randn([2, 3], 4).toArray());
  t.same(values.slice(12), values.slice(0, 6), 'the same seed twice gives the same item');
  const stream = new GaussianRandom(5);
  const first = [stream.nextGaussian(), stream.nextGaussian(), stream.nextGaussian()].map(Math.fround);
  t.same(first, randn([3], 5).toArray(), 'the stream and the tensor agree');
});

t.test('bad seeds and shapes are ArgumentErrors', async (t) => {
  for (const seed of [-1, 1.5, 2 ** 53, NaN, '1']) t.throws(() => randn([2], seed as number), ArgumentError, String(seed));
  t.throws(() => randnBatch([2], []), { name: 'ArgumentError', argument: 'seeds' });
  t.throws(() => randnBatch([2], [0, -3]), { name: 'ArgumentError', argument: 'seeds[1]' });
  t.throws(() => randn([-1], 0), ArgumentError);
});
