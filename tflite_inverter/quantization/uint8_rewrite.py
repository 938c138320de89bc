"""True uint8: rewrite a per-tensor int8 model so every 8-bit tensor is asymmetric uint8.

Older NPU stacks (and the legacy TFLite "quantized uint8" path) want uint8 everywhere. The TF
converter no longer emits that, but it is a lossless rewrite of a *per-tensor* int8 model: for each
int8 tensor ``real = s * (q - zp)`` equals ``s * ((q + 128) - (zp + 128))``, so the scale stays,
the zero point moves by +128 and constant data is shifted by +128 (weights become asymmetric
uint8 with zero point 128). Scales are unchanged, so int32 biases (scale ``s_in * s_w``) need no
rescaling. Per-channel tensors are refused: uint8 kernels take one scale per tensor.

The flatbuffer is edited through :mod:`.fbedit` (TensorFlow's object API, which round-trips every
field; buffers written 16-byte aligned).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..model import ir

#: Builtin ops with a uint8 kernel in TFLite (data, with its source: see the file).
UINT8_KERNELS_FILE = Path(__file__).resolve().parent.parent / "coverage" / "targets" / "uint8_kernels.json"


@functools.lru_cache(maxsize=1)
def uint8_kernel_ops() -> frozenset[str]:
    """The builtin op names listed in :data:`UINT8_KERNELS_FILE`."""
    with open(UINT8_KERNELS_FILE) as fh:
        return frozenset(json.load(fh)["ops"])


def ops_without_uint8_kernel(model: ir.Model) -> list[dict[str, Any]]:
    """Ops that read or write a uint8 tensor but have no uint8 kernel in TFLite (by the data file):
    ``{"op", "index", "subgraph", "where"}`` each. Custom ops are reported too (no builtin kernel)."""
    known = uint8_kernel_ops()
    found = []
    for sg in model.subgraphs:
        for op in sg.operators:
            touches = any(i >= 0 and sg.tensors[i].type_name == "UINT8" for i in (*op.inputs, *op.outputs))
            if touches and (op.name not in known or op.key.startswith("CUSTOM")):
                found.append({"op": op.key, "index": op.index, "subgraph": sg.index, "where": sg.where(op)})
    return found


def int8_to_uint8(blob: bytes) -> bytes:
    """The uint8 version of a per-tensor int8 .tflite (see the module docstring)."""
    from tensorflow.lite.python import schema_py_generated as fb

    from .fbedit import pack, unpack

    model = unpack(blob)
    shifted: set[int] = set()
    other_users: dict[int, str] = {}
    for si, sg in enumerate(model.subgraphs):
        for ti, t in enumerate(sg.tensors):
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            if t.type != fb.TensorType.INT8:
                if t.buffer:
                    other_users[t.buffer] = name
                continue
            q = t.quantization
            scales = [] if q is None or q.scale is None else list(q.scale)
            if not scales:
                raise UsageError(f"uint8 rewrite: subgraph {si} tensor {ti} ({name!r}) is int8 without quantization "
                                 "parameters; it has no uint8 equivalent")
            if len(scales) > 1:
                raise UsageError(f"uint8 rewrite: subgraph {si} tensor {ti} ({name!r}) is quantized per channel "
                                 f"({len(scales)} scales); uint8 needs one scale per tensor")
            zps = [0] if q.zeroPoint is None or len(q.zeroPoint) == 0 else list(q.zeroPoint)
            q.zeroPoint = np.asarray([int(zps[0]) + 128], dtype=np.int64)
            t.type = fb.TensorType.UINT8
            buf = model.buffers[t.buffer] if t.buffer else None
            if buf is not None and buf.data is not None and len(buf.data) and t.buffer not in shifted:
                data = np.asarray(buf.data, dtype=np.uint8).view(np.int8)
                buf.data = (data.astype(np.int16) + 128).astype(np.uint8)
                shifted.add(t.buffer)
    clash = sorted(set(other_users) & shifted)
    if clash:
        raise UsageError(f"uint8 rewrite: buffer {clash[0]} is shared by an int8 tensor and the non-int8 tensor "
                         f"{other_users[clash[0]]!r}; cannot shift it for one only")
    return pack(model)
