/**
 * Input checks and the patch-to-image reshape shared by the text-to-image transformers (PixArt,
 * SD3): what every diffusers transformer's forward does before its first and after its last layer.
 */
import { ArgumentError } from '../errors.js';
import { permute } from '../graph/shape-ops.js';
import { Tensor } from '../tensor.js';

/** The tensor input `name` checked to be of `dims` (a dim of -1 is free); a typed error naming it otherwise. */
export function checkInput(inputs: object, name: string, dims: readonly number[]): Tensor {
  const x = (inputs as Record<string, unknown>)[name];
  const ok = x instanceof Tensor && x.ndim === dims.length && dims.every((d, i) => d < 0 || x.shape[i] === d);
  if (!ok) throw new ArgumentError(`inputs.${name}`, `a tensor of shape [${dims.map((d) => (d < 0 ? '·' : d)).join(', ')}]`, x instanceof Tensor ? x.toString() : x);
  return x;
}

/** Patch tokens [B, h·w, p·p·C] back to the image [B, C, h·p, w·p] (diffusers' einsum "nhwpqc->nchpwq"). */
export async function unpatchify(tokens: Tensor, h: number, w: number, p: number, channels: number): Promise<Tensor> {
  const b = tokens.shape[0];
  const image = await permute(tokens.reshape([b, h, w, p, p, channels]), [0, 5, 1, 3, 2, 4]);
  return image.reshape([b, channels, h * p, w * p]);
}
