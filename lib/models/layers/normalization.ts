/**
 * diffusers' adaptive norms (models/normalization.py): the modulation linears that turn the
 * conditioning into shifts, scales and gates, with the LayerNorm they modulate.
 */
import { Module } from '../../graph/module.js';
import { LayerNorm, Linear, SiLU } from '../../graph/layers.js';
import { layerNormModulate } from '../../graph/elementwise.js';
import { chunk } from '../../graph/shape-ops.js';
import { declareReleaseSafe } from '../../graph/release.js';
import type { Tensor } from '../../tensor.js';
import { CombinedTimestepLabelEmbeddings, PixArtAlphaCombinedTimestepSizeEmbeddings, type SizeConditions } from './embeddings.js';

/**
 * adaLN-Zero (AdaLayerNormZero): emb = linear(silu(emb)) split into shift, scale and gate for the
 * attention and the MLP; returns [norm(x)·(1 + scale_msa) + shift_msa, gate_msa, shift_mlp,
 * scale_mlp, gate_mlp]. With `numEmbeddings` the conditioning comes from its own `emb`
 * (CombinedTimestepLabelEmbeddings, DiT); otherwise it is passed in.
 */
export class AdaLayerNormZero extends Module {
  constructor(embeddingDim: number, numEmbeddings: number | null = null, bias = true) {
    super();
    if (numEmbeddings !== null) this.registerModule('emb', new CombinedTimestepLabelEmbeddings(numEmbeddings, embeddingDim));
    this.registerModule('silu', new SiLU());
    this.registerModule('linear', new Linear(embeddingDim, 6 * embeddingDim, { bias }));
    this.registerModule('norm', new LayerNorm(embeddingDim, { affine: false, eps: 1e-6 }));
  }

  override async forward(x: Tensor, conditioning: { timestep?: unknown; class_labels?: unknown; emb?: Tensor }): Promise<Tensor[]> {
    const emb = conditioning.emb ?? await this.child('emb').call(conditioning.timestep, conditioning.class_labels);
    const params = await this.child('linear').call(await this.child('silu').call(emb));
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = await chunk(params, 6, 1);
    const norm = this.child('norm') as LayerNorm;
    return [await layerNormModulate(x, scaleMsa, shiftMsa, { eps: norm.eps }), gateMsa, shiftMlp, scaleMlp, gateMlp];
  }
}

/**
 * adaLN-Zero of a single-stream block (AdaLayerNormZeroSingle, Flux): linear(silu(emb)) split into
 * shift, scale and gate; returns [norm(x)·(1 + scale) + shift, gate].
 */
export class AdaLayerNormZeroSingle extends Module {
  constructor(embeddingDim: number, bias = true) {
    super();
    this.registerModule('silu', new SiLU());
    this.registerModule('linear', new Linear(embeddingDim, 3 * embeddingDim, { bias }));
    this.registerModule('norm', new LayerNorm(embeddingDim, { affine: false, eps: 1e-6 }));
  }

  override async forward(x: Tensor, emb: Tensor): Promise<Tensor[]> {
    const params = await this.child('linear').call(await this.child('silu').call(emb));
    const [shift, scale, gate] = await chunk(params, 3, 1);
    const norm = this.child('norm') as LayerNorm;
    return [await layerNormModulate(x, scale, shift, { eps: norm.eps }), gate];
  }
}

/**
 * SD3.5's adaLN-Zero with a second attention (SD35AdaLayerNormZeroX): nine chunks; the same norm(x)
 * is modulated twice. Returns [x1, gate_msa, shift_mlp, scale_mlp, gate_mlp, x2, gate_msa2].
 */
export class SD35AdaLayerNormZeroX extends Module {
  constructor(embeddingDim: number, bias = true) {
    super();
    this.registerModule('silu', new SiLU());
    this.registerModule('linear', new Linear(embeddingDim, 9 * embeddingDim, { bias }));
    this.registerModule('norm', new LayerNorm(embeddingDim, { affine: false, eps: 1e-6 }));
  }

  override async forward(x: Tensor, conditioning: { emb: Tensor }): Promise<Tensor[]> {
    const params = await this.child('linear').call(await this.child('silu').call(conditioning.emb));
    const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp, shiftMsa2, scaleMsa2, gateMsa2] = await chunk(params, 9, 1);
    const eps = (this.child('norm') as LayerNorm).eps;
    const [x1, x2] = await Promise.all([
      layerNormModulate(x, scaleMsa, shiftMsa, { eps }), layerNormModulate(x, scaleMsa2, shiftMsa2, { eps }),
    ]);
    return [x1, gateMsa, shiftMlp, scaleMlp, gateMlp, x2, gateMsa2];
  }
}

/**
 * adaLN-single (AdaLayerNormSingle, PixArt): one timestep (+ size) embedding for the whole model;
 * returns [linear(silu(emb)) — the 6·dim modulation every block adds its scale_shift_table to —, emb].
 */
export class AdaLayerNormSingle extends Module {
  constructor(embeddingDim: number, useAdditionalConditions = false) {
    super();
    this.registerModule('emb', new PixArtAlphaCombinedTimestepSizeEmbeddings(embeddingDim, Math.floor(embeddingDim / 3), useAdditionalConditions));
    this.registerModule('silu', new SiLU());
    this.registerModule('linear', new Linear(embeddingDim, 6 * embeddingDim));
  }

  override async forward(timestep: Tensor, sizes: SizeConditions): Promise<Tensor[]> {
    const emb = await this.child('emb').call(timestep, sizes) as Tensor;
    return [await this.child('linear').call(await this.child('silu').call(emb)), emb];
  }
}

/**
 * LayerNorm modulated by a continuous conditioning (AdaLayerNormContinuous: SD3's and Flux's output
 * norm, SD3's last context norm): linear(silu(c)) split into scale then shift.
 */
export class AdaLayerNormContinuous extends Module {
  constructor(embeddingDim: number, conditioningDim: number, o: { affine?: boolean; eps?: number; bias?: boolean } = {}) {
    super();
    this.registerModule('silu', new SiLU());
    this.registerModule('linear', new Linear(conditioningDim, 2 * embeddingDim, { bias: o.bias ?? true }));
    this.registerModule('norm', new LayerNorm(embeddingDim, { affine: o.affine ?? true, eps: o.eps ?? 1e-5, bias: o.bias ?? true }));
  }

  override async forward(x: Tensor, conditioning: Tensor): Promise<Tensor> {
    const params = await this.child('linear').call(await this.child('silu').call(conditioning));
    const [scale, shift] = await chunk(params, 2, 1);
    const norm = this.child('norm') as LayerNorm;
    return layerNormModulate(x, scale, shift, { eps: norm.eps, weight: norm.weight, bias: norm.bias });
  }
}

for (const cls of [AdaLayerNormZero, AdaLayerNormZeroSingle, SD35AdaLayerNormZeroX, AdaLayerNormSingle, AdaLayerNormContinuous]) declareReleaseSafe(cls);
