/**
 * Rotary position embedding over n-dimensional position ids (Flux's EmbedND + apply_rope): each
 * axis i of the ids (text, row, col) rotates its own axesDim[i] values of every head, on
 * interleaved pairs. The frequency table is small ([B, T, headDim/2]) and built here in float64
 * (as diffusers does) then rounded to float32; applying it touches every query/key element, so it
 * runs natively.
 */
import { ArgumentError } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { checkThreads, floatInput, output, type OpOptions } from './functional.js';
import { numericValues } from './embeddings.js';

export interface RotaryTable {
  /** cos and sin [B, T, headDim/2] (B = 1 when the ids have no batch axis). */
  cos: Tensor<'f32'>;
  sin: Tensor<'f32'>;
}

/**
 * The rotary table of position ids [T, axes] or [B, T, axes]: for axis i, pair k of its
 * axesDim[i]/2 pairs turns by ids[..., i] / theta^(2k / axesDim[i]); the axes' pairs follow each
 * other, so headDim = Σ axesDim.
 */
export function rotaryTable(ids: unknown, axesDim: readonly number[], theta = 10000): RotaryTable {
  if (!Array.isArray(axesDim) || axesDim.length === 0 || !axesDim.every((d) => Number.isInteger(d) && d > 0 && d % 2 === 0)) {
    throw new ArgumentError('axesDim', 'a non-empty array of positive even integers', axesDim);
  }
  if (typeof theta !== 'number' || !(theta > 0)) throw new ArgumentError('theta', 'a positive number', theta);
  const { values, shape } = numericValues(ids, 'ids');
  const axes = axesDim.length;
  if ((shape.length !== 2 && shape.length !== 3) || shape[shape.length - 1] !== axes) {
    throw new ArgumentError('ids', `position ids of shape [T, ${axes}] or [B, T, ${axes}]`, `shape [${shape.join(', ')}]`);
  }
  const batch = shape.length === 3 ? shape[0] : 1;
  const tokens = shape[shape.length - 2];
  const half = axesDim.reduce((a, b) => a + b, 0) / 2;
  const omegas: number[] = [];
  axesDim.forEach((d) => {
    for (let k = 0; k < d; k += 2) omegas.push(1 / theta ** (k / d));
  });
  const cos = new Float32Array(batch * tokens * half);
  const sin = new Float32Array(cos.length);
  for (let r = 0; r < batch * tokens; r++) {
    let j = 0;
    for (let i = 0; i < axes; i++) {
      const pos = Math.fround(values[r * axes + i]); // the ids are float32 in diffusers
      for (let k = 0; k < axesDim[i] / 2; k++, j++) {
        const angle = pos * omegas[j];
        cos[r * half + j] = Math.cos(angle);
        sin[r * half + j] = Math.sin(angle);
      }
    }
  }
  return { cos: output(cos, [batch, tokens, half]), sin: output(sin, [batch, tokens, half]) };
}

/**
 * Rotates the heads of x [B, T, heads·headDim] by a rotary table of [1 or B, T, headDim/2]:
 * y[2j] = cos_j·x[2j] − sin_j·x[2j+1], y[2j+1] = sin_j·x[2j] + cos_j·x[2j+1] within each head.
 */
export async function applyRotaryEmbedding(x: Tensor, table: RotaryTable, heads: number, options: OpOptions = {}): Promise<Tensor<'f32'>> {
  const xf = floatInput(x, 'x', 3);
  if (xf.ndim !== 3) throw new ArgumentError('x', 'a tensor of shape [B, T, heads·headDim]', xf.toString());
  const [b, t, width] = xf.shape;
  if (!Number.isInteger(heads) || heads < 1 || width % heads !== 0 || (width / heads) % 2 !== 0) {
    throw new ArgumentError('heads', `a positive integer dividing ${width} into heads of an even size`, heads);
  }
  const dim = width / heads;
  const cos = floatInput(table?.cos, 'table.cos', 3);
  const sin = floatInput(table?.sin, 'table.sin', 3);
  const cb = cos.shape[0];
  if (cos.ndim !== 3 || (cb !== 1 && cb !== b) || cos.shape[1] !== t || cos.shape[2] !== dim / 2) {
    throw new ArgumentError('table.cos', `a tensor of shape [1 or ${b}, ${t}, ${dim / 2}]`, cos.toString());
  }
  if (sin.shape.join() !== cos.shape.join()) throw new ArgumentError('table.sin', `a tensor of the shape of cos, [${cos.shape.join(', ')}]`, sin.toString());
  const threads = checkThreads(options);
  return output(await native().rotaryEmbedding(xf.data, b, t, heads, dim, cos.data, sin.data, cb, null, threads), xf.shape);
}
