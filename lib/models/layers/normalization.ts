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
import { CombinedTimestepLabelEmbeddings } from './embeddings.js';

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

declareReleaseSafe(AdaLayerNormZero);
