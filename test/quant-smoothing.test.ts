// Smoothing factor of DESIGN.md §2.1, checked against values worked out by hand.
import t from 'tap';
import { smoothingFactors, smoothingValue, weightColumnAbsMax, scaleColumns, SMOOTH_MAX, SMOOTH_MIN } from '../lib/quant/index.js';

t.test('λ = a^α / w^β with β = 1 − α by default', async (t) => {
  // a = 16, w = 4, α = 0.5: 16^0.5 / 4^0.5 = 4 / 2 = 2
  t.equal(smoothingValue(16, 4, 0.5, 0.5), 2);
  // a = 8, w = 2, α = 1/3, β = 2/3: 2 / 2^(2/3) = 2^(1/3)
  const lam = smoothingFactors([16, 8, 9], [4, 2, 1], 0.5);
  t.equal(lam[0], 2);
  t.ok(Math.abs(lam[1] - Math.sqrt(8 / 2)) < 1e-6); // α = 0.5: sqrt(8)/sqrt(2) = 2
  t.equal(lam[2], 3); // sqrt(9)/sqrt(1)
  const l2 = smoothingFactors([8], [2], 1 / 3);
  t.ok(Math.abs(l2[0] - Math.cbrt(2)) < 1e-6);
  // explicit β: a = 4, w = 2, α = 1, β = 0 → 4; α = 0, β = 1 → 1/2
  t.equal(smoothingFactors([4], [2], 1, 0)[0], 4);
  t.equal(smoothingFactors([4], [2], 0, 1)[0], 0.5);
});

t.test('clamps to [1e-5, 1e5]', async (t) => {
  t.equal(smoothingValue(1e12, 1, 1, 0), SMOOTH_MAX);
  t.equal(smoothingValue(1e-12, 1, 1, 0), SMOOTH_MIN);
  t.equal(smoothingFactors([1e12], [1], 1, 0)[0], Math.fround(1e5));
  t.equal(smoothingFactors([1e-12], [1], 1, 0)[0], Math.fround(1e-5));
});

t.test('zero, NaN or Inf ratio → 1', async (t) => {
  const lam = smoothingFactors([0, 5, NaN, Infinity, 3], [2, 0, 1, 1, NaN], 0.5);
  t.same(Array.from(lam), [1, 1, 1, 1, 1]);
  // a = 0 with α = 0: 0^0 = 1 → λ = 1/w^β
  t.equal(smoothingValue(0, 4, 0, 0.5), 0.5);
});

t.test('weight column abs-max and Ŵ = W·diag(λ)', async (t) => {
  const w = Float32Array.from([1, -3, 2, -4, 0.5, 1]); // [2, 3]
  t.same(Array.from(weightColumnAbsMax(w, 2, 3)), [4, 3, 2]);
  t.same(Array.from(scaleColumns(w, 2, 3, Float32Array.from([2, 1, 0.5]))), [2, -3, 1, -8, 0.5, 0.5]);
});

t.test('argument errors', async (t) => {
  t.throws(() => smoothingFactors([1, 2], [1], 0.5), { code: 'ERR_SVDQ_ARGUMENT' });
  t.throws(() => smoothingFactors([1], [1], NaN), { code: 'ERR_SVDQ_ARGUMENT' });
});
