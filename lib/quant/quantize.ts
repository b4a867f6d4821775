/**
 * `quantize`, the one public name for both jobs (issue 5 item 2 uses quantize(model, config,
 * calibration); the formats API uses quantize(tensor, format)): a Module goes to quantizeModel
 * (SVDQuant of its Linear layers), a Tensor to the element-format quantizer. Both are also exported
 * under their own names (quantizeModel, and quantizeTensor for the format quantizer).
 */
import { ArgumentError } from '../errors.js';
import { Module } from '../graph/module.js';
import { Tensor } from '../tensor.js';
import { quantize as quantizeTensor, type QuantizedTensor, type QuantizeOptions } from '../formats/quantize.js';
import type { ElementFormat } from '../formats/schemes.js';
import type { SVDQuantConfig, SVDQuantConfigInput } from './config.js';
import { quantizeModel, type CalibrationData, type QuantizeModelOptions, type QuantizeReport } from './quantize-model.js';

export { quantizeTensor };

/** SVDQuant of the model's eligible Linear layers in place (see quantizeModel). */
export function quantize(model: Module, config?: SVDQuantConfigInput | SVDQuantConfig, calibration?: CalibrationData, options?: QuantizeModelOptions): Promise<QuantizeReport>;
/** Quantizes a tensor along its last axis into an element format (see lib/formats). */
export function quantize(tensor: Tensor, format: ElementFormat, options?: QuantizeOptions): Promise<QuantizedTensor>;
export function quantize(target: Module | Tensor, ...rest: unknown[]): Promise<QuantizeReport | QuantizedTensor> {
  if (target instanceof Module) {
    return quantizeModel(target, rest[0] as SVDQuantConfigInput | undefined, rest[1] as CalibrationData | undefined, rest[2] as QuantizeModelOptions | undefined);
  }
  if (target instanceof Tensor) return quantizeTensor(target, rest[0] as ElementFormat, rest[1] as QuantizeOptions | undefined);
  return Promise.reject(new ArgumentError('target', 'a Module (SVDQuant of its linear layers) or a Tensor (element-format quantization)', target));
}
