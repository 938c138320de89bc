"""Convolutions and fully-connected layers.

TFLite stores conv filters OHWI (``[out, kh, kw, in]``), depthwise filters ``[1, kh, kw, in*mult]``
and transpose-conv filters ``[out, kh, kw, in]``; TensorFlow wants HWIO, ``[kh, kw, in, mult]`` and
``[kh, kw, out, in]``. The transposes are done once in numpy when the weight variable is created, so
the rebuilt graph has no TRANSPOSE op.
"""

from __future__ import annotations

from typing import Any

from .._tf import tf
from ..ir import Operator, Subgraph
from .common import check_activation, tf_padding
from .registry import register


def _conv_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = check_activation(op.options)
    if op.options.get("padding", "SAME") not in ("SAME", "VALID"):
        problems.append(f"padding {op.options.get('padding')!r}")
    return problems


def _bias(ctx: Any, y: Any, index: int = 2) -> Any:
    if ctx.has_input(index):
        b = ctx.input(index)
        y = tf.nn.bias_add(y, tf.cast(b, y.dtype))
    return y


@register("CONV_2D", check=_conv_check)
def conv_2d(ctx: Any) -> list[Any]:
    o = ctx.options
    x = ctx.input(0)
    if ctx.is_const(1):
        w = ctx.weight(1, lambda a: a.transpose(1, 2, 3, 0), "hwio")
    else:
        w = tf.transpose(ctx.input(1), [1, 2, 3, 0])
    y = tf.nn.conv2d(x, tf.cast(w, x.dtype), strides=[1, o.get("stride_h", 1), o.get("stride_w", 1), 1],
                     padding=tf_padding(o.get("padding", "SAME"), ctx.where),
                     dilations=[1, o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1), 1])
    return [ctx.activation(_bias(ctx, y))]


def _dw_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = _conv_check(op, sg)
    o = op.options
    strided = o.get("stride_h", 1) > 1 or o.get("stride_w", 1) > 1
    dilated = o.get("dilation_h_factor", 1) > 1 or o.get("dilation_w_factor", 1) > 1
    if strided and dilated:
        problems.append("stride > 1 together with dilation > 1 (TensorFlow's depthwise conv allows only one)")
    return problems


@register("DEPTHWISE_CONV_2D", check=_dw_check)
def depthwise_conv_2d(ctx: Any) -> list[Any]:
    o = ctx.options
    x = ctx.input(0)
    in_t, f_t = ctx.in_tensor(0), ctx.in_tensor(1)
    in_ch = in_t.shape[-1] if in_t.shape and in_t.shape[-1] > 0 else None
    out_ch = f_t.shape[-1]
    if in_ch is None:
        in_ch = out_ch // max(int(o.get("depth_multiplier", 1)), 1)
    if out_ch % in_ch:
        raise ctx.unsupported(f"filter has {out_ch} channels, not a multiple of the input's {in_ch}")
    mult = out_ch // in_ch  # the filter shape is authoritative; some converters write depth_multiplier=0

    def to_tf(a: Any) -> Any:
        return a.reshape(a.shape[1], a.shape[2], in_ch, mult)

    if ctx.is_const(1):
        w = ctx.weight(1, to_tf, "dw")
    else:
        w = tf.reshape(ctx.input(1), [f_t.shape[1], f_t.shape[2], in_ch, mult])
    y = tf.nn.depthwise_conv2d(x, tf.cast(w, x.dtype), strides=[1, o.get("stride_h", 1), o.get("stride_w", 1), 1],
                               padding=tf_padding(o.get("padding", "SAME"), ctx.where),
                               dilations=[o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)])
    return [ctx.activation(_bias(ctx, y))]


def _fc_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = check_activation(op.options)
    fmt = op.options.get("weights_format", "DEFAULT")
    if fmt != "DEFAULT":
        problems.append(f"weights_format {fmt} (only DEFAULT is rebuilt)")
    return problems


@register("FULLY_CONNECTED", check=_fc_check)
def fully_connected(ctx: Any) -> list[Any]:
    x = ctx.input(0)
    w_t = ctx.in_tensor(1)
    units, depth = w_t.shape[0], w_t.shape[-1]
    if ctx.is_const(1):
        w = ctx.weight(1, lambda a: a.reshape(units, -1).T, "io")
    else:
        w = tf.transpose(ctx.input(1))
    in_rank = len(ctx.in_tensor(0).shape)
    keep = ctx.options.get("keep_num_dims", False)
    if in_rank == 2:
        y = tf.matmul(x, tf.cast(w, x.dtype))
    elif keep:
        y = tf.tensordot(x, tf.cast(w, x.dtype), axes=[[in_rank - 1], [0]])
    else:
        y = tf.matmul(tf.reshape(x, [-1, depth]), tf.cast(w, x.dtype))
    y = _bias(ctx, y)
    return [ctx.activation(y)]
