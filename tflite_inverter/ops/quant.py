"""QUANTIZE / DEQUANTIZE.

The rebuilt graph carries quantized tensors as real values, and the builder rounds every quantized
output onto its integer grid (fake quantization). So QUANTIZE (float->int, or int->int requantize)
and DEQUANTIZE (int->float) are identities here; the rounding happens at the output tensor.
DEQUANTIZE of a float16 or int8 constant becomes a float32 weight variable.
"""

from __future__ import annotations

from typing import Any

from .._tf import tf
from .context import OpContext
from .registry import register


@register("QUANTIZE")
def quantize(ctx: OpContext) -> list[Any]:
    return [tf.identity(ctx.input(0))]


@register("DEQUANTIZE")
def dequantize(ctx: OpContext) -> list[Any]:
    if ctx.is_const(0):
        return [ctx.weight(0)]
    x = ctx.input(0)
    return [tf.cast(x, tf.float32) if x.dtype != tf.float32 else tf.identity(x)]
