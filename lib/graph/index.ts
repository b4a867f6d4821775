/** The tensor graph (DESIGN.md §4): Module, the layers, the ops they run on, and memory scopes. */
export { Module, type ForwardHook, type ForwardHookOptions, type HookHandle } from './module.js';
export {
  Linear, Conv2d, LayerNorm, RMSNorm, GroupNorm, Embedding, Dropout, GELU, SiLU, Sequential, ModuleList, MLP, SelfAttention,
  type LinearOptions, type Conv2dOptions, type LayerNormLayerOptions, type MLPOptions, type MlpActivation, type SelfAttentionOptions,
} from './layers.js';
export {
  layerNorm, rmsNorm, groupNorm, gelu, silu, softmax, scaledDotProductAttention, GELU_APPROXIMATIONS,
  type OpOptions, type LayerNormOptions, type RmsNormOptions, type GroupNormOptions, type ScaledDotProductAttentionOptions, type GeluApproximate,
} from './functional.js';
export {
  add, sub, mul, div, modulate, gatedAdd, layerNormModulate, broadcastShapes, type LayerNormModulateOptions,
} from './elementwise.js';
export {
  flatten, unsqueeze, squeeze, permute, transpose, slice, split, chunk, concat, expand, upsampleNearest2d, pad2d, normalizeAxis,
} from './shape-ops.js';
export {
  embedding, timestepEmbedding, sincosPosEmbed2d, type TimestepEmbeddingOptions, type SincosPosEmbedOptions,
} from './embeddings.js';
export { withScope, keep, chain } from './scope.js';
