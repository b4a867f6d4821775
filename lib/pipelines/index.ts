/** Sampling pipelines (the schedulers are exported from ./schedulers/index.ts). */
export { DiTPipeline, MODEL_INDEX_NAME, DEFAULT_NUM_INFERENCE_STEPS, DEFAULT_GUIDANCE_SCALE } from './dit-pipeline.js';
export type { DiTPipelineComponents, DiTPipelineLoadOptions, DiTGenerateOptions, DiTGenerateResult } from './dit-pipeline.js';
export type { StepInfo } from './denoising-loop.js';
export { GaussianRandom, randn, randnBatch, isSeed } from './random.js';
export { builtinModelDir } from './builtin-model.js';
