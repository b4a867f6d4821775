/**
 * The onnxruntime graphs the peer benchmark times, written with onnx-writer.ts: an fp32 Gemm (MLAS
 * sgemm, weights prepacked by the session), the 4-bit MatMulNBits (com.microsoft; bits 4, a block
 * size, accuracy_level 4: activations quantized to int8 per block, int8 dot products), the int8
 * DynamicQuantizeMatMul (com.microsoft; activations quantized per tensor at run time), and a
 * 4-bit MLP block (MatMulNBits, Gelu, MatMulNBits). Weights are random: only timings matter here.
 */
import { DataType, encodeModel, rawBytes, type Model } from './onnx-writer.js';

const OPSETS = [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }];

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function randomFloats(n: number, scale: number, seed: number): Float32Array {
  const b = randomBytes(n, seed);
  return Float32Array.from(b, (v) => ((v - 127.5) / 127.5) * scale);
}

const io = (K: number, N: number): Pick<Model, 'inputs' | 'outputs'> => ({
  inputs: [{ name: 'x', dataType: DataType.FLOAT, shape: ['M', K] }],
  outputs: [{ name: 'y', dataType: DataType.FLOAT, shape: ['M', N] }],
});

/** Y = X·Wᵀ + b (Gemm, transB = 1). */
export function gemmF32(K: number, N: number): Uint8Array {
  return encodeModel({
    nodes: [{ opType: 'Gemm', inputs: ['x', 'w', 'b'], outputs: ['y'], attributes: [{ name: 'transB', int: 1 }] }],
    initializers: [
      { name: 'w', dataType: DataType.FLOAT, dims: [N, K], raw: rawBytes(randomFloats(N * K, 0.05, 1)) },
      { name: 'b', dataType: DataType.FLOAT, dims: [N], raw: rawBytes(randomFloats(N, 0.1, 2)) },
    ],
    ...io(K, N),
    opsets: OPSETS,
  });
}

function nbitsWeights(K: number, N: number, block: number, seed: number, name: string) {
  const blocks = Math.ceil(K / block);
  return [
    { name: `${name}_q`, dataType: DataType.UINT8, dims: [N, blocks, block / 2], raw: randomBytes(N * blocks * (block / 2), seed) },
    { name: `${name}_s`, dataType: DataType.FLOAT, dims: [N * blocks], raw: rawBytes(Float32Array.from(randomFloats(N * blocks, 0.01, seed + 1), (v) => 0.005 + Math.abs(v))) },
  ];
}

function nbitsNode(input: string, output: string, K: number, N: number, block: number, name: string) {
  return {
    opType: 'MatMulNBits', domain: 'com.microsoft', inputs: [input, `${name}_q`, `${name}_s`], outputs: [output],
    attributes: [{ name: 'K', int: K }, { name: 'N', int: N }, { name: 'bits', int: 4 }, { name: 'block_size', int: block }, { name: 'accuracy_level', int: 4 }],
  };
}

/** Y = X·Q4(W)ᵀ, 4-bit blocks of `block` along K (MatMulNBits, accuracy_level 4). */
export function matMulNBits(K: number, N: number, block: 32 | 64): Uint8Array {
  return encodeModel({ nodes: [nbitsNode('x', 'y', K, N, block, 'w')], initializers: nbitsWeights(K, N, block, 3, 'w'), ...io(K, N), opsets: OPSETS });
}

/** Y = X·Wᵀ with W int8 per output column scales, X quantized to uint8 at run time (DynamicQuantizeMatMul). */
export function dynamicQuantizeMatMul(K: number, N: number): Uint8Array {
  return encodeModel({
    nodes: [{ opType: 'DynamicQuantizeMatMul', domain: 'com.microsoft', inputs: ['x', 'w', 's', '', 'b'], outputs: ['y'] }],
    initializers: [
      { name: 'w', dataType: DataType.INT8, dims: [K, N], raw: randomBytes(K * N, 5) },
      { name: 's', dataType: DataType.FLOAT, dims: [N], raw: rawBytes(new Float32Array(N).fill(0.001)) },
      { name: 'b', dataType: DataType.FLOAT, dims: [N], raw: rawBytes(randomFloats(N, 0.1, 6)) },
    ],
    ...io(K, N),
    opsets: OPSETS,
  });
}

/** The 4-bit MLP block D → H → D: MatMulNBits, Gelu (erf), MatMulNBits. */
export function mlpNBits(D: number, H: number, block: 32 | 64): Uint8Array {
  return encodeModel({
    nodes: [
      nbitsNode('x', 'h', D, H, block, 'w1'),
      { opType: 'Gelu', domain: 'com.microsoft', inputs: ['h'], outputs: ['g'] },
      nbitsNode('g', 'y', H, D, block, 'w2'),
    ],
    initializers: [...nbitsWeights(D, H, block, 7, 'w1'), ...nbitsWeights(H, D, block, 9, 'w2')],
    ...io(D, D),
    opsets: OPSETS,
  });
}
