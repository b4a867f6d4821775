/**
 * svdquant: the public API. Re-exports from the modules below; nothing is defined here.
 */
export { Tensor, DTYPES, dtypeBits, isDType, isTensor } from './tensor.js';
export type { DType, Device, Storage, StorageOf } from './tensor.js';
export {
  AbortError, ArgumentError, FileFormatError, IoError, NativeError, NonFiniteError, SvdquantError, BackendUnavailableError,
  GpuError, GpuOutOfMemoryError, GpuNoDeviceError, GpuDriverError, GpuRuntimeError, GpuUnsupportedError,
} from './errors.js';
export type { SvdquantErrorCode, GpuErrorCode } from './errors.js';
export { cpuIsa } from './native.js';
export type { IsaName, NativeIsaInfo, NativeSchedInfo } from './native.js';
export * from './formats/index.js';
export {
  openSafetensors, parseSafetensors, serializeSafetensors, writeSafetensors,
  SAFETENSORS_DTYPES, SAFETENSORS_MAX_HEADER_BYTES, dtypeByteSize, isSafetensorsDtype,
} from './io/safetensors.js';
export type {
  SafetensorsDtype, SafetensorsFile, SafetensorsTensorData, SafetensorsTensorInfo, SafetensorsTensorInput,
  SafetensorsTensorsInput, ParsedSafetensors, ParsedSafetensorsTensor,
} from './io/safetensors.js';
export { writeFileAtomic } from './io/atomic-write.js';
export { tensorFromSafetensors, tensorToSafetensors } from './io/tensor-bridge.js';
export { NativeLowbitLayer, LOW_RANK_MODES } from './runtime/native-layer.js';
export type { LowbitLayerData, LowRankMode, NativeForwardOptions, NativeKernelLayer, NativeLayerBackend } from './runtime/native-layer.js';
export { GpuLowbitLayer } from './runtime/gpu-layer.js';
export type { GpuLayerOptions } from './runtime/gpu-layer.js';
export { DeviceTensor } from './runtime/device-tensor.js';
export type { DeviceTensorOptions } from './runtime/device-tensor.js';
export { gpuBackends, probeGpuBackend, gpuLibraryPath, GPU_PLATFORMS } from './runtime/gpu-backend.js';
export type { GpuPlatform, GpuBackendReport, GpuBackendsReport, GpuDeviceInfo, GpuMatrixPath } from './runtime/gpu-backend.js';
export * from './graph/index.js';
export * from './quant/index.js';
// Both formats/ and quant/ define quantize; the public one takes a model or a tensor (quant/quantize.ts).
export { quantize } from './quant/index.js';
export {
  enableNativeInference, disableNativeInference, NativeLinear, NATIVE_BACKENDS,
} from './runtime/native-inference.js';
export type {
  NativeBackend, NativeInferenceOptions, NativeInferenceReport, DisableNativeInferenceReport,
} from './runtime/native-inference.js';
export { saveCheckpoint, loadCheckpoint, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION } from './runtime/checkpoint.js';
export type {
  SaveCheckpointReport, LoadCheckpointReport, CheckpointLayerMeta, SvdquantLayerMeta, LinearMeta, NormMeta,
} from './runtime/checkpoint.js';
export { importQuarkCheckpoint } from './runtime/quark-import.js';
export type { QuarkImportOptions, QuarkLayer } from './runtime/quark-import.js';
export { loadLora, applyLora } from './runtime/lora.js';
export type { Lora, LoraModule, LoraNaming, LoraHandle, LoadLoraOptions, ApplyLoraOptions } from './runtime/lora.js';
export { tinyDit, tinyDitInputs, TinyDitBlock } from './models/tiny-dit.js';
export type { TinyDitOptions } from './models/tiny-dit.js';
export {
  DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, calculateShift,
  SCHEDULER_CLASSES, schedulerFromConfig, isSchedulerClassName, loadSchedulerConfig, saveSchedulerConfig, SCHEDULER_CONFIG_NAME,
} from './pipelines/schedulers/index.js';
export type {
  Scheduler, SchedulerConfig, SchedulerClass, SchedulerClassName, SetTimestepsOptions, StepOptions, NoiseSource,
} from './pipelines/schedulers/index.js';
export * from './image/index.js';
export * from './models/index.js';
export * from './pipelines/index.js';
