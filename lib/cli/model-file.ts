/**
 * Model and calibration files of `svdquant quantize` and `svdquant calibrate`.
 *
 * Model file (safetensors): every 2-D floating-point tensor named `P.weight` (F32, F16 or BF16) is a
 * linear layer P with weight [N, K], and `P.bias` ([N], floating point) its bias when present. All
 * other tensors are carried over to the output unchanged.
 *
 * Calibration file (safetensors): one tensor per linear layer, named exactly as the layer (P, the
 * prefix of `P.weight`), holding inputs the layer saw on representative data: [tokens, K] or any
 * shape [..., K], F32/F16/BF16. A tensor naming no linear layer of the model is an error (it is
 * usually a typo); a layer without a tensor is reported as skipped.
 */
import { FileFormatError } from '../errors.js';
import { openSafetensors, type SafetensorsFile } from '../io/safetensors.js';
import { tensorFromSafetensors } from '../io/tensor-bridge.js';
import { Tensor } from '../tensor.js';

export interface FileLinear {
  /** The layer's name P (tensors P.weight and P.bias). */
  name: string;
  outFeatures: number;
  inFeatures: number;
  /** Names of the tensors that make up the layer (P.weight, and P.bias when present). */
  tensorNames: string[];
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/** The linear layers of an open model file, in file order. */
export function linearLayersOf(st: SafetensorsFile): FileLinear[] {
  const layers: FileLinear[] = [];
  for (const t of st.tensors) {
    if (!t.name.endsWith('.weight') || t.shape.length !== 2 || !FLOAT_DTYPES.has(t.dtype)) continue;
    const name = t.name.slice(0, -'.weight'.length);
    if (name.length === 0) continue;
    const [n, k] = t.shape;
    if (n < 1 || k < 1) continue;
    const tensorNames = [t.name];
    if (st.has(`${name}.bias`)) {
      const b = st.info(`${name}.bias`);
      if (b.shape.length !== 1 || b.shape[0] !== n || !FLOAT_DTYPES.has(b.dtype)) {
        throw new FileFormatError(st.path, `tensor '${name}.bias' is ${b.dtype} [${b.shape.join(', ')}]: expected a floating-point bias [${n}] for the linear layer '${name}'`);
      }
      tensorNames.push(`${name}.bias`);
    }
    layers.push({ name, outFeatures: n, inFeatures: k, tensorNames });
  }
  return layers;
}

/** Reads a floating-point tensor of an open file as f32. */
export async function readF32(st: SafetensorsFile, name: string): Promise<Tensor<'f32'>> {
  const t = tensorFromSafetensors(await st.readTensor(name));
  return (t.dtype === 'f32' ? t : t.to('f32')) as Tensor<'f32'>;
}

/** The layer's weight and bias as f32 tensors. */
export async function readLinear(st: SafetensorsFile, layer: FileLinear): Promise<{ weight: Tensor<'f32'>; bias: Tensor<'f32'> | undefined }> {
  const weight = await readF32(st, `${layer.name}.weight`);
  const bias = layer.tensorNames.length > 1 ? await readF32(st, `${layer.name}.bias`) : undefined;
  return { weight, bias };
}

/**
 * Opens a calibration file and checks it against the model's layers: every tensor names a layer,
 * is floating point and has the layer's K as its last dimension. Returns the open file (close it)
 * and the token count per layer.
 */
export async function openCalibration(path: string, layers: readonly FileLinear[]): Promise<{ file: SafetensorsFile; tokens: Map<string, number> }> {
  const st = await openSafetensors(path);
  try {
    const byName = new Map(layers.map((l) => [l.name, l]));
    const tokens = new Map<string, number>();
    for (const t of st.tensors) {
      const layer = byName.get(t.name);
      if (layer === undefined) {
        const hint = layers.length > 0 ? ` (layers of the model: ${layers.slice(0, 5).map((l) => l.name).join(', ')}${layers.length > 5 ? ', ...' : ''})` : '';
        throw new FileFormatError(path, `tensor '${t.name}' names no linear layer of the model: calibration tensors are named after their layer${hint}`);
      }
      if (!FLOAT_DTYPES.has(t.dtype) || t.shape.length < 1 || t.shape[t.shape.length - 1] !== layer.inFeatures) {
        throw new FileFormatError(path, `tensor '${t.name}' is ${t.dtype} [${t.shape.join(', ')}]: expected F32/F16/BF16 inputs [tokens, ${layer.inFeatures}] for layer '${layer.name}'`);
      }
      const count = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      if (count < 1) throw new FileFormatError(path, `tensor '${t.name}' holds no tokens: expected inputs [tokens, ${layer.inFeatures}] with tokens >= 1`);
      tokens.set(t.name, count);
    }
    return { file: st, tokens };
  } catch (e) {
    await st.close();
    throw e;
  }
}

/** The calibration inputs of one layer as f32 [tokens, K]. */
export async function readCalibrationInputs(st: SafetensorsFile, layer: FileLinear): Promise<Tensor<'f32'>> {
  const x = await readF32(st, layer.name);
  return x.reshape([x.numel / layer.inFeatures, layer.inFeatures]) as Tensor<'f32'>;
}
