/** Registers the architectures this package implements with the loader's registry. */
import { registerArchitecture } from './registry.js';
import { DiTTransformer2DModel } from './dit.js';
import { AutoencoderKL } from './autoencoder-kl.js';
import { PixArtTransformer2DModel } from './pixart.js';
import { SD3Transformer2DModel } from './sd3.js';
import { FluxTransformer2DModel } from './flux.js';

registerArchitecture({
  className: 'DiTTransformer2DModel',
  description: 'class-conditional DiT (Peebles & Xie), adaLN-Zero blocks, learned sigma optional',
  build: (config) => new DiTTransformer2DModel(config),
});

registerArchitecture({
  className: 'AutoencoderKL',
  description: 'the KL VAE of latent diffusion models (encoder and decoder)',
  build: (config) => new AutoencoderKL(config),
});

registerArchitecture({
  className: 'PixArtTransformer2DModel',
  description: 'PixArt-α/Σ text-to-image DiT: adaLN-single, caption cross-attention with a padding mask',
  build: (config) => new PixArtTransformer2DModel(config),
});

registerArchitecture({
  className: 'SD3Transformer2DModel',
  description: 'Stable Diffusion 3 / 3.5 MM-DiT: joint attention over image and text streams',
  build: (config) => new SD3Transformer2DModel(config),
});

registerArchitecture({
  className: 'FluxTransformer2DModel',
  description: 'FLUX.1 transformer: double- and single-stream blocks, rotary (text, row, col) positions',
  build: (config) => new FluxTransformer2DModel(config),
});
