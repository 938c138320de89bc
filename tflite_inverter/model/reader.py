"""Reader: ``.tflite`` bytes -> validated, immutable IR.

Validation of untrusted input lives here and only here. Two passes:

1. structural, in :mod:`.flatbuf`: every offset, vtable and vector length is checked before it is
   read, with bounded depth and a bounded object count;
2. semantic, below: every tensor/buffer/op-code/subgraph index, control-flow subgraph references
   (no cycles), quantization arrays against shapes, and every constant's declared shape x dtype
   against the bytes that back it (so nothing later allocates what the file does not hold);
   ``shape_signature`` agrees with ``shape`` except where it is -1; every tensor's element count
   (zero-size dimensions counted as 1) is at most :data:`MAX_ELEMENTS`; quantization scales are finite and positive, and zero points lie in the
   range of the tensor's integer type (int32 for other types), as TFLite's quantization spec requires
   (``real = scale * (q - zero_point)``, scale > 0, zero point representable in the storage type).

Files are memory-mapped; constant data stays in the mapping (zero-copy views).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InvalidModelError, ModelFileError
from . import ir
from .flatbuf import ByteSpan, FlatbufferDecoder, UnionValue
from .schema import Schema, bundled_schema, op_name

MAX_RANK = 64
#: Largest element count of one tensor: TFLite's kernels count elements in a C ``int``
#: (``RuntimeShape::FlatSize()``), so a tensor of 2**31 elements or more cannot be run by the
#: interpreter, and it would need gigabytes in TensorFlow.
MAX_ELEMENTS = 2**31 - 1
#: Storage range of the zero point of each integer tensor type (other types: int32).
_ZP_RANGE = {"INT2": (-2, 1), "INT4": (-8, 7), "UINT4": (0, 15), "INT8": (-128, 127), "UINT8": (0, 255),
             "INT16": (-32768, 32767), "UINT16": (0, 65535)}

_NUMPY_TYPES: dict[str, str] = {
    "FLOAT32": "<f4", "FLOAT16": "<f2", "FLOAT64": "<f8", "INT32": "<i4", "UINT8": "u1", "INT64": "<i8",
    "BOOL": "?", "INT16": "<i2", "COMPLEX64": "<c8", "COMPLEX128": "<c16", "INT8": "i1", "UINT64": "<u8",
    "UINT32": "<u4", "UINT16": "<u2",
}
_ML_DTYPES = {"INT4": "int4", "UINT4": "uint4", "INT2": "int2", "BFLOAT16": "bfloat16",
              "FLOAT8_E4M3FN": "float8_e4m3fn", "FLOAT8_E5M2": "float8_e5m2"}
_BITS = {"INT4": 4, "UINT4": 4, "INT2": 2}


def numpy_dtype(type_name: str) -> np.dtype:
    """The numpy dtype of a TFLite ``TensorType`` name (object for STRING/RESOURCE/VARIANT)."""
    if type_name in _NUMPY_TYPES:
        return np.dtype(_NUMPY_TYPES[type_name])
    if type_name in _ML_DTYPES:
        import ml_dtypes  # small, shipped with TensorFlow; only needed for these exotic types

        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[type_name]))
    return np.dtype(object)


def read_model(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> ir.Model:
    """Read and validate a TFLite model from a path (memory-mapped) or from bytes.

    Raises :class:`ModelFileError` for paths that cannot be read and :class:`InvalidModelError` for
    bytes that are not a valid model; the message names what is wrong and where.
    """
    path: str | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        storage: Any = bytes(source) if isinstance(source, memoryview) else source
    else:
        path = os.fspath(source)
        storage = _map_file(path)
    return _build(storage, bundled_schema(), path)


def _map_file(path: str) -> Any:
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a directory, not a .tflite file")
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise ModelFileError(f"{path}: file is empty")
        with open(path, "rb") as fh:
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


class _Builder:
    def __init__(self, storage: Any, schema: Schema, path: str | None):
        self.storage = storage
        self.schema = schema
        self.path = path
        self.n = len(storage)

    def fail(self, msg: str) -> InvalidModelError:
        return InvalidModelError(msg)

    # -- buffers ----------------------------------------------------------------------------------
    def buffers(self, raw: list[dict[str, Any]]) -> tuple[ir.Buffer, ...]:
        out = []
        for i, b in enumerate(raw):
            off, size = int(b.get("offset") or 0), int(b.get("size") or 0)
            if off > 1:
                if size < 0 or off + size > self.n:
                    raise self.fail(f"buffer {i}: external data at offset {off} with size {size} runs past "
                                    f"the end of the {self.n}-byte file")
                out.append(ir.Buffer(i, off, size, True))
                continue
            data = b.get("data")
            if isinstance(data, ByteSpan):
                out.append(ir.Buffer(i, data.offset, data.length, False))
            else:
                out.append(ir.Buffer(i, 0, 0, False))
        return tuple(out)

    # -- tensors ----------------------------------------------------------------------------------
    def int_tuple(self, arr: Any, where: str, what: str) -> tuple[int, ...]:
        if arr is None:
            return ()
        if len(arr) > MAX_RANK:
            raise self.fail(f"{where}: {what} has {len(arr)} dimensions (at most {MAX_RANK} are supported)")
        return tuple(int(x) for x in arr)

    def quantization(self, q: dict[str, Any] | None, shape: tuple[int, ...], where: str, type_name: str = ""
                     ) -> ir.Quantization | None:
        if not q:
            return None
        scale = q.get("scale")
        scale = np.zeros(0, np.float32) if scale is None else scale
        zp = q.get("zero_point")
        zp = np.zeros(0, np.int64) if zp is None else zp
        details = q.get("details")
        det: dict[str, Any] | None = None
        if isinstance(details, UnionValue) and details.type_index:
            det = {"type": details.type_name or f"UNKNOWN_{details.type_index}"}
            for k, v in (details.value or {}).items():
                det[k] = v.tolist() if isinstance(v, np.ndarray) else (
                    bytes(self.storage[v.offset:v.offset + v.length]) if isinstance(v, ByteSpan) else v)
        qmin, qmax = q.get("min"), q.get("max")
        if scale.size == 0 and det is None and (qmin is None or qmin.size == 0):
            return None
        qdim = int(q.get("quantized_dimension") or 0)
        if scale.size and zp.size not in (0, 1, scale.size):
            raise self.fail(f"{where}: quantization has {scale.size} scales but {zp.size} zero points")
        bad = np.flatnonzero(~(np.isfinite(scale) & (scale > 0)))
        if bad.size:
            raise self.fail(f"{where}: quantization scale {bad[0]} is {float(scale[bad[0]])!r} (scales must be "
                            "finite and positive)")
        lo, hi = _ZP_RANGE.get(type_name, (-(2**31), 2**31 - 1))
        bad = np.flatnonzero((zp < lo) | (zp > hi))
        if bad.size:
            raise self.fail(f"{where}: quantization zero point {bad[0]} is {int(zp[bad[0]])}, outside the "
                            f"{type_name or 'int32'} range [{lo}, {hi}]")
        if scale.size > 1:
            if shape and not 0 <= qdim < len(shape):
                # Real converters copy the filter's axis onto rank-1 biases (e.g. person_detect's
                # quantized_dimension 3 on a bias); the interpreter accepts it, so do we when exactly
                # one axis matches the scale count.
                matches = [d for d, n in enumerate(shape) if n == scale.size]
                if len(matches) != 1:
                    raise self.fail(f"{where}: quantized_dimension {qdim} is outside the tensor's rank "
                                    f"{len(shape)}")
                qdim = matches[0]
            if shape and shape[qdim] != scale.size:
                raise self.fail(f"{where}: {scale.size} per-channel scales but dimension {qdim} has size "
                                f"{shape[qdim]}")
        if zp.size == 0 and scale.size:
            zp = np.zeros(scale.size, np.int64)
        return ir.Quantization(scale=scale, zero_point=zp, quantized_dimension=qdim,
                               min=qmin, max=qmax, details=det)

    def tensor(self, idx: int, t: dict[str, Any], sg: int, buffers: tuple[ir.Buffer, ...]) -> ir.Tensor:
        where = f"subgraph {sg}, tensor {idx}"
        name = t.get("name") or ""
        if name:
            where += f" ({name!r})"
        type_code = int(t.get("type") or 0)
        type_name = self.schema.enum_name("TensorType", type_code)
        if type_name.startswith("UNKNOWN"):
            raise self.fail(f"{where}: unknown tensor type {type_code}")
        shape = self.int_tuple(t.get("shape"), where, "shape")
        sig = self.int_tuple(t.get("shape_signature"), where, "shape_signature") or shape
        if len(sig) != len(shape):
            raise self.fail(f"{where}: shape_signature {sig} has a different rank than shape {shape}")
        if any(d < -1 for d in shape) or any(d < -1 for d in sig):
            raise self.fail(f"{where}: shape {shape} / signature {sig} has a negative dimension")
        if any(s != -1 and s != d for s, d in zip(sig, shape)):
            raise self.fail(f"{where}: shape_signature {list(sig)} disagrees with shape {list(shape)} (a "
                            "signature dimension is -1 (dynamic) or the shape's own size)")
        count = 1
        for d in shape:  # zero-size dimensions count as 1: [0, 2**31] is as absurd as [1, 2**31]
            count *= max(d, 1)
        if count > MAX_ELEMENTS:
            raise self.fail(f"{where}: shape {list(shape)} has {count} elements (at most {MAX_ELEMENTS}: TFLite "
                            "counts a tensor's elements in a 32-bit int)")
        bidx = int(t.get("buffer") or 0)
        if bidx > 0 and bidx >= len(buffers):  # buffer 0 is the "no data" sentinel, even with no buffers
            raise self.fail(f"{where}: refers to buffer {bidx}, but there are {len(buffers)} buffers")
        buf = buffers[bidx] if bidx > 0 else None
        # A zero-element tensor whose buffer has a (necessarily empty) data vector is an empty constant,
        # e.g. the [] shape operand of a reshape to a scalar.
        empty_const = buf is not None and buf.offset > 0 and any(d == 0 for d in shape)
        span = buf if buf is not None and (buf.size > 0 or empty_const) else None
        sparsity = t.get("sparsity")
        sparsity_plain = _plain_tree(sparsity) if sparsity else None
        if span is not None and sparsity is None and type_name not in ("STRING", "RESOURCE", "VARIANT"):
            if any(d < 0 for d in shape):
                raise self.fail(f"{where}: constant has unknown dimension in shape {shape}")
            count = 1
            for d in shape:
                count *= d
            bits = _BITS.get(type_name)
            need = (count * bits + 7) // 8 if bits else count * numpy_dtype(type_name).itemsize
            if need > span.size:
                raise self.fail(f"{where}: constant of shape {list(shape)} and type {type_name} needs {need} "
                                f"bytes, but buffer {bidx} holds {span.size}")
        return ir.Tensor(
            index=idx, name=name, shape=shape, shape_signature=sig, type_name=type_name,
            dtype=numpy_dtype(type_name), buffer=bidx, is_variable=bool(t.get("is_variable")),
            quantization=self.quantization(t.get("quantization"), shape, where, type_name), sparsity=sparsity_plain,
            has_rank=bool(t.get("has_rank")), _storage=self.storage, _span=span)

    # -- operators --------------------------------------------------------------------------------
    def opcodes(self, raw: list[dict[str, Any]]) -> list[tuple[str, int, str | None, int]]:
        out = []
        for i, oc in enumerate(raw):
            dep = int(oc.get("deprecated_builtin_code") or 0)
            code = int(oc.get("builtin_code") or 0)
            # The schema: builtin_code is authoritative when set; old files only set the (int8)
            # deprecated field, which saturates at 127 = PLACEHOLDER_FOR_GREATER_OP_CODES.
            builtin = max(code, dep)
            if builtin < 0:
                raise self.fail(f"operator code {i}: negative builtin code {builtin}")
            out.append((op_name(builtin), builtin, oc.get("custom_code"), int(oc.get("version") or 1)))
        return out

    def options(self, u: Any) -> tuple[str | None, dict[str, Any]]:
        if not isinstance(u, UnionValue) or not u.type_index:
            return None, {}
        if u.type_name is None:
            return f"UNKNOWN_OPTIONS_{u.type_index}", {}
        tdef = self.schema.tables[u.type_name]
        values: dict[str, Any] = {}
        for f in tdef.fields:
            if f.deprecated or f.name not in (u.value or {}):
                continue
            v = u.value[f.name]
            if f.type.kind == "enum":
                v = self.schema.enum_name(f.type.name, int(v))
            values[f.name] = self._plain(v)
        return u.type_name, values

    def _plain(self, v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, ByteSpan):
            return bytes(self.storage[v.offset:v.offset + v.length])
        return _plain_tree(v)

    def operator(self, idx: int, op: dict[str, Any], sg: int, ntensors: int,
                 codes: list[tuple[str, int, str | None, int]]) -> ir.Operator:
        oi = int(op.get("opcode_index") or 0)
        if oi >= len(codes):
            raise self.fail(f"subgraph {sg}, operator {idx}: op code index {oi}, but there are {len(codes)} "
                            "operator codes")
        name, _, custom, version = codes[oi]
        where = f"subgraph {sg}, operator {idx} ({'CUSTOM:' + str(custom) if name == 'CUSTOM' else name})"
        ins = self.indices(op.get("inputs"), ntensors, where, "input", allow_absent=True)
        outs = self.indices(op.get("outputs"), ntensors, where, "output", allow_absent=True)
        inter = self.indices(op.get("intermediates"), ntensors, where, "intermediate", allow_absent=True)
        otype, opts = self.options(op.get("builtin_options"))
        otype2, opts2 = self.options(op.get("builtin_options_2"))
        if otype2 and not otype:
            otype, opts = otype2, opts2
        span = None
        cust = op.get("custom_options")
        loff, lsize = int(op.get("large_custom_options_offset") or 0), int(op.get("large_custom_options_size") or 0)
        if loff > 1 and lsize:
            if loff + lsize > self.n:
                raise self.fail(f"{where}: large custom options at offset {loff} size {lsize} run past the end "
                                f"of the {self.n}-byte file")
            span = (loff, lsize)
        elif isinstance(cust, ByteSpan) and cust.length:
            span = (cust.offset, cust.length)
        fmt = self.schema.enum_name("CustomOptionsFormat", int(op.get("custom_options_format") or 0))
        mut = op.get("mutating_variable_inputs")
        return ir.Operator(
            index=idx, opcode_index=oi, name=name, version=version, inputs=ins, outputs=outs,
            intermediates=inter, custom_code=custom, options_type=otype, options=opts,
            custom_options_format=fmt, mutating_variable_inputs=tuple(bool(x) for x in mut) if mut is not None
            else (), _storage=self.storage, _custom_span=span)

    def indices(self, arr: Any, ntensors: int, where: str, what: str, allow_absent: bool) -> tuple[int, ...]:
        if arr is None:
            return ()
        vals = tuple(int(x) for x in arr)
        for k, v in enumerate(vals):
            if v == -1 and allow_absent:
                continue
            if not 0 <= v < ntensors:
                raise self.fail(f"{where}: {what} {k} refers to tensor {v}, but there are {ntensors} tensors")
        return vals

    # -- whole model ------------------------------------------------------------------------------
    def build(self) -> ir.Model:
        root = FlatbufferDecoder(self.storage, self.schema).root()
        buffers = self.buffers(root.get("buffers") or [])
        codes = self.opcodes(root.get("operator_codes") or [])
        raw_sgs = root.get("subgraphs") or []
        if not raw_sgs:
            raise self.fail("model has no subgraphs")
        subgraphs = []
        for si, sg in enumerate(raw_sgs):
            raw_tensors = sg.get("tensors") or []
            tensors = tuple(self.tensor(ti, t, si, buffers) for ti, t in enumerate(raw_tensors))
            nt = len(tensors)
            where = f"subgraph {si}"
            ins = self.indices(sg.get("inputs"), nt, where, "input", allow_absent=False)
            outs = self.indices(sg.get("outputs"), nt, where, "output", allow_absent=False)
            ops = tuple(self.operator(oi, op, si, nt, codes) for oi, op in enumerate(sg.get("operators") or []))
            subgraphs.append(ir.Subgraph(si, sg.get("name") or "", tensors, ins, outs, ops))
        self.check_calls(subgraphs)
        sigs = []
        for k, s in enumerate(root.get("signature_defs") or []):
            sgi = int(s.get("subgraph_index") or 0)
            key = s.get("signature_key") or f"signature_{k}"
            if sgi >= len(subgraphs):
                raise self.fail(f"signature {key!r}: subgraph {sgi}, but there are {len(subgraphs)} subgraphs")
            nt = len(subgraphs[sgi].tensors)

            def maps(items: Iterable[dict[str, Any]], what: str, key: str = key, nt: int = nt,
                     sgi: int = sgi) -> tuple[tuple[str, int], ...]:
                out = []
                for m in items or []:
                    ti = int(m.get("tensor_index") or 0)
                    if ti >= nt:
                        raise self.fail(f"signature {key!r}: {what} {m.get('name')!r} refers to tensor {ti}, "
                                        f"but subgraph {sgi} has {nt} tensors")
                    out.append((m.get("name") or f"{what}_{len(out)}", ti))
                return tuple(out)

            sigs.append(ir.SignatureDef(key, sgi, maps(s.get("inputs"), "input"), maps(s.get("outputs"), "output")))
        metadata = []
        for m in root.get("metadata") or []:
            b = int(m.get("buffer") or 0)
            if b >= len(buffers):
                raise self.fail(f"metadata {m.get('name')!r}: buffer {b}, but there are {len(buffers)} buffers")
            metadata.append((m.get("name") or "", b))
        return ir.Model(version=int(root.get("version") or 0), description=root.get("description") or "",
                        subgraphs=tuple(subgraphs), signatures=tuple(sigs), buffers=buffers,
                        metadata=tuple(metadata), size=self.n, path=self.path, _storage=self.storage)

    def check_calls(self, subgraphs: list[ir.Subgraph]) -> None:
        """Every subgraph an op refers to exists, and no subgraph reaches itself (no recursion)."""
        n = len(subgraphs)
        edges: dict[int, list[int]] = {}
        for sg in subgraphs:
            for op in sg.operators:
                for k, v in op.options.items():
                    if not k.endswith(("subgraph_index", "subgraph_indices", "subgraph")):
                        continue
                    targets = v if isinstance(v, list) else [v]
                    for t in targets:
                        if not isinstance(t, int) or not 0 <= t < n:
                            raise self.fail(f"{sg.where(op)}: {k} refers to subgraph {t}, but there are {n} "
                                            "subgraphs")
                        edges.setdefault(sg.index, []).append(t)
        state = [0] * n  # 0 new, 1 on stack, 2 done

        for start in range(n):
            if state[start]:
                continue
            stack = [(start, iter(edges.get(start, ())))]
            state[start] = 1
            path = [start]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                    path.pop()
                    continue
                if state[nxt] == 1:
                    cycle = " -> ".join(str(p) for p in path[path.index(nxt):] + [nxt])
                    raise self.fail(f"control-flow subgraphs call each other in a cycle: {cycle}")
                if state[nxt] == 0:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(edges.get(nxt, ()))))


def _plain_tree(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, UnionValue):
        return {"type": v.type_name, **{k: _plain_tree(x) for k, x in (v.value or {}).items()}}
    if isinstance(v, dict):
        return {k: _plain_tree(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain_tree(x) for x in v]
    if isinstance(v, ByteSpan):
        return {"offset": v.offset, "length": v.length}
    return v


def _build(storage: Any, schema: Schema, path: str | None) -> ir.Model:
    try:
        return _Builder(storage, schema, path).build()
    except InvalidModelError as exc:
        if path:
            raise InvalidModelError(f"{path}: {exc}") from None
        raise
    except RecursionError:
        raise InvalidModelError(f"{path or 'model'}: nesting too deep") from None
