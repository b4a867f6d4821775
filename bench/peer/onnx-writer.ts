/**
 * A small writer for the subset of ONNX (onnx.proto, IR version 8) that the peer benchmark's graphs
 * need: a model with one graph of nodes, initializers, typed inputs and outputs, and operator-set
 * imports. Protobuf's wire format is simple enough that these few messages are written here rather
 * than through a generated library: varints, length-delimited fields, and fixed 32-bit floats.
 * Field numbers are those of onnx.proto (github.com/onnx/onnx, onnx/onnx.proto).
 */

/** TensorProto.DataType values used here. */
export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7 } as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

class Writer {
  private readonly parts: Uint8Array[] = [];
  private length = 0;

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.length += bytes.length;
  }

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.push(Uint8Array.from(out));
  }

  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number): this {
    this.key(field, 0);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: Writer): this {
    return this.bytes(field, value.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

export interface Tensor {
  name: string;
  dataType: DataTypeCode;
  dims: number[];
  /** Little-endian element bytes (raw_data). */
  raw: Uint8Array;
}

export type Attribute = { name: string; int: number } | { name: string; float: number };

export interface Node {
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  attributes?: Attribute[];
}

/** A graph input or output: a name, an element type and a shape (a string is a symbolic dimension). */
export interface ValueInfo {
  name: string;
  dataType: DataTypeCode;
  shape: Array<number | string>;
}

export interface Model {
  nodes: Node[];
  initializers: Tensor[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Operator sets: '' (the default domain) and e.g. 'com.microsoft'. */
  opsets: Array<{ domain: string; version: number }>;
}

function tensorProto(t: Tensor): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  return w.int(2, t.dataType).string(8, t.name).bytes(9, t.raw);
}

function attributeProto(a: Attribute): Writer {
  const w = new Writer().string(1, a.name);
  if ('int' in a) return w.int(3, a.int).int(20, 2); // AttributeType INT
  return w.float(2, a.float).int(20, 1); // FLOAT
}

function nodeProto(n: Node, index: number): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, `${n.opType}_${index}`).string(4, n.opType);
  for (const a of n.attributes ?? []) w.message(5, attributeProto(a));
  if (n.domain !== undefined && n.domain !== '') w.string(7, n.domain);
  return w;
}

function valueInfoProto(v: ValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.shape) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().int(1, v.dataType).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

/** The serialized ModelProto. */
export function encodeModel(model: Model): Uint8Array {
  const graph = new Writer();
  model.nodes.forEach((n, i) => graph.message(1, nodeProto(n, i)));
  graph.string(2, 'svdquant_peer');
  for (const t of model.initializers) graph.message(5, tensorProto(t));
  for (const v of model.inputs) graph.message(11, valueInfoProto(v));
  for (const v of model.outputs) graph.message(12, valueInfoProto(v));
  const m = new Writer().int(1, 8).string(2, 'svdquant-bench').message(7, graph);
  for (const o of model.opsets) m.message(8, new Writer().string(1, o.domain).int(2, o.version));
  return m.finish();
}

/** Little-endian bytes of a typed array (a view, no copy). */
export function rawBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
