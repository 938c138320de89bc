"""Normalizations and activations with parameters: SOFTMAX, LOG_SOFTMAX, L2_NORMALIZATION,
LOCAL_RESPONSE_NORMALIZATION.

All normalize over the last axis, as TFLite's kernels do. The 8-bit SOFTMAX kernel does not compute
a float softmax: it looks ``exp`` up in a 256-entry float table indexed by ``max - q`` and rounds the
rescaled probabilities in a kernel-specific way; faithful mode reproduces that table and rounding
(the float softmax plus fake quantization is off by one LSB now and then, and those flips are what the
verifier sees on a classifier's output). The same float table serves int8/uint8 input with int16
output.

The int16 -> int16 SOFTMAX kernel (``reference_ops::SoftmaxInt16``; the builtin, reference and
default interpreters all run it, XNNPACK has no int16 softmax) is integer arithmetic throughout,
reproduced exactly by :func:`_softmax_int16`: ``d = q - max`` is rescaled by
``MultiplyByQuantizedMultiplier(d, QuantizeMultiplier(input_scale * beta / (10 / 65535)))`` so that
[-65535, 0] spans [-10, 0] (double rounding, as ai_edge_litert is built: a rounding doubling high
multiply, then a rounding right shift; measured, single rounding is off by one LSB on small scales),
recentred by +32767 and looked up in a 513-entry interpolated ``exp`` table
(``LUTPopulate<int16_t>`` in double precision over [-10, 0]); the int32 row sum is normalized by its
leading zeros and looked up in a ``1 / (1 + x)`` table over [0, 1]; each probability is
``(exp * reciprocal + round) >> (31 - clz(sum))`` clipped to [0, 32767]. Float softmax plus rounding
is up to ~10 LSB off on a confident classifier (a 16x8 keyword spotter's output).

8-bit L2_NORMALIZATION (builtin kernels only; XNNPACK does not take it) is reproduced in integers
too (:func:`_exact_l2`: gemmlowp's fixed-point inverse square root of the row's sum of squares); the
float form rounded onto the grid was 1 LSB off now and then.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph
from . import integer_kernels
from .common import check_activation, integer_range, round_half_away
from .context import OpContext
from .fixedpoint import I32_MAX, I32_MIN, mbqm, rounding_divide_by_pot_t, srdhm
from .registry import register


def _softmax_table(in_scale: float, beta: float) -> np.ndarray:
    """TFLite's ``PopulateSoftmaxLookupTable``: ``table[d] = expf(-(in_scale * beta) * d)``."""
    with np.errstate(over="ignore"):  # an absurd scale gives -inf arguments (exp -> 0), as in float32 C
        scale = -(np.float32(in_scale) * np.float32(beta))
        args = scale * np.arange(256, dtype=np.float32)
    return np.array([math.exp(float(a)) for a in args], dtype=np.float64).astype(np.float32)


def _exact_softmax(ctx: OpContext, x: Any, beta: float, y_float: Any) -> Any | None:
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and integer_kernels.is_q8(in_t, True) and out_t.is_quantized
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
    inv = integer_kernels.reciprocal(tf.reduce_sum(e, -1, keepdims=True) * s_out)
    p = e * inv
    # x86 builds round uint8 probabilities as (int)(p + 0.5f); the others use std::round.
    r = tf.floor(p + 0.5) if out_t.type_name == "UINT8" else round_half_away(p)
    lo, hi = integer_range(out_t.type_name)
    r = tf.clip_by_value(r + zp_out, lo, hi) - zp_out
    # The float softmax only carries the gradient; it is NaN where x overflowed (inf - inf).
    y_float = tf.where(tf.math.is_nan(y_float), tf.zeros_like(y_float), y_float)
    return integer_kernels.ste(y_float, r * s_out)


def _round_away(v: float) -> float:
    """``std::round`` of a double, exactly (no ``floor(x + 0.5)`` error just below a half)."""
    a = abs(v)
    f = math.floor(a)
    return math.copysign(f + 1.0 if a - f >= 0.5 else f, v)


def _lut16(input_min: float, input_max: float, fn: Any) -> np.ndarray:
    """TFLite's ``LUTPopulate<int16_t>`` in double precision with an output range of [-1, 1]
    (scale 2/65535, zero point 0): 512 samples of ``fn`` over [input_min, input_max], each lowered by
    half the interpolation error at its interval's midpoint, plus the end point (513 entries)."""
    step = (input_max - input_min) / 512
    half = step / 2
    inv = 65536.0 / ((2.0 / 65535) * 32767 - (2.0 / 65535) * -32768)
    table = []
    for i in range(512):
        val, mid, nxt = fn(input_min + i * step), fn(input_min + i * step + half), fn(input_min + (i + 1) * step)
        sample = _round_away(val * inv)
        interp = _round_away((nxt * inv + _round_away(val * inv)) / 2)
        bias = _round_away((interp - _round_away(mid * inv)) / 2)
        table.append(min(max(sample - bias, -32768.0), 32767.0))
    table.append(min(max(_round_away(fn(input_max) * inv), -32768.0), 32767.0))
    return np.array(table, np.int64)


def _lut16_lookup(v: Any, table: np.ndarray) -> Any:
    """``LUTLookup(int16 v, table)``: entry ``256 + (v >> 7)`` plus the slope to the next entry times
    the low 7 bits, rounded ``(slope * offset + 64) >> 7`` (int64 tensors in and out)."""
    t = tf.constant(table)
    index = tf.math.floordiv(v, 128) + 256
    offset = v - (index - 256) * 128
    base = tf.gather(t, index)
    slope = tf.gather(t, index + 1) - base
    return base + tf.math.floordiv(slope * offset + 64, 128)


_R16 = 65535.0  # int16 max - min, the tables' input spacing


def _softmax_int16(ctx: OpContext, x: Any, beta: float, y_float: Any) -> Any | None:
    """The int16 -> int16 kernel exactly (module doc), or ``None`` when the op is not one."""
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and integer_kernels.is_q16(in_t) and integer_kernels.is_q16(out_t)
            and int(in_t.quantization.zero_point[0]) == 0 and int(out_t.quantization.zero_point[0]) == 0):
        return None
    s_in, s_out = float(in_t.quantization.scale[0]), float(out_t.quantization.scale[0])
    exp_lut = _lut16(10.0 / _R16 * (-32768 - 32767), 0.0, math.exp)
    recip_lut = _lut16(0.0, 1.0 / _R16 * (32767 + 32768), lambda v: 1.0 / (1.0 + v))
    q = tf.cast(tf.clip_by_value(tf.round(x / s_in), -32768.0, 32767.0), tf.int64)
    d = q - tf.reduce_max(q, -1, keepdims=True)
    # float input scale times float beta (a float product), then divided in double
    scaled = mbqm(d, float(np.float32(s_in) * np.float32(beta)) / (10.0 / 65535.0))
    e = _lut16_lookup(tf.clip_by_value(scaled + 32767, -32768, 32767), exp_lut)
    total = tf.reduce_sum(e, -1, keepdims=True)
    bits = tf.reduce_sum(tf.cast(total >= tf.constant(2 ** np.arange(32, dtype=np.int64)), tf.int64), -1,
                         keepdims=True)
    clz = 32 - bits  # headroom_plus_one: leading zeros of the uint32 sum
    shifted = tf.math.floordiv(total * tf.bitwise.left_shift(tf.ones_like(clz), clz - 1) + (1 << 13), 1 << 14)
    recip = _lut16_lookup(tf.clip_by_value(shifted - (1 << 15) - (1 << 16), -32768, 32767), recip_lut)
    right = 31 - clz
    one = tf.ones_like(right)
    r = tf.math.floordiv(e * recip + tf.bitwise.left_shift(one, right - 1), tf.bitwise.left_shift(one, right))
    r = tf.cast(tf.clip_by_value(r, 0, 32767), tf.float32)
    y_float = tf.where(tf.math.is_nan(y_float), tf.zeros_like(y_float), y_float)
    return integer_kernels.ste(y_float, r * s_out)


@register("SOFTMAX")
def softmax(ctx: OpContext) -> list[Any]:
    """``softmax(beta * x)`` over the last axis."""
    x = ctx.input(0)
    beta = float(ctx.options.get("beta", 1.0))
    y = tf.nn.softmax(x * beta if beta != 1.0 else x)
    exact = _exact_softmax(ctx, x, beta, y)
    if exact is None:
        exact = _softmax_int16(ctx, x, beta, y)
    return [exact if exact is not None else y]


@register("LOG_SOFTMAX")
def log_softmax(ctx: OpContext) -> list[Any]:
    """Over the last axis (LogSoftmaxOptions has no fields)."""
    return [tf.nn.log_softmax(ctx.input(0))]


def _l2_check(op: Operator, sg: Subgraph) -> list[str]:
    act = op.options.get("fused_activation_function", "NONE")
    if act == "NONE":
        return []
    return check_activation(op.options) or [
        f"fused activation {act} on L2_NORMALIZATION (the schema says the field is ignored, TFLite's kernel "
        "refuses the model; its meaning is undefined)"]




def _sat_shift_left(x: Any, e: int) -> Any:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<e>`` for e > 0 (a saturating left shift)."""
    return tf.clip_by_value(x * (2 ** e), I32_MIN, I32_MAX)


def _inv_sqrt_multiplier(acc: Any) -> tuple[Any, Any]:
    """TFLite's ``GetInvSqrtQuantizedMultiplierExp(acc, -1)`` per element of the int64 tensor ``acc``
    (0 <= acc < 2**31): a Q0.31 multiplier and a left shift, from gemmlowp's fixed-point
    Newton-Raphson ``1 / sqrt`` (5 iterations in Q3.28)."""
    small = acc <= 1
    x = tf.where(small, tf.constant(4, tf.int64), acc)
    shift = tf.fill(tf.shape(x), tf.constant(11, tf.int64))
    for _ in range(2):  # input >= 2**29 is divided by 4 (at most twice for int32 inputs)
        big = x >= 2 ** 29
        x, shift = tf.where(big, x // 4, x), tf.where(big, shift + 1, shift)
    bits = tf.reduce_sum(tf.cast(x[..., None] >= tf.constant([2 ** j for j in range(32)], tf.int64), tf.int64), -1)
    pairs = (32 - bits - 1) // 2 - 1  # (CountLeadingZeros(x) - 1) / 2 - 1
    shift = shift - pairs
    x = tf.bitwise.left_shift(x, 2 * pairs)
    half_input = rounding_divide_by_pot_t(tf.bitwise.right_shift(x, 1), tf.ones_like(x))
    half_three = (1 << 28) + (1 << 27)
    y = tf.fill(tf.shape(x), tf.constant(1 << 28, tf.int64))
    for _ in range(5):
        y3 = _sat_shift_left(srdhm(srdhm(y, y), y), 6)  # Rescale<3>(x * x * x): Q9 -> Q3
        y = _sat_shift_left(srdhm(tf.fill(tf.shape(y), tf.constant(half_three, tf.int64)), y)
                            - srdhm(half_input, y3), 3)  # Q6 -> Q3
    y = srdhm(y, tf.constant(1518500250, tf.int64))  # times sqrt(2) / 2
    neg = shift < 0
    y = tf.where(neg, tf.bitwise.left_shift(y, tf.where(neg, -shift, tf.zeros_like(shift))), y)
    shift = tf.where(neg, tf.zeros_like(shift), shift)
    return tf.where(small, tf.constant(I32_MAX, tf.int64), y), tf.where(small, tf.zeros_like(shift), -shift)


def _exact_l2(ctx: OpContext, x: Any, y_float: Any) -> Any | None:
    """TFLite's 8-bit L2_NORMALIZATION (builtin kernels; XNNPACK does not take it): the int32 sum of
    squared ``q - zero_point`` per row, its fixed-point inverse square root, then int8:
    ``MultiplyByQuantizedMultiplier(diff, m, shift + 7)`` (double rounding) clamped to [-128, 127];
    uint8: ``128 + MultiplyByQuantizedMultiplierSmallerThanOneExp(128 * diff, m, shift)`` clamped to
    [0, 255]. The output scale is 1/128 (zero point 0 / 128), as the kernel requires."""
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and integer_kernels.is_q8(in_t, True) and integer_kernels.is_q8(out_t, True)
            and in_t.type_name == out_t.type_name):
        return None
    s_in = float(in_t.quantization.scale[0])
    diff = tf.cast(tf.round(x / s_in), tf.int64)  # q - zero_point
    acc = tf.reduce_sum(diff * diff, -1, keepdims=True)
    mult, shift = _inv_sqrt_multiplier(acc)
    if in_t.type_name == "INT8":
        total = shift + 7
        left, right = tf.maximum(total, 0), tf.maximum(-total, 0)
        q = rounding_divide_by_pot_t(srdhm(tf.bitwise.left_shift(diff, left), mult), right)
        q = tf.clip_by_value(q, -128, 127)
    else:
        q = 128 + rounding_divide_by_pot_t(srdhm(128 * diff, mult), tf.maximum(-shift, 0))
        q = tf.clip_by_value(q, 0, 255)
    s_out, zp_out = float(out_t.quantization.scale[0]), float(out_t.quantization.zero_point[0])
    return integer_kernels.ste(y_float, (tf.cast(q, tf.float32) - zp_out) * s_out)


@register("L2_NORMALIZATION", check=_l2_check)
def l2_normalization(ctx: OpContext) -> list[Any]:
    """``x / max(||x||, 1e-6)`` over the last axis; TFLite's epsilon bounds the norm at 1e-6, which is
    TensorFlow's ``l2_normalize`` bound of 1e-12 on the squared norm (the form the converter fuses
    into L2_NORMALIZATION). 8-bit models: the kernel's fixed-point arithmetic (:func:`_exact_l2`)."""
    x = ctx.input(0)
    y = tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)
    exact = _exact_l2(ctx, x, y)
    return [exact if exact is not None else y]


def _lrn_check(op: Operator, sg: Subgraph) -> list[str]:
    r = op.options.get("radius", 5)
    return [] if isinstance(r, int) and r >= 0 else [f"radius {r!r} is negative"]


@register("LOCAL_RESPONSE_NORMALIZATION", check=_lrn_check)
def local_response_normalization(ctx: OpContext) -> list[Any]:
    """``x_c / (bias + alpha * sum_{|k-c|<=radius} x_k^2) ** beta`` over the last axis; TF's op has
    the same definition (alpha is not divided by the window size). Absent fields take the schema's
    defaults (all 0), not TensorFlow's."""
    o = ctx.options
    return [tf.nn.local_response_normalization(
        ctx.input(0), depth_radius=int(o.get("radius", 0)), bias=float(o.get("bias", 0.0)),
        alpha=float(o.get("alpha", 0.0)), beta=float(o.get("beta", 0.0)))]
