/** The tensor graph (DESIGN.md §4): Module, the layers, and the ops they run on. */
export { Module, type ForwardHook, type HookHandle } from './module.js';
export {
  Linear, LayerNorm, RMSNorm, GELU, SiLU, Sequential, MLP, SelfAttention,
  type LinearOptions, type LayerNormLayerOptions, type MLPOptions, type MlpActivation, type SelfAttentionOptions,
} from './layers.js';
export {
  layerNorm, rmsNorm, gelu, silu, softmax, add, scaledDotProductAttention, GELU_APPROXIMATIONS,
  type OpOptions, type LayerNormOptions, type RmsNormOptions, type GeluApproximate,
} from './functional.js';
