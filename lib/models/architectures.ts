/** Registers the architectures this package implements with the loader's registry. */
import { registerArchitecture } from './registry.js';
import { DiTTransformer2DModel } from './dit.js';
import { AutoencoderKL } from './autoencoder-kl.js';

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
