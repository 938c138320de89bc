"""2-D pooling.

TFLite's SAME average pooling divides by the number of valid (unpadded) elements, as TensorFlow's
does, so float pooling maps directly. L2_POOL_2D (float-only in TFLite) is ``sqrt(mean(x^2))`` over the
same valid elements, which TensorFlow has no single op for.

The quantized AVERAGE_POOL_2D kernel sums the raw integers of a window and divides with rounding half
away from zero *in the raw integer domain* (``(sum + n/2) / n``), not in ``q - zero_point`` units;
faithful mode reproduces that exactly (the fake-quant rounding alone is off by one LSB on ties).

Quantized MAX_POOL_2D moves raw integers (see :func:`max_pool_2d`). The integer pooling kernels ignore the scales: the raw average (int8, uint8, int16) or maximum
(int16) is the output's raw integer even when the output's scale or zero point differ from the
input's (measured; the float pool plus rounding was 50 LSB off for 8-bit, thousands for int16).
The default interpreter's XNNPACK computes the same there (it equals the builtin kernels); it
refuses an 8-bit MAX_POOL_2D with differing parameters (the interpreter fails to prepare).
"""

from __future__ import annotations

from typing import Any

from .._tf import tf
from ..model.ir import Operator, Subgraph
from . import integer_kernels
from .common import check_activation, check_padding, raw_codes, tf_padding
from .context import OpContext
from .registry import register


def _pool_check(op: Operator, sg: Subgraph) -> list[str]:
    return check_activation(op.options) + check_padding(op.options)


def _args(ctx: OpContext) -> dict[str, Any]:
    o = ctx.options
    return {"ksize": [o.get("filter_height", 1), o.get("filter_width", 1)],
            "strides": [o.get("stride_h", 1), o.get("stride_w", 1)],
            "padding": tf_padding(o.get("padding", "SAME"), ctx.where)}


def _exact_average(ctx: OpContext, x: Any, y_float: Any) -> Any | None:
    """TFLite's integer average pool (the raw average, whatever the output's parameters), or ``None``
    for a float pool."""
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    act = ctx.options.get("fused_activation_function", "NONE")
    if not (ctx.builder.options.fake_quant and act in integer_kernels.CLAMP_ACTIVATIONS):
        return None
    if not (in_t.is_quantized and out_t.is_quantized and in_t.type_name == out_t.type_name
            and in_t.type_name in ("INT8", "UINT8", "INT16")):
        return None
    qi, qo = in_t.quantization, out_t.quantization
    if qi.scale.size != 1 or qo.scale.size != 1:
        return None
    scale, zp = float(qi.scale[0]), float(qi.zero_point[0])
    out_scale, out_zp = float(qo.scale[0]), float(qo.zero_point[0])
    a = _args(ctx)
    fh, fw = a["ksize"]
    strides = [1, a["strides"][0], a["strides"][1], 1]
    raw = tf.round(x / scale) + zp  # the stored integers
    ones = tf.ones([fh, fw, 1, 1], tf.float32)
    count = tf.nn.conv2d(tf.ones_like(raw[..., :1]), ones, strides, a["padding"])
    # Window sums as float64 mean x count (exact after rounding: |sum| < 2**31, error < 2**-20).
    # Not a depthwise convolution of ones: without oneDNN, TF's depthwise kernel refuses unequal
    # strides (a keyword spotter's 13x5 global pool).
    total = tf.nn.avg_pool2d(tf.cast(raw, tf.float64), a["ksize"], a["strides"], a["padding"]) * tf.cast(
        count, tf.float64)
    # Integer division: TF's float division on CPU may use an approximate reciprocal (96/4 -> 23.999998).
    total, count = tf.cast(tf.round(total), tf.int32), tf.cast(tf.round(count), tf.int32)
    q = tf.sign(total) * ((tf.abs(total) + count // 2) // count)
    q = tf.cast(q, tf.float32)
    lo, hi = integer_kernels.clamp_range(out_t, act)
    q = tf.clip_by_value(q - out_zp, lo, hi)
    return integer_kernels.ste(y_float, q * out_scale)


@register("AVERAGE_POOL_2D", check=_pool_check)
def average_pool_2d(ctx: OpContext) -> list[Any]:
    x = ctx.input(0)
    y = tf.nn.avg_pool2d(x, **_args(ctx))
    exact = _exact_average(ctx, x, y)
    return [exact if exact is not None else ctx.activation(y)]


@register("MAX_POOL_2D", check=_pool_check)
def max_pool_2d(ctx: OpContext) -> list[Any]:
    """Exact in every type: the maximum of grid values is a grid value. The kernels take the maximum
    of the raw integers and clamp it to the activation range on the output's grid, without
    requantizing: other output parameters (the int16 kernel accepts them; XNNPACK, the default
    interpreter's 8-bit kernel, refuses them) read the same codes differently (:func:`.common.raw_codes`)."""
    x = raw_codes(ctx.input(0), ctx.in_tensor(0), ctx.out_tensor(0))
    return [ctx.activation(tf.nn.max_pool2d(x, **_args(ctx)))]


@register("L2_POOL_2D", check=_pool_check)
def l2_pool_2d(ctx: OpContext) -> list[Any]:
    """``sqrt(sum(x^2) / n)`` over the valid elements of each window (TFLite's reference kernel)."""
    x = ctx.input(0)
    return [ctx.activation(tf.sqrt(tf.nn.avg_pool2d(tf.square(x), **_args(ctx))))]
