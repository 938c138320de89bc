"""Normalizations and activations with parameters: SOFTMAX, LOG_SOFTMAX, L2_NORMALIZATION,
LOCAL_RESPONSE_NORMALIZATION.

All normalize over the last axis, as TFLite's kernels do. The 8-bit SOFTMAX kernel does not compute
a float softmax: it looks ``exp`` up in a 256-entry float table indexed by ``max - q`` and rounds the
rescaled probabilities in a kernel-specific way; faithful mode reproduces that table and rounding
(the float softmax plus fake quantization is off by one LSB now and then, and those flips are what the
verifier sees on a classifier's output).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._tf import tf
from ..ir import Operator, Subgraph
from . import hybrid
from .common import check_activation, integer_range, round_half_away
from .registry import register


def _softmax_table(in_scale: float, beta: float) -> np.ndarray:
    """TFLite's ``PopulateSoftmaxLookupTable``: ``table[d] = expf(-(in_scale * beta) * d)``."""
    with np.errstate(over="ignore"):  # an absurd scale gives -inf arguments (exp -> 0), as in float32 C
        scale = -(np.float32(in_scale) * np.float32(beta))
        args = scale * np.arange(256, dtype=np.float32)
    return np.array([math.exp(float(a)) for a in args], dtype=np.float64).astype(np.float32)


def _exact_softmax(ctx: Any, x: Any, beta: float, y_float: Any) -> Any | None:
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and hybrid.is_q8(in_t, True) and out_t.is_quantized
            and out_t.type_name in ("INT8", "UINT8", "INT16") and out_t.quantization.scale.size == 1):
        return None
    s_in = float(in_t.quantization.scale[0])
    s_out, zp_out = float(out_t.quantization.scale[0]), float(out_t.quantization.zero_point[0])
    # The kernel's d = max - q of stored 8-bit values lies in [0, 255]. Clipping q to the stored range
    # keeps it there when real values overflow float32 (an absurd scale: +-inf, and NaN after fake
    # quantization), which would otherwise index outside the table.
    lo_in, hi_in = integer_range(in_t.type_name)
    q = tf.clip_by_value(tf.round(x / s_in) + float(in_t.quantization.zero_point[0]), lo_in, hi_in)
    d = tf.clip_by_value(tf.cast(tf.reduce_max(q, -1, keepdims=True) - q, tf.int32), 0, 255)
    e = tf.gather(tf.constant(_softmax_table(s_in, beta)), d)
    inv = hybrid.reciprocal(tf.reduce_sum(e, -1, keepdims=True) * s_out)
    p = e * inv
    # x86 builds round uint8 probabilities as (int)(p + 0.5f); the others use std::round.
    r = tf.floor(p + 0.5) if out_t.type_name == "UINT8" else round_half_away(p)
    lo, hi = integer_range(out_t.type_name)
    r = tf.clip_by_value(r + zp_out, lo, hi) - zp_out
    # The float softmax only carries the gradient; it is NaN where x overflowed (inf - inf).
    y_float = tf.where(tf.math.is_nan(y_float), tf.zeros_like(y_float), y_float)
    return hybrid.ste(y_float, r * s_out)


@register("SOFTMAX")
def softmax(ctx: Any) -> list[Any]:
    """``softmax(beta * x)`` over the last axis."""
    x = ctx.input(0)
    beta = float(ctx.options.get("beta", 1.0))
    y = tf.nn.softmax(x * beta if beta != 1.0 else x)
    exact = _exact_softmax(ctx, x, beta, y)
    return [exact if exact is not None else y]


@register("LOG_SOFTMAX")
def log_softmax(ctx: Any) -> list[Any]:
    """Over the last axis (LogSoftmaxOptions has no fields)."""
    return [tf.nn.log_softmax(ctx.input(0))]


def _l2_check(op: Operator, sg: Subgraph) -> list[str]:
    act = op.options.get("fused_activation_function", "NONE")
    if act == "NONE":
        return []
    return check_activation(op.options) or [
        f"fused activation {act} on L2_NORMALIZATION (the schema says the field is ignored, TFLite's kernel "
        "refuses the model; its meaning is undefined)"]


@register("L2_NORMALIZATION", check=_l2_check)
def l2_normalization(ctx: Any) -> list[Any]:
    """``x / max(||x||, 1e-6)`` over the last axis; TFLite's epsilon bounds the norm at 1e-6, which is
    TensorFlow's ``l2_normalize`` bound of 1e-12 on the squared norm (the form the converter fuses
    into L2_NORMALIZATION)."""
    return [tf.math.l2_normalize(ctx.input(0), axis=-1, epsilon=1e-12)]


def _lrn_check(op: Operator, sg: Subgraph) -> list[str]:
    r = op.options.get("radius", 5)
    return [] if isinstance(r, int) and r >= 0 else [f"radius {r!r} is negative"]


@register("LOCAL_RESPONSE_NORMALIZATION", check=_lrn_check)
def local_response_normalization(ctx: Any) -> list[Any]:
    """``x_c / (bias + alpha * sum_{|k-c|<=radius} x_k^2) ** beta`` over the last axis; TF's op has
    the same definition (alpha is not divided by the window size). Absent fields take the schema's
    defaults (all 0), not TensorFlow's."""
    o = ctx.options
    return [tf.nn.local_response_normalization(
        ctx.input(0), depth_radius=int(o.get("radius", 0)), bias=float(o.get("bias", 0.0)),
        alpha=float(o.get("alpha", 0.0)), beta=float(o.get("beta", 0.0)))]
