"""Shape and layout ops."""

from __future__ import annotations

from typing import Any

from .._tf import tf
from .registry import register


@register("RESHAPE")
def reshape(ctx: Any) -> list[Any]:
    x = ctx.input(0)
    if ctx.has_input(1):
        shape = ctx.const(1)
        shape = ctx.input(1) if shape is None else [int(d) for d in shape.reshape(-1)]
    elif ctx.options.get("new_shape"):
        shape = list(ctx.options["new_shape"])
    else:
        shape = [d if d >= 0 else -1 for d in ctx.out_tensor(0).shape_signature]
    return [tf.reshape(x, shape)]
