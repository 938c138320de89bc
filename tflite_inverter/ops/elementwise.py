"""Element-wise binary and unary ops (broadcasting follows numpy rules in both TFLite and TF)."""

from __future__ import annotations

from typing import Any

from .._tf import tf
from .common import check_activation
from .registry import register


def _binary(ctx: Any, fn: Any) -> list[Any]:
    return [ctx.activation(fn(ctx.input(0), ctx.input(1)))]


def _act_check(op: Any, sg: Any) -> list[str]:
    return check_activation(op.options)


@register("ADD", check=_act_check)
def add(ctx: Any) -> list[Any]:
    return _binary(ctx, tf.add)


@register("SUB", check=_act_check)
def sub(ctx: Any) -> list[Any]:
    return _binary(ctx, tf.subtract)


@register("MUL", check=_act_check)
def mul(ctx: Any) -> list[Any]:
    return _binary(ctx, tf.multiply)


@register("DIV", check=_act_check)
def div(ctx: Any) -> list[Any]:
    x, y = ctx.input(0), ctx.input(1)
    fn = tf.math.truediv if x.dtype.is_floating else tf.math.floordiv
    return [ctx.activation(fn(x, y))]


@register("RELU")
def relu(ctx: Any) -> list[Any]:
    return [tf.nn.relu(ctx.input(0))]


@register("RELU6")
def relu6(ctx: Any) -> list[Any]:
    return [tf.nn.relu6(ctx.input(0))]


@register("LOGISTIC")
def logistic(ctx: Any) -> list[Any]:
    return [tf.sigmoid(ctx.input(0))]


@register("TANH")
def tanh(ctx: Any) -> list[Any]:
    return [tf.tanh(ctx.input(0))]
