"""Reductions (MEAN, SUM, REDUCE_*), ARG_MAX / ARG_MIN and CUMSUM.

The axis is input 1. A constant axis becomes a static Python list (negative axes normalized against
the input rank, duplicates dropped: TFLite resolves the axis set like that, TensorFlow rejects
duplicates), so the converter sees the same constant it would write. A computed axis is passed through
as a tensor.

Quantized REDUCE_MAX / REDUCE_MIN select raw integers: the builtin kernels refuse an output whose
scale or zero point differs from the input's, the default interpreter's XNNPACK takes it and copies
the selected codes unchanged (measured), so the output reads them with its own parameters
(:func:`.common.raw_codes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._tf import tf
from ..ir import Operator, Subgraph
from .common import raw_codes
from .registry import register


def _rank(ctx: Any) -> int | None:
    t = ctx.in_tensor(0)
    if t.shape_signature or t.shape or t.has_rank:
        return len(t.shape_signature or t.shape)
    return None


def _axes(ctx: Any) -> Any:
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


def _make_reducer(fn: Callable[..., Any], raw: bool = False) -> Callable[[Any], list[Any]]:
    def rebuild(ctx: Any) -> list[Any]:
        keep = bool(ctx.options.get("keep_dims", False))
        x = ctx.input(0)
        if raw:
            x = raw_codes(x, ctx.in_tensor(0), ctx.out_tensor(0))
        return [fn(x, axis=_axes(ctx), keepdims=keep)]

    return rebuild


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
    register(_name)(_make_reducer(_fn, raw=_name in ("REDUCE_MAX", "REDUCE_MIN")))


def _scalar_axis(ctx: Any) -> Any:
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


def _arg(ctx: Any, fn: Callable[..., Any]) -> list[Any]:
    """TFLite, like TensorFlow, returns the first index on ties."""
    return [fn(ctx.input(0), axis=_scalar_axis(ctx), output_type=ctx.out_dtype(0))]


@register("ARG_MAX", check=_arg_check)
def arg_max(ctx: Any) -> list[Any]:
    return _arg(ctx, tf.math.argmax)


@register("ARG_MIN", check=_arg_check)
def arg_min(ctx: Any) -> list[Any]:
    return _arg(ctx, tf.math.argmin)


@register("CUMSUM")
def cumsum(ctx: Any) -> list[Any]:
    o = ctx.options
    return [tf.cumsum(ctx.input(0), axis=_scalar_axis(ctx), exclusive=bool(o.get("exclusive", False)),
                      reverse=bool(o.get("reverse", False)))]
