// Plain double-precision references for the graph tests (test/graph-*.test.ts), written from the
// textbook definitions, independent of the native kernels.
import { Tensor } from '../../lib/tensor.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export function randomTensor(shape: number[], scale: number, r: () => number): Tensor<'f32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = r() * 2 * scale;
  return Tensor.fromStorage(data, shape, 'f32');
}

/** A row-major matrix of doubles. */
export interface Mat {
  rows: number;
  cols: number;
  d: Float64Array;
}

export function mat(t: Tensor, cols = t.shape[t.ndim - 1]): Mat {
  const d = Float64Array.from(t.data as Float32Array);
  return { rows: d.length / cols, cols, d };
}

/** Y = X·Wᵀ + b, with the magnitude Σ|x·w| + |b| of every output (for tolerances). */
export function linearRef(x: Mat, w: Mat, b: ArrayLike<number> | null): { y: Mat; mag: Float64Array } {
  const m = x.rows, k = x.cols, n = w.rows;
  const y = new Float64Array(m * n), mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = b ? b[j] : 0, s = b ? Math.abs(b[j]) : 0;
      for (let p = 0; p < k; p++) {
        const v = x.d[i * k + p] * w.d[j * k + p];
        acc += v;
        s += Math.abs(v);
      }
      y[i * n + j] = acc;
      mag[i * n + j] = s;
    }
  }
  return { y: { rows: m, cols: n, d: y }, mag };
}

export function layerNormRef(x: Mat, gamma: ArrayLike<number> | null, beta: ArrayLike<number> | null, eps: number): Mat {
  const { rows, cols } = x;
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let j = 0; j < cols; j++) mean += x.d[r * cols + j];
    mean /= cols;
    let v = 0;
    for (let j = 0; j < cols; j++) v += (x.d[r * cols + j] - mean) ** 2;
    v /= cols;
    for (let j = 0; j < cols; j++) {
      y[r * cols + j] = ((x.d[r * cols + j] - mean) / Math.sqrt(v + eps)) * (gamma ? gamma[j] : 1) + (beta ? beta[j] : 0);
    }
  }
  return { rows, cols, d: y };
}

export function rmsNormRef(x: Mat, gamma: ArrayLike<number> | null, eps: number): Mat {
  const { rows, cols } = x;
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += x.d[r * cols + j] ** 2;
    const inv = 1 / Math.sqrt(s / cols + eps);
    for (let j = 0; j < cols; j++) y[r * cols + j] = x.d[r * cols + j] * inv * (gamma ? gamma[j] : 1);
  }
  return { rows, cols, d: y };
}

/** erf to about 1e-15 (Taylor series for |x| < 3, continued fraction beyond). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax, sum = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz not needed: evaluate backwards)
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

export function geluRef(v: number, approximate: 'none' | 'tanh'): number {
  if (approximate === 'tanh') return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  return 0.5 * v * (1 + erf(v / Math.SQRT2));
}

export function siluRef(v: number): number {
  return v / (1 + Math.exp(-v));
}

export function softmaxRef(x: Mat): Mat {
  const { rows, cols } = x;
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let j = 0; j < cols; j++) mx = Math.max(mx, x.d[r * cols + j]);
    let s = 0;
    for (let j = 0; j < cols; j++) s += (y[r * cols + j] = Math.exp(x.d[r * cols + j] - mx));
    for (let j = 0; j < cols; j++) y[r * cols + j] /= s;
  }
  return { rows, cols, d: y };
}

/** Multi-head attention on [B·T, D] matrices (batch b owns rows [b·T, (b+1)·T)). */
export function attentionRef(q: Mat, k: Mat, v: Mat, batch: number, heads: number): Mat {
  const d = q.cols, hd = d / heads, t = q.rows / batch;
  const out = new Float64Array(q.rows * d);
  const scale = 1 / Math.sqrt(hd);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < t; i++) {
        const s = new Float64Array(t);
        let mx = -Infinity;
        for (let j = 0; j < t; j++) {
          let acc = 0;
          for (let c = 0; c < hd; c++) acc += q.d[(b * t + i) * d + h * hd + c] * k.d[(b * t + j) * d + h * hd + c];
          s[j] = acc * scale;
          mx = Math.max(mx, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < t; j++) sum += (s[j] = Math.exp(s[j] - mx));
        for (let c = 0; c < hd; c++) {
          let acc = 0;
          for (let j = 0; j < t; j++) acc += (s[j] / sum) * v.d[(b * t + j) * d + h * hd + c];
          out[(b * t + i) * d + h * hd + c] = acc;
        }
      }
    }
  }
  return { rows: q.rows, cols: d, d: out };
}

export function addRef(a: Mat, b: Mat): Mat {
  return { rows: a.rows, cols: a.cols, d: a.d.map((v, i) => v + b.d[i]) };
}

export function mapRef(a: Mat, f: (v: number) => number): Mat {
  return { rows: a.rows, cols: a.cols, d: a.d.map(f) };
}

/** Largest |got - want| / (abs + rel·|want|); <= 1 means within tolerance. */
export function worstRatio(got: ArrayLike<number>, want: ArrayLike<number>, abs: number, rel: number, mag?: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const scale = abs + rel * (mag ? mag[i] : Math.abs(want[i]));
    const e = Math.abs(got[i] - want[i]) / scale;
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}
