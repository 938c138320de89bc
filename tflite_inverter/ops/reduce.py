"""Reductions (MEAN, SUM, REDUCE_*), ARG_MAX / ARG_MIN and CUMSUM.

The axis is input 1. A constant axis becomes a static Python list (negative axes normalized against
the input rank, duplicates dropped: TFLite resolves the axis set like that, TensorFlow rejects
duplicates), so the converter sees the same constant it would write. A computed axis is passed through
as a tensor.

Quantized REDUCE_MAX / REDUCE_MIN select raw integers: the builtin kernels refuse an output whose
scale or zero point differs from the input's, the default interpreter's XNNPACK takes it and copies
the selected codes unchanged (measured), so the output reads them with its own parameters
(:func:`.common.raw_codes`).

Faithful mode computes the quantized MEAN, SUM and REDUCE_PROD exactly as the default
interpreter does (constant axes over static dimensions; otherwise the float reduction is rounded
onto the output grid, which is off by one LSB now and then). Measured with one-op models against
ai_edge_litert 2.3 (tests/test_ops_reduce.py):

* 8-bit MEAN and SUM run in XNNPACK (the delegate takes constant-axes MEAN/SUM; measured for
  input/output scale ratios from 2**-12 to 2**12 and extreme zero points): the exact
  sum of the stored codes is converted to float32, multiplied by the float32 scale
  ``float32(s_in / s_out)`` (times ``float32(1 / n)`` for MEAN), a float32 bias
  ``zp_out - float32(n * zp_in) * scale`` is added and the result rounded half to even (so ties
  round to an even *code*). The builtin kernels (integer multiplier for MEAN, ``round_half_away`` of
  a float rescale for SUM) differ from it on ties, the builtin MEAN's truncated ``1 / n``
  multiplier elsewhere too (measured).
* int16 MEAN runs in the builtin kernel (reference ``QuantizedMeanOrSum``, integer form): the
  multiplier of ``s_in / s_out`` is rescaled by ``1 / n`` (``(q << k) / n``, ``k = floor(log2 n)``
  capped at 32 and at 31 + shift) and applied with ``MultiplyByQuantizedMultiplier``, which this
  interpreter builds with double rounding.
* int16 SUM runs in the builtin kernel's float form: ``round_half_away(float32(sum * float32(s_in /
  s_out)))`` (zero points are 0).
* Quantized REDUCE_PROD (int8, int16; builtin only): the running product of ``q - zero_point`` is
  rescaled after every multiplication by ``s_in / s_out ** (1 / n)`` with the 64-bit
  ``MultiplyByQuantizedMultiplier`` (15-bit multiplier, one rounding), once more at the end, and the
  output zero point added; uint8 is refused by the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph
from . import integer_kernels
from .common import integer_range, raw_codes, round_half_away
from .context import OpContext
from .fixedpoint import mbqm_double, quantize_multiplier
from .registry import register


def _rank(ctx: OpContext) -> int | None:
    t = ctx.in_tensor(0)
    if t.shape_signature or t.shape or t.has_rank:
        return len(t.shape_signature or t.shape)
    return None


def _axes(ctx: OpContext) -> Any:
    """The reduction axes: a sorted, de-duplicated list when constant, else the axis tensor."""
    if not ctx.is_const(1):
        return ctx.input(1)
    raw = [int(a) for a in ctx.const(1).reshape(-1)]
    rank = _rank(ctx)
    if rank == 0:
        return []  # reducing a scalar leaves it unchanged
    if rank is not None:
        bad = [a for a in raw if not -rank <= a < rank]
        if bad:
            raise ctx.unsupported(f"axis {bad} out of range for a rank-{rank} input")
        raw = [a % rank for a in raw]
    return sorted(set(raw))


def _make_reducer(fn: Callable[..., Any], name: str) -> Callable[[Any], list[Any]]:
    def rebuild(ctx: OpContext) -> list[Any]:
        keep = bool(ctx.options.get("keep_dims", False))
        x = ctx.input(0)
        if name in ("REDUCE_MAX", "REDUCE_MIN"):
            x = raw_codes(x, ctx.in_tensor(0), ctx.out_tensor(0))
        axes = _axes(ctx)
        y = fn(x, axis=axes, keepdims=keep)
        exact = _EXACT.get(name)
        if exact is not None:
            layout = _integer_layout(ctx, axes)
            if layout is not None:
                q = exact(ctx, integer_kernels.to_int(x, layout.in_scale), layout)
                if q is not None:
                    lo, hi = integer_range(layout.type_name)
                    q = tf.clip_by_value(q, float(lo), float(hi))
                    # The float reduction only carries the gradient; bounded to the output's range
                    # (a saturated product may be huge or infinite) the exact value survives ste.
                    real_lo, real_hi = ((v - layout.out_zp) * layout.out_scale for v in (lo, hi))
                    y = tf.clip_by_value(tf.where(tf.math.is_nan(y), tf.zeros_like(y), y), real_lo, real_hi)
                    return [integer_kernels.ste(y, tf.reshape((q - layout.out_zp) * layout.out_scale, tf.shape(y)))]
        return [y]

    return rebuild


class _Layout:
    """A quantized reduction with static shapes: what the integer emulations need."""

    def __init__(self, type_name: str, dims: list[int], axes: list[int], in_t: Any, out_t: Any):
        self.type_name = type_name
        self.dims, self.axes = dims, axes
        self.kept = [i for i in range(len(dims)) if i not in axes]
        self.n = int(np.prod([dims[a] for a in axes]))
        self.in_scale, self.out_scale = float(in_t.quantization.scale[0]), float(out_t.quantization.scale[0])
        self.in_zp, self.out_zp = int(in_t.quantization.zero_point[0]), int(out_t.quantization.zero_point[0])


def _integer_layout(ctx: OpContext, axes: Any) -> _Layout | None:
    """The layout when faithful mode can emulate the integer kernel: per-tensor quantized input and
    output of one integer type, constant axes over static dimensions."""
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and isinstance(axes, list) and axes):
        return None
    if not (in_t.is_quantized and out_t.is_quantized and in_t.type_name == out_t.type_name
            and in_t.type_name in ("INT8", "UINT8", "INT16")):
        return None
    if in_t.quantization.scale.size != 1 or out_t.quantization.scale.size != 1:
        return None
    if in_t.type_name == "INT16" and (int(in_t.quantization.zero_point[0]) or int(out_t.quantization.zero_point[0])):
        return None  # the int16 emulations assume TFLite's zero points of 0
    dims = list(in_t.shape_signature or in_t.shape)
    if not dims or any(dims[a] <= 0 for a in axes) or 0 in (in_t.quantization.scale[0], out_t.quantization.scale[0]):
        return None  # the element count n must be static; the kept dimensions may be dynamic
    return _Layout(in_t.type_name, dims, axes, in_t, out_t)


def _xnnpack_sum(q: Any, lay: _Layout, mean: bool) -> Any:
    """XNNPACK's 8-bit SUM/MEAN: ``rint(float32(raw_sum) * scale + bias)`` in float32 with
    ``scale = float32(s_in / s_out)`` (times ``float32(1 / n)`` for MEAN) and
    ``bias = float32(zp_out - float32(n * zp_in) * scale)``; ``raw_sum`` sums the stored codes."""
    si, so = np.float32(lay.in_scale), np.float32(lay.out_scale)
    scale = np.float32(si / so)
    if mean:
        scale = np.float32(scale * (np.float32(1) / np.float32(lay.n)))
    bias = np.float32(np.float32(lay.out_zp) - np.float32(np.float32(lay.n * lay.in_zp) * scale))
    raw = tf.reduce_sum(q, axis=lay.axes) + float(lay.n * lay.in_zp)  # exact: float64 sums of integers
    t = tf.cast(raw, tf.float32) * tf.constant(scale, tf.float32)
    return tf.round(t + tf.constant(bias, tf.float32))


def _exact_mean(ctx: OpContext, q: Any, lay: _Layout) -> Any:
    """Output codes of quantized MEAN (see the module docstring for which kernel and why)."""
    if lay.type_name in ("INT8", "UINT8"):
        return _xnnpack_sum(q, lay, mean=True)
    acc = tf.reduce_sum(q, axis=lay.axes)
    mult, shift = quantize_multiplier(float(np.float32(lay.in_scale)) / float(np.float32(lay.out_scale)))
    k = min(lay.n.bit_length() - 1, 32, 31 + shift)
    if mult == 0 or k < 0:
        return None
    mult, shift = (mult << k) // lay.n, shift - k
    return tf.cast(mbqm_double(tf.cast(acc, tf.int64), mult, shift), tf.float32) + lay.out_zp


def _exact_sum(ctx: OpContext, q: Any, lay: _Layout) -> Any:
    """Output codes of quantized SUM: XNNPACK for 8-bit, the builtin float rescale for int16."""
    if lay.type_name in ("INT8", "UINT8"):
        return _xnnpack_sum(q, lay, mean=False)
    acc = tf.reduce_sum(q, axis=lay.axes)
    scale = np.float32(np.float32(lay.in_scale) / np.float32(lay.out_scale))
    return round_half_away(tf.cast(acc, tf.float32) * tf.constant(scale, tf.float32)) + lay.out_zp


def _mbqm_int64(x: Any, mult: int, shift: int) -> Any:
    """TFLite's int64 ``MultiplyByQuantizedMultiplier``: the 31-bit multiplier reduced to 15 bits,
    one rounding-half-up right shift (the form :func:`.integer_kernels.requantize_fixed` calls ``wide``)."""
    m = (mult + (1 << 15)) >> 16 if mult < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    if total <= 0:
        return x * (m << -total)
    return tf.bitwise.right_shift(x * m + (1 << (total - 1)), total)


def _exact_prod(ctx: OpContext, q: Any, lay: _Layout) -> Any:
    """Quantized REDUCE_PROD (int8/int16): rescaled running product in row-major order."""
    if lay.type_name not in ("INT8", "INT16"):
        return None
    scaling = float(np.float32(lay.in_scale)) / math.pow(float(np.float32(lay.out_scale)), 1.0 / lay.n)
    mult, shift = quantize_multiplier(scaling)
    cols = tf.reshape(tf.transpose(tf.cast(q, tf.int64), lay.kept + lay.axes), [-1, lay.n])

    def step(cur: Any, col: Any) -> Any:  # int32 accumulator between steps (static_cast wraps)
        return tf.cast(tf.cast(_mbqm_int64(cur * col, mult, shift), tf.int32), tf.int64)

    elems = tf.transpose(cols)
    prod = tf.foldl(step, elems[1:], initializer=elems[0]) if lay.n > 1 else elems[0]
    return tf.cast(_mbqm_int64(prod, mult, shift), tf.float32) + lay.out_zp


_EXACT: dict[str, Callable[[Any, Any, _Layout], Any]] = {
    "MEAN": _exact_mean, "SUM": _exact_sum, "REDUCE_PROD": _exact_prod}


#: ``ReducerOptions.keep_dims`` is the only option of these ops.
_REDUCERS: dict[str, Callable[..., Any]] = {
    "MEAN": lambda x, axis, keepdims: tf.reduce_mean(x, axis=axis, keepdims=keepdims),
    "SUM": lambda x, axis, keepdims: tf.reduce_sum(x, axis=axis, keepdims=keepdims),
    "REDUCE_PROD": lambda x, axis, keepdims: tf.reduce_prod(x, axis=axis, keepdims=keepdims),
    "REDUCE_MAX": lambda x, axis, keepdims: tf.reduce_max(x, axis=axis, keepdims=keepdims),
    "REDUCE_MIN": lambda x, axis, keepdims: tf.reduce_min(x, axis=axis, keepdims=keepdims),
    "REDUCE_ANY": lambda x, axis, keepdims: tf.reduce_any(x, axis=axis, keepdims=keepdims),
    "REDUCE_ALL": lambda x, axis, keepdims: tf.reduce_all(x, axis=axis, keepdims=keepdims),
}

for _name, _fn in _REDUCERS.items():
    register(_name)(_make_reducer(_fn, _name))


def _scalar_axis(ctx: OpContext) -> Any:
    """ARG_MAX/ARG_MIN/CUMSUM take one axis (a scalar or a 1-element tensor)."""
    if ctx.is_const(1):
        vals = ctx.const(1).reshape(-1)
        if vals.size != 1:
            raise ctx.unsupported(f"axis has {vals.size} elements, expected 1")
        return int(vals[0])
    return tf.reshape(ctx.input(1), [])


def _arg_check(op: Operator, sg: Subgraph) -> list[str]:
    """The output tensor's type is authoritative: the kernel writes it, and ``output_type`` reads as
    FLOAT32 (the schema default) when a writer omits the field."""
    out = sg.tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
    if out is not None and out.type_name not in ("INT32", "INT64"):
        return [f"output type {out.type_name} (TFLite and TensorFlow give INT32 or INT64)"]
    return []


def _arg(ctx: OpContext, fn: Callable[..., Any]) -> list[Any]:
    """TFLite, like TensorFlow, returns the first index on ties."""
    return [fn(ctx.input(0), axis=_scalar_axis(ctx), output_type=ctx.out_dtype(0))]


@register("ARG_MAX", check=_arg_check)
def arg_max(ctx: OpContext) -> list[Any]:
    return _arg(ctx, tf.math.argmax)


@register("ARG_MIN", check=_arg_check)
def arg_min(ctx: OpContext) -> list[Any]:
    return _arg(ctx, tf.math.argmin)


@register("CUMSUM")
def cumsum(ctx: OpContext) -> list[Any]:
    o = ctx.options
    return [tf.cumsum(ctx.input(0), axis=_scalar_axis(ctx), exclusive=bool(o.get("exclusive", False)),
                      reverse=bool(o.get("reverse", False)))]
