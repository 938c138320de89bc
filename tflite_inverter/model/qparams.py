"""Numpy (de)quantization of per-tensor quantized values, and which tensors are floats: the one
place the verifier, quantize's evaluation and the coverage report take them from.

``quantize_values``: ``clip(round_half_even(real / scale) + zero_point)`` in float64, as TFLite's
QUANTIZE of a float input rounds; ``dequantize_values``: ``scale * (q - zero_point)`` in float64,
returned as float32. Both use the tensor's first (per-tensor) scale and zero point. The per-axis
dequantization of weights, with TFLite's float32 arithmetic, is :func:`..ops.common.dequantize_array`.
"""

from __future__ import annotations

import numpy as np

from . import ir

#: TFLite tensor types that hold real numbers.
FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})


def quantize_values(a: np.ndarray, t: ir.Tensor) -> np.ndarray:
    """Real values ``a`` as the integers of per-tensor quantized ``t`` (other tensors: ``a`` in ``t``'s dtype)."""
    if t.type_name in ("FLOAT32", "FLOAT16") or not t.is_quantized:
        return np.asarray(a, dtype=t.dtype)
    q = t.quantization
    info = np.iinfo(t.dtype)
    v = np.round(np.asarray(a, dtype=np.float64) / float(q.scale[0])) + int(q.zero_point[0])
    return np.clip(v, info.min, info.max).astype(t.dtype)


def dequantize_values(a: np.ndarray, t: ir.Tensor) -> np.ndarray:
    """The real values (float32) of integers ``a`` of per-tensor quantized ``t``; float data passes."""
    if not t.is_quantized or a.dtype.kind == "f":
        return np.asarray(a, dtype=np.float32)
    q = t.quantization
    return (float(q.scale[0]) * (a.astype(np.float64) - int(q.zero_point[0]))).astype(np.float32)


def lsb_scale(sg: ir.Subgraph, t: ir.Tensor) -> float | None:
    """The step output ``t``'s errors are counted in: its own per-tensor scale, or that of the
    quantized (non-constant, per-tensor) tensor a DEQUANTIZE producing ``t`` reads; else None."""
    if t.is_quantized and t.quantization.scale.size == 1:
        return float(t.quantization.scale[0])
    for op in sg.operators:
        if t.index in op.outputs and op.name == "DEQUANTIZE" and op.inputs and op.inputs[0] >= 0:
            src = sg.tensors[op.inputs[0]]
            if src.is_quantized and not src.is_constant and src.quantization.scale.size == 1:
                return float(src.quantization.scale[0])
    return None
