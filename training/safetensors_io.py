"""A small safetensors reader and writer (the python `safetensors` package is not installed here).

File layout: 8-byte little-endian header length N, then N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}} with the names
sorted and the header padded with spaces to a multiple of 8, then the raw little-endian tensor data.
"""

import json
import os
import struct

import numpy as np
import torch

_NUMPY_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_TORCH_TO_CODE = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def float32_to_bfloat16_bits(values):
    """uint16 bit patterns of bf16, rounded to nearest, ties to even; NaN stays a (quiet) NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    rounded = np.where(nan, (bits >> 16) | 0x40, rounded)
    return rounded.astype(np.uint16)


def bfloat16_bits_to_float32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _encode(tensor, dtype_code):
    """(code, raw little-endian bytes) of a tensor stored as dtype_code (None: keep the tensor's dtype)."""
    tensor = tensor.detach().cpu().contiguous()
    if dtype_code == "BF16":
        if tensor.dtype == torch.bfloat16:
            return "BF16", tensor.view(torch.int16).numpy().astype("<i2").tobytes()
        return "BF16", float32_to_bfloat16_bits(tensor.float().numpy()).astype("<u2").tobytes()
    if dtype_code is None:
        dtype_code = _TORCH_TO_CODE.get(tensor.dtype)
        if dtype_code is None:
            raise ValueError(f"unsupported dtype {tensor.dtype}")
    array = tensor.numpy().astype(np.dtype(_NUMPY_DTYPES[dtype_code]).newbyteorder("<"))
    return dtype_code, array.tobytes()


def save_file(tensors, path, dtype=None, metadata=None):
    """Write {name: tensor} atomically (temporary file, fsync, rename). dtype: None keeps each tensor's
    dtype; "BF16" or "F32" converts every floating tensor."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name]
        code = dtype if (dtype is not None and tensor.is_floating_point()) else None
        code, raw = _encode(tensor, code)
        header[name] = {"dtype": code, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_file(path):
    """({name: float32/int torch tensor}, metadata). BF16 and F16 are widened to float32."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if 8 + length > len(data):
        raise ValueError(f"{path}: header length {length} runs past the end of the file")
    header = json.loads(data[8 : 8 + length].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    body = memoryview(data)[8 + length :]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"{path}: tensor {name} has offsets {begin}..{end} outside the data")
        raw = bytes(body[begin:end])
        shape = entry["shape"]
        if entry["dtype"] == "BF16":
            array = bfloat16_bits_to_float32(np.frombuffer(raw, dtype="<u2"))
        elif entry["dtype"] in _NUMPY_DTYPES:
            array = np.frombuffer(raw, dtype=np.dtype(_NUMPY_DTYPES[entry["dtype"]]).newbyteorder("<"))
            if entry["dtype"] == "F16":
                array = array.astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        if array.size != int(np.prod(shape)):
            raise ValueError(f"{path}: tensor {name} has {array.size} elements for shape {shape}")
        tensors[name] = torch.from_numpy(array.astype(array.dtype.newbyteorder("=")).reshape(shape).copy())
    return tensors, metadata
