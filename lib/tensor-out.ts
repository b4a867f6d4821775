/**
 * Caller-provided outputs (`{ out }` on forwards): a server that runs the same shapes again and
 * again can write every result into a buffer it keeps, so no output is allocated, faulted in or
 * collected per call (DESIGN.md §5 "Memory").
 */
import { ArgumentError } from './errors.js';
import { Tensor, checkNotDisposed } from './tensor.js';

function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * `out` checked as the output of an op: an f32 tensor of exactly `shape`, not disposed, sharing no
 * storage with any of `inputs` (the kernels read their inputs while they write the output).
 */
export function checkOutTensor(out: unknown, shape: readonly number[], inputs: readonly Tensor[], argument = 'options.out'): Tensor<'f32'> {
  if (!(out instanceof Tensor) || out.dtype !== 'f32' || out.shape.length !== shape.length || out.shape.some((d, i) => d !== shape[i])) {
    throw new ArgumentError(argument, `an f32 tensor of shape [${shape.join(', ')}]`, out instanceof Tensor ? out.toString() : out);
  }
  checkNotDisposed(out, argument);
  for (const x of inputs) {
    if (overlaps(out.data, x.data)) throw new ArgumentError(argument, 'a tensor that shares no storage with the inputs', out.toString());
  }
  return out as Tensor<'f32'>;
}
