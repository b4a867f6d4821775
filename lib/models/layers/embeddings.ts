/**
 * diffusers' embedding modules (models/embeddings.py), with their parameter names: PatchEmbed,
 * Timesteps, TimestepEmbedding, LabelEmbedding and CombinedTimestepLabelEmbeddings.
 */
import { ArgumentError } from '../../errors.js';
import { Module } from '../../graph/module.js';
import { Conv2d, Embedding, Linear, SiLU } from '../../graph/layers.js';
import { add } from '../../graph/elementwise.js';
import { flatten, transpose } from '../../graph/shape-ops.js';
import { sincosPosEmbed2d, timestepEmbedding } from '../../graph/embeddings.js';
import { declareReleaseSafe } from '../../graph/release.js';
import { Tensor } from '../../tensor.js';

export interface PatchEmbedOptions {
  height: number;
  width: number;
  patchSize: number;
  inChannels: number;
  embedDim: number;
  bias?: boolean;
  interpolationScale?: number;
  /** SD3: the position embedding is a saved buffer of a larger grid, cropped at the centre. */
  posEmbedMaxSize?: number | null;
  /** null: no position embedding (Flux-style models add positions elsewhere). */
  posEmbedType?: 'sincos' | null;
}

/**
 * Image to patch tokens (diffusers PatchEmbed): `proj` (Conv2d with stride = kernel = patch) ->
 * [B, H/p · W/p, D], plus the 2-D sin-cos position embedding of the patch grid (a non-persistent
 * buffer; persistent `pos_embed` of a pos_embed_max_size grid for SD3, cropped at the centre).
 */
export class PatchEmbed extends Module {
  readonly patchSize: number;
  readonly gridHeight: number;
  readonly gridWidth: number;
  readonly baseSize: number;
  readonly interpolationScale: number;
  readonly posEmbedMaxSize: number | null;
  readonly embedDim: number;
  readonly hasPosEmbed: boolean;

  constructor(o: PatchEmbedOptions) {
    super();
    this.patchSize = o.patchSize;
    this.gridHeight = Math.floor(o.height / o.patchSize);
    this.gridWidth = Math.floor(o.width / o.patchSize);
    this.baseSize = this.gridHeight;
    this.interpolationScale = o.interpolationScale ?? 1;
    this.posEmbedMaxSize = o.posEmbedMaxSize ?? null;
    this.embedDim = o.embedDim;
    this.hasPosEmbed = o.posEmbedType !== null;
    this.registerModule('proj', new Conv2d(o.inChannels, o.embedDim, o.patchSize, { stride: o.patchSize, bias: o.bias !== false }));
    if (this.hasPosEmbed) {
      const grid = this.posEmbedMaxSize ?? Math.floor(Math.sqrt(this.gridHeight * this.gridWidth));
      const pe = sincosPosEmbed2d(o.embedDim, grid, grid, { baseSize: this.baseSize, interpolationScale: this.interpolationScale });
      this.registerBuffer('pos_embed', pe.reshape([1, grid * grid, o.embedDim]), { persistent: this.posEmbedMaxSize !== null });
    }
  }

  /** The position embedding [1, h·w, D] for a grid of h × w patches. */
  positionEmbedding(h: number, w: number): Tensor {
    const buffer = this.optionalSlot('pos_embed')!;
    if (this.posEmbedMaxSize !== null) {
      const m = this.posEmbedMaxSize;
      if (h > m || w > m) throw new ArgumentError('hidden_states', `an image of at most ${m * this.patchSize} pixels per side (pos_embed_max_size ${m})`, `${h}×${w} patches`);
      // Crop the centre h × w of the m × m grid.
      const top = Math.floor((m - h) / 2), left = Math.floor((m - w) / 2), d = this.embedDim;
      const out = new Float32Array(h * w * d);
      const src = buffer.data as Float32Array;
      for (let r = 0; r < h; r++) out.set(src.subarray(((top + r) * m + left) * d, ((top + r) * m + left + w) * d), r * w * d);
      return Tensor.fromStorage(out, [1, h * w, d], 'f32');
    }
    if (h === this.gridHeight && w === this.gridWidth) return buffer;
    return sincosPosEmbed2d(this.embedDim, h, w, { baseSize: this.baseSize, interpolationScale: this.interpolationScale }).reshape([1, h * w, this.embedDim]);
  }

  override async forward(latent: Tensor): Promise<Tensor> {
    const proj = await this.child('proj').call(latent);
    const [, , h, w] = proj.shape;
    const tokens = await transpose(flatten(proj, 2), 1, 2);
    if (!this.hasPosEmbed) return tokens;
    return add(tokens, this.positionEmbedding(h, w));
  }
}

/** Sinusoidal projection of timesteps (diffusers Timesteps; no parameters). */
export class Timesteps extends Module {
  constructor(readonly numChannels: number, readonly flipSinToCos: boolean, readonly downscaleFreqShift: number, readonly scale = 1) {
    super();
  }

  override async forward(timesteps: unknown): Promise<Tensor> {
    return timestepEmbedding(timesteps, this.numChannels, {
      flipSinToCos: this.flipSinToCos, downscaleFreqShift: this.downscaleFreqShift, scale: this.scale,
    });
  }
}

/** linear_1 -> SiLU -> linear_2 (diffusers TimestepEmbedding with act_fn 'silu'). */
export class TimestepEmbedding extends Module {
  constructor(inChannels: number, timeEmbedDim: number, options: { outDim?: number; bias?: boolean } = {}) {
    super();
    this.registerModule('linear_1', new Linear(inChannels, timeEmbedDim, { bias: options.bias !== false }));
    this.registerModule('act', new SiLU());
    this.registerModule('linear_2', new Linear(timeEmbedDim, options.outDim ?? timeEmbedDim, { bias: options.bias !== false }));
  }

  override async forward(sample: Tensor): Promise<Tensor> {
    const h = await this.child('linear_1').call(sample);
    return this.child('linear_2').call(await this.child('act').call(h));
  }
}

/** Class labels -> vectors (diffusers LabelEmbedding): the table has one more row, the null class of classifier-free guidance, when dropout_prob > 0. */
export class LabelEmbedding extends Module {
  readonly numClasses: number;

  constructor(numClasses: number, hiddenSize: number, dropoutProb: number) {
    super();
    this.numClasses = numClasses;
    this.registerModule('embedding_table', new Embedding(numClasses + (dropoutProb > 0 ? 1 : 0), hiddenSize));
  }

  override async forward(labels: unknown): Promise<Tensor> {
    return this.child('embedding_table').call(labels);
  }
}

/** t_emb(timestep) + label_emb(class_labels) (diffusers CombinedTimestepLabelEmbeddings, DiT's conditioning). */
export class CombinedTimestepLabelEmbeddings extends Module {
  constructor(numClasses: number, embeddingDim: number, classDropoutProb = 0.1) {
    super();
    this.registerModule('time_proj', new Timesteps(256, true, 1));
    this.registerModule('timestep_embedder', new TimestepEmbedding(256, embeddingDim));
    this.registerModule('class_embedder', new LabelEmbedding(numClasses, embeddingDim, classDropoutProb));
  }

  override async forward(timestep: unknown, classLabels: unknown): Promise<Tensor> {
    const t = await this.child('timestep_embedder').call(await this.child('time_proj').call(timestep));
    return add(t, await this.child('class_embedder').call(classLabels));
  }
}

for (const cls of [PatchEmbed, Timesteps, TimestepEmbedding, LabelEmbedding, CombinedTimestepLabelEmbeddings]) declareReleaseSafe(cls);
