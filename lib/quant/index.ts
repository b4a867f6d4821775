/** The SVDQuant processor's public API (DESIGN.md §2, issue 4). */
export * from './config.js';
export { globToRegExp, matchGlob, firstMatch } from './glob.js';
export * from './smoothing.js';
export { LayerStatsCollector } from './calibration.js';
export type { LayerStatsOptions } from './calibration.js';
export { ErrorCorrectedLinear } from './error-corrected-linear.js';
export { quantizeLinear, buildLayer, deployedError } from './quantize-layer.js';
export type { LayerReport, QuantizeLinearResult, AlphaCandidateScore, BuildOptions, BuiltLayer } from './quantize-layer.js';
export { svdTopR, residualRtn, gptqQuantize, hessianAccumulate, refineLowRank, matmulNT, relativeError } from './ops.js';
export type { LowRankFactors, SvdOptions, GptqOptions, GptqOutcome, RefineOutcome } from './ops.js';
export { syntheticLayer, SeededRandom } from './synthetic.js';
export type { SyntheticLayer, SyntheticLayerOptions } from './synthetic.js';
export { qualityStudy, methodError, QUALITY_METHODS } from './quality.js';
export type { QualityCell, QualityMethod, QualityOptions } from './quality.js';
export { quantizeModel, parentCounts } from './quantize-model.js';
// quantize(model, config, calibration) or quantize(tensor, format): one name for both.
export { quantize, quantizeTensor } from './quantize.js';
export type { QuantizeReport, QuantizeModelOptions, SkippedLayer, CalibrationData, CalibrationBatch } from './quantize-model.js';
export { PRESETS, resolvePreset, presetExclusion, modelClassName } from './presets.js';
export type { QuantPreset, PresetRule } from './presets.js';
