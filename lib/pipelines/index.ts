/** Sampling pipelines (the schedulers are exported from ./schedulers/index.ts). */
export { DiTPipeline, MODEL_INDEX_NAME, DEFAULT_NUM_INFERENCE_STEPS, DEFAULT_GUIDANCE_SCALE } from './dit-pipeline.js';
export type { DiTPipelineComponents, DiTPipelineLoadOptions, DiTGenerateOptions, DiTGenerateResult } from './dit-pipeline.js';
export type { StepInfo } from './denoising-loop.js';
export { GaussianRandom, randn, randnBatch, isSeed } from './random.js';
export { builtinModelDir } from './builtin-model.js';
export { FashionClassifier, loadBuiltinClassifier, unitToSigned } from './builtin-classifier.js';
export { capturePipelineCalibration, loadPipelineCalibration, CALIBRATION_FORMAT, DEFAULT_CALIBRATION_STEPS } from './calibration.js';
export type { PipelineCalibration, PipelineCalibrationOptions, CapturedInputs, CalibratablePipeline } from './calibration.js';
export { PixArtSigmaPipeline } from './pixart-sigma-pipeline.js';
export type { PixArtGenerateOptions } from './pixart-sigma-pipeline.js';
export { StableDiffusion3Pipeline } from './sd3-pipeline.js';
export type { SD3GenerateOptions } from './sd3-pipeline.js';
export { FluxPipeline } from './flux-pipeline.js';
export type { FluxGenerateOptions } from './flux-pipeline.js';
export { TextToImagePipeline } from './text-pipeline.js';
export type { TextPipelineComponents, TextPipelineLoadOptions, TextGenerateCommonOptions, TextGenerateResult, OutputType } from './text-pipeline.js';
