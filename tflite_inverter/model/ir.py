"""The immutable intermediate representation every other part of the tool works on.

The reader builds it from the flatbuffer; nothing downstream touches flatbuffer objects. Constant
data is not copied: :meth:`Tensor.data` returns a read-only numpy view into the (memory-mapped)
file, except where the format forces a copy (packed int4, strings).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidModelError


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: ``real = scale * (q - zero_point)``, per tensor or along one axis."""

    scale: np.ndarray  # float32, shape [n]; n == 0 means "not quantized"
    zero_point: np.ndarray  # int64, shape [n] (or [1] broadcast)
    quantized_dimension: int = 0
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    details: dict[str, Any] | None = None  # e.g. {"type": "BlockwiseQuantization", "block_size": 32, ...}

    @property
    def is_quantized(self) -> bool:
        return self.scale.size > 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    def to_json(self) -> dict[str, Any]:
        """The quantization as the JSON report writes it (``docs/report-json.md``)."""
        return {
            "scale": [float(s) for s in self.scale],
            "zero_point": [int(z) for z in self.zero_point],
            "quantized_dimension": int(self.quantized_dimension),
            "per_channel": bool(self.per_channel),
            "channels": int(self.scale.size),
            "details": self.details,
        }


@dataclass(frozen=True)
class Buffer:
    index: int
    offset: int  # absolute byte offset in the file
    size: int
    external: bool  # stored after the flatbuffer (schema 3c Buffer.offset/size)


@dataclass(frozen=True, eq=False)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 for dynamic dims; equals shape when the file has none
    type_name: str  # the schema's TensorType name, e.g. "INT8"
    dtype: np.dtype  # numpy dtype (ml_dtypes for int4/bfloat16/float8; object for string/resource)
    buffer: int
    is_variable: bool = False
    quantization: Quantization | None = None
    sparsity: dict[str, Any] | None = None
    has_rank: bool = False
    _storage: Any = field(default=None, repr=False)
    _span: Buffer | None = field(default=None, repr=False)

    @property
    def is_constant(self) -> bool:
        """True when the file carries data for this tensor (a weight or other constant)."""
        return self._span is not None

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None and self.quantization.is_quantized

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)

    @property
    def nbytes(self) -> int:
        return self._span.size if self._span is not None else 0

    def raw(self) -> np.ndarray:
        """The constant's bytes as a read-only uint8 view into the file."""
        if not self.is_constant:
            raise InvalidModelError(f"tensor {self.index} ({self.name!r}) has no constant data")
        return np.frombuffer(self._storage, dtype=np.uint8, count=self._span.size, offset=self._span.offset)

    def data(self) -> np.ndarray:
        """The constant with its declared dtype and shape (a view where the format allows one).

        Sparse tensors return their stored (compressed) values; DENSIFY expands them.
        """
        raw = self.raw()
        if self.type_name == "STRING":
            return _decode_strings(raw, self)
        if self.type_name in ("INT4", "UINT4", "INT2"):
            return _unpack_sub_byte(raw, self)
        if self.sparsity is not None:
            return raw[: raw.size - raw.size % self.dtype.itemsize].view(self.dtype)
        count = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        arr = raw[: count * self.dtype.itemsize].view(self.dtype)
        return arr.reshape(self.shape)


def _unpack_sub_byte(raw: np.ndarray, t: Tensor) -> np.ndarray:
    bits = 2 if t.type_name == "INT2" else 4
    per = 8 // bits
    count = int(np.prod(t.shape, dtype=np.int64)) if t.shape else 1
    vals = np.stack([(raw >> (bits * k)) & ((1 << bits) - 1) for k in range(per)], axis=-1).reshape(-1)
    vals = vals[:count].astype(np.int8)
    if t.type_name != "UINT4":
        vals = np.where(vals >= (1 << (bits - 1)), vals - (1 << bits), vals).astype(np.int8)
    return vals.reshape(t.shape)


def _decode_strings(raw: np.ndarray, t: Tensor) -> np.ndarray:
    """TFLite string tensors: int32 count, count+1 int32 offsets, then the bytes."""
    where = f"tensor {t.index} ({t.name!r})"
    if raw.size < 4:
        raise InvalidModelError(f"{where}: string buffer of {raw.size} bytes has no count")
    n = int(raw[:4].view("<i4")[0])
    if n < 0 or 4 * (n + 2) > raw.size:
        raise InvalidModelError(f"{where}: string count {n} does not fit its {raw.size}-byte buffer")
    offs = raw[4: 4 * (n + 2)].view("<i4")
    if np.any(offs[1:] < offs[:-1]) or (n >= 0 and offs[-1] > raw.size):
        raise InvalidModelError(f"{where}: string offsets are out of order or past the buffer")
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = raw[offs[i]:offs[i + 1]].tobytes()
    shape = t.shape if t.shape and int(np.prod(t.shape)) == n else (n,)
    return out.reshape(shape)


@dataclass(frozen=True)
class Operator:
    index: int
    opcode_index: int
    name: str  # builtin op name, e.g. "CONV_2D", or "CUSTOM"
    version: int
    inputs: tuple[int, ...]  # -1 = absent optional input
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...] = ()
    custom_code: str | None = None
    options_type: str | None = None  # e.g. "Conv2DOptions"
    options: dict[str, Any] = field(default_factory=dict)  # plain values, enum fields as names
    custom_options_format: str = "FLEXBUFFERS"
    mutating_variable_inputs: tuple[bool, ...] = ()
    _storage: Any = field(default=None, repr=False)
    _custom_span: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """The registry key: the builtin name, or ``CUSTOM:<custom_code>`` for custom ops."""
        return f"CUSTOM:{self.custom_code}" if self.name == "CUSTOM" else self.name

    @property
    def custom_options(self) -> bytes:
        if not self._custom_span:
            return b""
        off, n = self._custom_span
        return bytes(self._storage[off:off + n])

    @functools.cached_property
    def flex_options(self) -> Any:
        """Custom options decoded as a FlexBuffer, or ``None`` when they are not one (raw structs)."""
        from .flexbuffer import decode_flexbuffer

        data = self.custom_options
        if not data or self.custom_options_format != "FLEXBUFFERS":
            return None
        return decode_flexbuffer(data)


@dataclass(frozen=True)
class Subgraph:
    index: int
    name: str
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]

    def where(self, op: Operator) -> str:
        """A location string used in every error message about an operator."""
        return f"subgraph {self.index}, operator {op.index} ({op.key})"

    def input_of(self, op: Operator, i: int) -> Tensor | None:
        """The tensor of ``op``'s input ``i``; None when the operator has no such input or it is
        absent (index -1, an omitted optional input)."""
        return self.tensors[op.inputs[i]] if i < len(op.inputs) and op.inputs[i] >= 0 else None

    def output_of(self, op: Operator, i: int = 0) -> Tensor | None:
        """The tensor of ``op``'s output ``i`` (None when absent)."""
        return self.tensors[op.outputs[i]] if i < len(op.outputs) and op.outputs[i] >= 0 else None


@dataclass(frozen=True)
class SignatureDef:
    key: str
    subgraph_index: int
    inputs: tuple[tuple[str, int], ...]  # (signature name, tensor index)
    outputs: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Model:
    version: int
    description: str
    subgraphs: tuple[Subgraph, ...]
    signatures: tuple[SignatureDef, ...]
    buffers: tuple[Buffer, ...]
    metadata: tuple[tuple[str, int], ...]  # (name, buffer index)
    size: int
    path: str | None = None
    _storage: Any = field(default=None, repr=False)

    def metadata_bytes(self, name: str) -> bytes | None:
        for mname, b in self.metadata:
            if mname == name:
                buf = self.buffers[b]
                return bytes(self._storage[buf.offset:buf.offset + buf.size])
        return None

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]
