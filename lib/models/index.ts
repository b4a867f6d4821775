/** Models with diffusers semantics and names, and the loader (DESIGN.md §4, §10). */
export { loadModel, loadWeights, CONFIG_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME } from './loader.js';
export type { LoadModelOptions, LoadProgress, ModelSource } from './loader.js';
export { registerArchitecture, architectureNames, buildModel, resolveClassName } from './registry.js';
export type { Architecture } from './registry.js';
export { ConfigReader } from './config.js';
export type { DiffusersConfig, ModelConfig } from './config.js';
export { DiTTransformer2DModel } from './dit.js';
export type { DiTInputs } from './dit.js';
export { Attention } from './layers/attention.js';
export type { AttentionOptions, AttentionCallOptions } from './layers/attention.js';
export { BasicTransformerBlock } from './layers/basic-transformer-block.js';
export { FeedForward, GELUProjection } from './layers/feed-forward.js';
export { AdaLayerNormZero } from './layers/normalization.js';
export { PatchEmbed, Timesteps, TimestepEmbedding, LabelEmbedding, CombinedTimestepLabelEmbeddings } from './layers/embeddings.js';
export { AutoencoderKL, Encoder, Decoder } from './autoencoder-kl.js';
export type { LatentDistribution } from './autoencoder-kl.js';
export { ResnetBlock2D, Upsample2D, Downsample2D, UNetMidBlock2D, DownEncoderBlock2D, UpDecoderBlock2D } from './layers/unet-blocks.js';
