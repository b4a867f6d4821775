/**
 * Between safetensors entries and Tensors: which safetensors dtype stores which Tensor dtype.
 * Packed 4-bit codes are stored as U8 with the last dimension halved (two codes per byte);
 * scale bytes (E8M0) as U8 and E4M3 as F8_E4M3.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, type DType } from '../tensor.js';
import type { SafetensorsDtype } from './safetensors-format.js';
import type { SafetensorsTensorInput } from './safetensors-encode.js';

const TO_TENSOR: Partial<Record<SafetensorsDtype, DType>> = {
  F32: 'f32', F16: 'f16', BF16: 'bf16', I8: 'i8', U8: 'u8', I32: 'i32', I64: 'i64', F8_E4M3: 'e4m3',
};

const TO_SAFETENSORS: Record<DType, SafetensorsDtype> = {
  f32: 'F32', f16: 'F16', bf16: 'BF16', i8: 'I8', u8: 'U8', i32: 'I32', i64: 'I64',
  int4: 'U8', fp4_e2m1: 'U8', e8m0: 'U8', e4m3: 'F8_E4M3',
};

/**
 * A Tensor over a safetensors entry's bytes (no copy when aligned). `as` reinterprets U8 data as
 * one of the byte-stored dtypes (`int4`, `fp4_e2m1`: the last dimension doubles; `e8m0`).
 */
type SafetensorsEntry = { name: string; dtype: SafetensorsDtype; shape: readonly number[]; data: Uint8Array };
export function tensorFromSafetensors(entry: SafetensorsEntry, as: 'int4' | 'fp4_e2m1'): Tensor<'int4' | 'fp4_e2m1'>;
export function tensorFromSafetensors(entry: SafetensorsEntry, as: 'e8m0'): Tensor<'e8m0'>;
export function tensorFromSafetensors(entry: SafetensorsEntry, as?: 'int4' | 'fp4_e2m1' | 'e8m0'): Tensor;
export function tensorFromSafetensors(entry: SafetensorsEntry, as?: 'int4' | 'fp4_e2m1' | 'e8m0'): Tensor {
  if (as !== undefined) {
    if (entry.dtype !== 'U8') throw new ArgumentError('as', `a U8 tensor to read as '${as}', but '${entry.name}' is ${entry.dtype}`, as);
    if (as === 'e8m0') return Tensor.fromBytes(entry.data, entry.shape, 'e8m0');
    if (entry.shape.length === 0) throw new ArgumentError('as', `a tensor with at least one dimension to unpack '${entry.name}' as ${as}`, as);
    const shape = [...entry.shape.slice(0, -1), entry.shape[entry.shape.length - 1] * 2];
    return Tensor.fromBytes(entry.data, shape, as);
  }
  const dtype = TO_TENSOR[entry.dtype];
  if (dtype === undefined) {
    throw new ArgumentError('entry.dtype', `a dtype svdquant tensors hold (${Object.keys(TO_TENSOR).join(', ')}) for '${entry.name}'`, entry.dtype);
  }
  return Tensor.fromBytes(entry.data, entry.shape, dtype);
}

/** The safetensors entry that stores a Tensor (packed dtypes as U8 with the last dimension halved). */
export function tensorToSafetensors(name: string, tensor: Tensor): SafetensorsTensorInput {
  const dtype = TO_SAFETENSORS[tensor.dtype];
  const packed = tensor.dtype === 'int4' || tensor.dtype === 'fp4_e2m1';
  const shape = packed ? [...tensor.shape.slice(0, -1), tensor.shape[tensor.shape.length - 1] / 2] : [...tensor.shape];
  return { name, dtype, shape, data: tensor.bytes() };
}
