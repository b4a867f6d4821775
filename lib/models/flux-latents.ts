/**
 * Flux's token layout (diffusers FluxPipeline's _pack_latents / _unpack_latents /
 * _prepare_latent_image_ids): the pipeline packs each 2×2 patch of the VAE latents [B, C, H, W]
 * into one token of C·4 values, row-major over the (H/2) × (W/2) grid, and gives the transformer
 * position ids (text, row, col) per token: (0, row, col) for image tokens, zeros for text tokens.
 */
import { ArgumentError } from '../errors.js';
import { permute } from '../graph/shape-ops.js';
import { Tensor } from '../tensor.js';

function checkLatentSize(height: number, width: number): void {
  for (const [name, v] of [['height', height], ['width', width]] as const) {
    if (!Number.isInteger(v) || v < 2 || v % 2 !== 0) throw new ArgumentError(name, 'an even latent size >= 2', v);
  }
}

/** Latents [B, C, H, W] (H, W even) -> tokens [B, (H/2)·(W/2), C·4], each token a 2×2 patch (channel-major, then row, then column). */
export async function packLatents(latents: Tensor): Promise<Tensor> {
  if (!(latents instanceof Tensor) || latents.ndim !== 4) throw new ArgumentError('latents', 'a tensor of shape [B, C, H, W]', latents);
  const [b, c, h, w] = latents.shape;
  checkLatentSize(h, w);
  const patches = await permute(latents.reshape([b, c, h / 2, 2, w / 2, 2]), [0, 2, 4, 1, 3, 5]);
  return patches.reshape([b, (h / 2) * (w / 2), c * 4]);
}

/** Tokens [B, (H/2)·(W/2), C·4] -> latents [B, C, H, W] (the inverse of packLatents); height and width are the latent sizes. */
export async function unpackLatents(tokens: Tensor, height: number, width: number): Promise<Tensor> {
  checkLatentSize(height, width);
  const cells = (height / 2) * (width / 2);
  if (!(tokens instanceof Tensor) || tokens.ndim !== 3 || tokens.shape[1] !== cells || tokens.shape[2] % 4 !== 0) {
    throw new ArgumentError('tokens', `a tensor of shape [B, ${cells}, C·4] (a ${height}×${width} latent)`, tokens);
  }
  const [b, , d] = tokens.shape;
  const c = d / 4;
  const image = await permute(tokens.reshape([b, height / 2, width / 2, c, 2, 2]), [0, 3, 1, 4, 2, 5]);
  return image.reshape([b, c, height, width]);
}

/** Position ids [(H/2)·(W/2), 3] of the packed image tokens of an H × W latent: (0, row, col), row-major. */
export function imageIds(height: number, width: number): Tensor {
  checkLatentSize(height, width);
  const rows = height / 2, cols = width / 2;
  const ids = new Float32Array(rows * cols * 3);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      ids[(r * cols + c) * 3 + 1] = r;
      ids[(r * cols + c) * 3 + 2] = c;
    }
  }
  return Tensor.fromStorage(ids, [rows * cols, 3], 'f32');
}

/** Position ids [tokens, 3] of the text tokens: all zero. */
export function textIds(tokens: number): Tensor {
  if (!Number.isInteger(tokens) || tokens < 1) throw new ArgumentError('tokens', 'a positive integer (the prompt embedding length)', tokens);
  return Tensor.zeros([tokens, 3], 'f32');
}
