"""Normalizations and activations with parameters."""

from __future__ import annotations

from typing import Any

from .._tf import tf
from .registry import register


@register("SOFTMAX")
def softmax(ctx: Any) -> list[Any]:
    x = ctx.input(0)
    beta = float(ctx.options.get("beta", 1.0))
    if beta != 1.0:
        x = x * beta
    return [tf.nn.softmax(x)]
