"""2-D pooling. TFLite's SAME average pooling divides by the number of valid (unpadded) elements,
as TensorFlow's does, so both map directly."""

from __future__ import annotations

from typing import Any

from .._tf import tf
from .common import check_activation, tf_padding
from .registry import register


def _pool(ctx: Any, fn: Any) -> list[Any]:
    o = ctx.options
    y = fn(ctx.input(0), ksize=[o["filter_height"], o["filter_width"]],
           strides=[o.get("stride_h", 1), o.get("stride_w", 1)], padding=tf_padding(o.get("padding", "SAME"), ctx.where))
    return [ctx.activation(y)]


@register("AVERAGE_POOL_2D", check=lambda op, sg: check_activation(op.options))
def average_pool_2d(ctx: Any) -> list[Any]:
    return _pool(ctx, tf.nn.avg_pool2d)


@register("MAX_POOL_2D", check=lambda op, sg: check_activation(op.options))
def max_pool_2d(ctx: Any) -> list[Any]:
    return _pool(ctx, tf.nn.max_pool2d)
