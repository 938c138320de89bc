"""QUANTIZE / DEQUANTIZE.

The rebuilt graph carries quantized tensors as real values, and the builder rounds every quantized
output onto its integer grid (fake quantization). So QUANTIZE (float->int, or int->int requantize)
and DEQUANTIZE (int->float) are identities here; the rounding happens at the output tensor.
DEQUANTIZE of a float16 or int8 constant becomes a float32 weight variable.

Faithful mode reproduces QUANTIZE's integer requantization (an int8/uint8/int16 input with another
scale or zero point) as the default interpreter computes it (measured; rounding the real value
instead is 1 LSB off on some codes):

* int8 -> int8 and uint8 -> uint8 with ``s_in / s_out`` (float32) in [2**-8, 2**7]: XNNPACK's convert
  takes it: ``zp_out + (((q - zp_in) * M + 128) >> 8)`` with ``M = rint(256 * s_in / s_out)``;
* otherwise the builtin ``quantize.cc`` Requantize: ``zp_out + MultiplyByQuantizedMultiplier(q -
  zp_in, QuantizeMultiplier(double(s_in) / double(s_out)))`` with this interpreter's double rounding;

both clamped to the output type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tf import tf
from . import integer_kernels
from .common import integer_range
from .context import OpContext
from .fixedpoint import mbqm
from .registry import register

_INTEGER = ("INT8", "UINT8", "INT16")


@register("QUANTIZE")
def quantize(ctx: OpContext) -> list[Any]:
    x = ctx.input(0)
    src, dst = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and src is not None and src.is_quantized and dst.is_quantized
            and src.type_name in _INTEGER and dst.type_name in _INTEGER
            and src.quantization.scale.size == 1 and dst.quantization.scale.size == 1):
        return [tf.identity(x)]
    s_in, s_out = float(src.quantization.scale[0]), float(dst.quantization.scale[0])
    zp_out = int(dst.quantization.zero_point[0])
    if s_in <= 0 or s_out <= 0:
        return [tf.identity(x)]
    q = tf.cast(integer_kernels.to_int(x, s_in), tf.int64)  # the stored code minus its zero point
    lo, hi = integer_range(dst.type_name)
    ratio = float(np.float32(s_in) / np.float32(s_out))
    if src.type_name != "INT16" and dst.type_name == src.type_name and 2.0 ** -8 <= ratio <= 2.0 ** 7:
        # XNNPACK's qs8/qu8 convert: a multiplier rounded to 1/256, ((q - zp_in) * M + 128) >> 8
        m = int(np.rint(256.0 * ratio))
        code = tf.bitwise.right_shift(q * m + 128, 8) + zp_out
    else:
        code = mbqm(q, float(np.float64(s_in) / np.float64(s_out))) + zp_out
    y = tf.clip_by_value(tf.cast(code, tf.float32), float(lo), float(hi))
    return [integer_kernels.ste(x, (y - zp_out) * s_out)]


@register("DEQUANTIZE")
def dequantize(ctx: OpContext) -> list[Any]:
    if ctx.is_const(0):
        return [ctx.weight(0)]
    x = ctx.input(0)
    return [tf.cast(x, tf.float32) if x.dtype != tf.float32 else tf.identity(x)]
