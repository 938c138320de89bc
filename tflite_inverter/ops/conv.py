"""Convolutions, fully-connected layers and batched matmul.

TFLite stores conv filters OHWI (``[out, kh, kw, in]``), depthwise filters ``[1, kh, kw, in*mult]``,
transpose-conv filters ``[out, kh, kw, in]`` and 3-D filters ``[kd, kh, kw, in, out]``; TensorFlow
wants HWIO, ``[kh, kw, in, mult]``, ``[kh, kw, out, in]`` and DHWIO. The transposes are done once in
numpy when the weight variable is created, so the rebuilt graph has no TRANSPOSE op.

Every linear op goes through :func:`_linear`, which picks one of three computations:

* float (float models, and every model with ``--no-fake-quant``): the TF op on real values, bias,
  fused activation - the form the TFLite converter fuses back into the same single op;
* integer (faithful mode, 8-bit or 16x8 quantized input/weights/output): the exact integer
  accumulator and the kernel's requantization, so outputs are the interpreter's integers (8-bit
  weights computed at run time are not delegated: the builtin kernel's fixed point);
* hybrid (faithful mode, float input with constant int8 weights): the kernel's on-the-fly input
  quantization, exact integer accumulation and rescale.

The arithmetic is in :mod:`.integer_kernels`. It follows the default CPU interpreter, which hands 8-bit and
hybrid conv/fully-connected/transpose-conv/matmul kernels to XNNPACK; where TFLite's builtin kernels
compute differently (fixed-point requantization, symmetric hybrid inputs, double-precision input
scales), XNNPACK's answer is reproduced. Its hybrid (qd8) kernels quantize the input per image (per
pixel for a 1x1 stride-1 conv, per row for fully-connected/matmul) with XNNPACK's float32 parameters
(:func:`integer_kernels.quantize_rows_xnnpack`), sum exactly and scale as ``fma(float(acc) * input_scale,
weight_scale, bias)`` (:func:`_qd8_rescale`): bit-exact against the default interpreter. Hybrid
depthwise runs TFLite's builtin kernel (within float32 ulps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph, Tensor
from . import integer_kernels
from .common import check_activation, check_padding, constant_pad, same_padding_amounts, tf_padding
from .context import OpContext
from .registry import register

Lin = Callable[[Any, Any], Any]
WIDE_BMM = True


# -- checks -----------------------------------------------------------------------------------------
def _conv_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = check_activation(op.options) + check_padding(op.options)
    rank = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 4, "TRANSPOSE_CONV": 4, "CONV_3D": 5, "CONV_3D_TRANSPOSE": 5}
    w = sg.input_of(op, 1)
    if op.name in rank and (w is None or len(w.shape) != rank[op.name]):
        problems.append(f"filter of shape {None if w is None else list(w.shape)} is not rank {rank[op.name]}")
    return problems


# -- the three computations -------------------------------------------------------------------------
def _per_channel_scale(t: Tensor, qdim: int, shape: list[int]) -> np.ndarray | None:
    """Weight scales reshaped to broadcast over the TF-layout weight (``None``: not along ``qdim``)."""
    s = integer_kernels.safe_scale(t.quantization.scale)
    if s.size == 1:
        return s.reshape(())
    if t.quantization.quantized_dimension != qdim:
        return None
    return s.reshape(shape)


def _bias_value(ctx: OpContext, index: int | None) -> Any:
    return ctx.input(index) if index is not None and ctx.has_input(index) else None


def _linear(ctx: OpContext, lin: Lin, w: Any, *, x_index: int = 0, w_index: int = 1, b_index: int | None = 2,
            w_scale_shape: list[int] | None = None, qdim: int = 0, row_axes: list[int] | None = None,
            x: Any = None, plain_add: bool = False, wide: bool = True, xnnpack: bool = True) -> list[Any]:
    """``activation(lin(x, w) + bias)`` computed the way the TFLite kernel does (see module doc).

    ``w`` is the real-valued weight in TF layout; ``w_scale_shape`` reshapes per-channel weight scales
    (quantized along TFLite axis ``qdim``) to broadcast over it; ``row_axes`` are the input axes
    quantized together by a hybrid kernel (``None``: the op has no hybrid kernel); ``x`` overrides
    input ``x_index`` (e.g. already flattened); ``plain_add`` adds the bias with ``+`` rather than
    BiasAdd (grappler fuses Conv2D+BiasAdd into a kernel without grouped convolution); ``wide``
    selects the 16x8 kernel's requantization (fixed point, :func:`integer_kernels.requantize_fixed`; ``False``:
    the fully-connected kernel's double-precision rescale, :func:`integer_kernels.requantize_double`); ``xnnpack``
    says whether the default interpreter delegates the op's hybrid kernel to XNNPACK's dynamically
    quantized (qd8) kernels (:func:`integer_kernels.quantize_rows_xnnpack`, :func:`_qd8_rescale`) or runs
    TFLite's builtin one (:func:`integer_kernels.quantize_rows`, :func:`integer_kernels.rescale`).
    """
    x = ctx.input(x_index) if x is None else x
    x_t, w_t, y_t = ctx.in_tensor(x_index), ctx.in_tensor(w_index), ctx.out_tensor(0)
    b_t = ctx.in_tensor(b_index) if b_index is not None else None
    act = ctx.options.get("fused_activation_function", "NONE")
    faithful = ctx.builder.options.fake_quant
    w_scale = None
    if faithful and w_t is not None and w_t.is_constant and w_t.is_quantized:
        w_scale = _per_channel_scale(w_t, qdim, w_scale_shape or [-1])
    eight = integer_kernels.is_q8(x_t, True) and integer_kernels.is_q8(w_t) and integer_kernels.is_q8(y_t, True)
    sixteen = integer_kernels.is_q16(x_t) and w_t is not None and w_t.type_name == "INT8" and integer_kernels.is_q16(y_t)
    if (w_scale is not None and act in integer_kernels.CLAMP_ACTIVATIONS and (eight or sixteen)
            and (b_t is None or (b_t.is_constant and b_t.is_quantized))):
        return [_integer(ctx, lin, w, w_scale, x, x_t, w_t, y_t, b_index, act, wide)]
    if (faithful and eight and w_t is not None and not w_t.is_constant and integer_kernels.is_q8(w_t, True)
            and act in integer_kernels.CLAMP_ACTIVATIONS and (b_t is None or (b_t.is_constant and b_t.is_quantized))):
        return [_integer(ctx, lin, w, integer_kernels.safe_scale(w_t.quantization.scale).reshape(()), x, x_t, w_t, y_t,
                         b_index, act, wide, builtin=True)]
    if w_scale is not None and row_axes is not None and integer_kernels.is_hybrid(x_t, w_t):
        if xnnpack:
            xq, row_scale = integer_kernels.quantize_rows_xnnpack(x, row_axes)
        else:
            xq, row_scale = integer_kernels.quantize_rows(x, row_axes, half_even=False)
        acc = lin(xq, integer_kernels.to_int(w, tf.constant(w_scale)))
        if xnnpack:
            return [ctx.activation(_qd8_rescale(acc, row_scale, np.reshape(w_t.quantization.scale, [-1]),
                                                _bias_value(ctx, b_index)))]
        y = integer_kernels.rescale(acc, row_scale, np.reshape(w_t.quantization.scale, [-1]))
        return [ctx.activation(_add_bias(y, _bias_value(ctx, b_index), plain_add))]
    y = lin(x, tf.cast(w, x.dtype))
    return [ctx.activation(_add_bias(y, _bias_value(ctx, b_index), plain_add))]


def _integer(ctx: OpContext, lin: Lin, w: Any, w_scale: np.ndarray, x: Any, x_t: Tensor, w_t: Tensor,
             y_t: Tensor, b_index: int | None, act: str, wide: bool, builtin: bool = False) -> Any:
    """Exact integer accumulator (bias included), then XNNPACK's float requantization (8-bit), the
    builtin kernel's fixed-point one (8-bit with run-time weights, ``builtin``) or the 16x8 one."""
    in_scale = float(x_t.quantization.scale[0])
    acc = lin(integer_kernels.to_int(x, in_scale), integer_kernels.to_int(w, tf.constant(w_scale)))
    if b_index is not None and ctx.has_input(b_index):
        acc = acc + integer_kernels.exact_bias(ctx, b_index)
    w_scales = np.reshape(w_t.quantization.scale, [-1])
    if y_t.type_name == "INT16":
        if not wide:
            return integer_kernels.requantize_double(acc, in_scale, w_scales, y_t, act)
        return integer_kernels.requantize_fixed(acc, in_scale, w_scales, y_t, act, wide)
    if builtin:
        gemm = ctx.op.name in ("CONV_2D", "FULLY_CONNECTED")
        return integer_kernels.requantize_builtin(acc, in_scale, float(w_scales[0]), y_t, act, gemm)
    scale = integer_kernels.requant_scale(in_scale, w_scales, float(y_t.quantization.scale[0]))
    return integer_kernels.requantize(acc, scale, y_t, act)


def _qd8_rescale(acc: Any, row_scale: Any, w_scale: np.ndarray, b: Any) -> Any:
    """XNNPACK's dynamically quantized (qd8) output stage: ``fma(float(acc) * row_scale,
    weight_scale, bias)``: the input scale first, then the per-channel weight scale fused with the
    bias add (one rounding, emulated in float64), unlike TFLite's builtin hybrid kernels
    (``acc * (row_scale * weight_scale)``, :func:`integer_kernels.rescale`)."""
    # float64 from here on: a float32 product is exact in float64 (so rounding it to float32 is the
    # float32 multiply), and grappler cannot re-associate the two multiplications across the cast.
    y = tf.cast(tf.cast(acc, tf.float32) * row_scale, tf.float64) * tf.constant(np.asarray(w_scale, np.float64))
    if b is not None:
        y = y + tf.cast(b, tf.float64)
    return tf.cast(y, tf.float32)


def _add_bias(y: Any, b: Any, plain: bool = False) -> Any:
    if b is None:
        return y
    b = tf.cast(b, y.dtype)
    return y + b if plain else tf.nn.bias_add(y, b)


def _weight(ctx: OpContext, i: int, transform: Callable[[np.ndarray], np.ndarray], tag: str,
            graph_transform: Callable[[Any], Any]) -> Any:
    """Input ``i`` in TF layout: a variable transformed once in numpy, or a tensor transformed in-graph."""
    if ctx.is_const(i):
        return ctx.weight(i, transform, tag)
    return graph_transform(ctx.input(i))


def _dilate(a: np.ndarray, rates: list[int], axes: list[int]) -> np.ndarray:
    """Insert ``rate - 1`` zeros between filter taps: a dilated filter as an undilated one."""
    for r, ax in zip(rates, axes):
        if r > 1:
            shape = list(a.shape)
            shape[ax] = (a.shape[ax] - 1) * r + 1
            out = np.zeros(shape, a.dtype)
            idx = [slice(None)] * a.ndim
            idx[ax] = slice(None, None, r)
            out[tuple(idx)] = a
            a = out
    return a


# -- CONV_2D ----------------------------------------------------------------------------------------
@register("CONV_2D", check=_conv_check)
def conv_2d(ctx: OpContext) -> list[Any]:
    """Grouped convolution (filter depth dividing the input depth) maps to the same TF op."""
    o = ctx.options
    w = _weight(ctx, 1, lambda a: a.transpose(1, 2, 3, 0), "hwio", lambda t: tf.transpose(t, [1, 2, 3, 0]))
    strides = [1, o.get("stride_h", 1), o.get("stride_w", 1), 1]
    dil = [1, o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1), 1]
    pad = tf_padding(o.get("padding", "SAME"), ctx.where)

    def lin(x: Any, f: Any) -> Any:
        return tf.nn.conv2d(x, f, strides=strides, padding=pad, dilations=dil)

    cout, kh, kw, cin = ctx.in_tensor(1).shape
    x_shape = ctx.in_tensor(0).shape
    grouped = bool(x_shape) and x_shape[-1] > 0 and x_shape[-1] != cin
    # Hybrid inputs are quantized per image, except that XNNPACK runs a 1x1 stride-1 convolution as a
    # fully-connected layer and quantizes each pixel separately.
    pointwise = kh == kw == 1 and strides[1] == strides[2] == 1
    return _linear(ctx, lin, w, w_scale_shape=[1, 1, 1, cout], qdim=0, row_axes=[3] if pointwise else [1, 2, 3],
                   plain_add=grouped)


# -- DEPTHWISE_CONV_2D ------------------------------------------------------------------------------
def _dw_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = _conv_check(op, sg)
    o = op.options
    strided = o.get("stride_h", 1) > 1 or o.get("stride_w", 1) > 1
    dilated = o.get("dilation_h_factor", 1) > 1 or o.get("dilation_w_factor", 1) > 1
    x = sg.input_of(op, 0)
    if strided and dilated and o.get("padding", "SAME") == "SAME" and (
            x is None or len(x.shape) != 4 or min(x.shape[1:3]) <= 0 or x.is_dynamic):
        problems.append("stride > 1 with dilation > 1 and SAME padding needs a static input height/width")
    return problems


@register("DEPTHWISE_CONV_2D", check=_dw_check)
def depthwise_conv_2d(ctx: OpContext) -> list[Any]:
    """The filter shape is authoritative for the channel multiplier (some converters write
    ``depth_multiplier=0``). TF's depthwise kernel cannot combine stride and dilation; that case is a
    dilated stride-1 convolution over explicitly padded input, subsampled."""
    o = ctx.options
    in_t, f_t = ctx.in_tensor(0), ctx.in_tensor(1)
    out_ch = f_t.shape[-1]
    in_ch = in_t.shape[-1] if in_t.shape and in_t.shape[-1] > 0 else out_ch // max(int(o.get("depth_multiplier", 1)), 1)
    if in_ch <= 0 or out_ch % in_ch:
        raise ctx.unsupported(f"filter has {out_ch} channels, not a multiple of the input's {in_ch}")
    mult = out_ch // in_ch
    kh, kw = f_t.shape[1], f_t.shape[2]
    w = _weight(ctx, 1, lambda a: a.reshape(kh, kw, in_ch, mult), "dw",
                lambda t: tf.reshape(t, [kh, kw, in_ch, mult]))
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    pad = tf_padding(o.get("padding", "SAME"), ctx.where)

    if (sh > 1 or sw > 1) and (dh > 1 or dw > 1):
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        if pad == "SAME":
            paddings[1] = list(same_padding_amounts(in_t.shape[1], kh, sh, dh))
            paddings[2] = list(same_padding_amounts(in_t.shape[2], kw, sw, dw))

        def lin(x: Any, f: Any) -> Any:
            y = tf.nn.depthwise_conv2d(constant_pad(x, paddings), f, [1, 1, 1, 1], "VALID", dilations=[dh, dw])
            return y[:, ::sh, ::sw, :]
    else:
        def lin(x: Any, f: Any) -> Any:
            return tf.nn.depthwise_conv2d(x, f, [1, sh, sw, 1], pad, dilations=[dh, dw])

    return _linear(ctx, lin, w, w_scale_shape=[1, 1, in_ch, mult], qdim=3, row_axes=[1, 2, 3], xnnpack=False)


# -- TRANSPOSE_CONV ---------------------------------------------------------------------------------
@register("TRANSPOSE_CONV", check=_conv_check)
def transpose_conv(ctx: OpContext) -> list[Any]:
    """Inputs: output_shape, weights ``[out, kh, kw, in]``, input, optional bias (index 3)."""
    o = ctx.options
    shape = ctx.const(0)
    out_shape = [int(d) for d in shape] if shape is not None else ctx.input(0)
    w = _weight(ctx, 1, lambda a: a.transpose(1, 2, 0, 3), "hwoi", lambda t: tf.transpose(t, [1, 2, 0, 3]))
    strides = [1, o.get("stride_h", 1), o.get("stride_w", 1), 1]
    pad = tf_padding(o.get("padding", "SAME"), ctx.where)

    def lin(x: Any, f: Any) -> Any:
        return tf.nn.conv2d_transpose(x, f, out_shape, strides=strides, padding=pad)

    cout = ctx.in_tensor(1).shape[0]
    # Hybrid (float input, int8 weights): the default interpreter's XNNPACK deconvolution quantizes
    # the input per image (integer_kernels.quantize_rows_xnnpack) and rescales as _qd8_rescale says.
    return _linear(ctx, lin, w, x_index=2, b_index=3, w_scale_shape=[1, 1, cout, 1], qdim=0, row_axes=[1, 2, 3])


# -- CONV_3D / CONV_3D_TRANSPOSE --------------------------------------------------------------------
def _conv3d_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = _conv_check(op, sg)
    o = op.options
    dilated = any(o.get(k, 1) > 1 for k in ("dilation_d_factor", "dilation_h_factor", "dilation_w_factor"))
    w_index = 1
    w = sg.input_of(op, w_index)
    if dilated and (w is None or not w.is_constant):
        problems.append("dilation > 1 with a non-constant filter (TensorFlow's CPU Conv3D has no dilation; "
                        "only a constant filter can be dilated ahead of time)")
    return problems


def _dilations_3d(o: dict[str, Any]) -> list[int]:
    return [o.get("dilation_d_factor", 1), o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)]


@register("CONV_3D", check=_conv3d_check)
def conv_3d(ctx: OpContext) -> list[Any]:
    """Filter ``[kd, kh, kw, in, out]`` is TF's layout already. TF's CPU Conv3D has no dilation, so a
    dilated constant filter is expanded with zeros (the same sums)."""
    o = ctx.options
    rates = _dilations_3d(o)
    w = _weight(ctx, 1, lambda a: _dilate(a, rates, [0, 1, 2]), f"dil{rates}", lambda t: t)
    strides = [1, o.get("stride_d", 1), o.get("stride_h", 1), o.get("stride_w", 1), 1]
    pad = tf_padding(o.get("padding", "SAME"), ctx.where)

    def lin(x: Any, f: Any) -> Any:
        return tf.nn.conv3d(x, f, strides=strides, padding=pad)

    cout = ctx.in_tensor(1).shape[-1]
    return _linear(ctx, lin, w, w_scale_shape=[1, 1, 1, 1, cout], qdim=4)


@register("CONV_3D_TRANSPOSE", check=_conv3d_check)
def conv_3d_transpose(ctx: OpContext) -> list[Any]:
    """Inputs: output_shape, filter ``[kd, kh, kw, out, in]`` (TF's layout), input, optional bias."""
    o = ctx.options
    rates = _dilations_3d(o)
    shape = ctx.const(0)
    out_shape = [int(d) for d in shape] if shape is not None else ctx.input(0)
    w = _weight(ctx, 1, lambda a: _dilate(a, rates, [0, 1, 2]), f"dil{rates}", lambda t: t)
    strides = [1, o.get("stride_d", 1), o.get("stride_h", 1), o.get("stride_w", 1), 1]
    pad = tf_padding(o.get("padding", "SAME"), ctx.where)

    def lin(x: Any, f: Any) -> Any:
        return tf.nn.conv3d_transpose(x, f, out_shape, strides=strides, padding=pad)

    cout = ctx.in_tensor(1).shape[3]
    return _linear(ctx, lin, w, x_index=2, b_index=3, w_scale_shape=[1, 1, 1, cout, 1], qdim=3)


# -- FULLY_CONNECTED --------------------------------------------------------------------------------
def _fc_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = check_activation(op.options)
    fmt = op.options.get("weights_format", "DEFAULT")
    if fmt != "DEFAULT":
        problems.append(f"weights_format {fmt} (only DEFAULT is rebuilt)")
    return problems


@register("FULLY_CONNECTED", check=_fc_check)
def fully_connected(ctx: OpContext) -> list[Any]:
    """``y = x . W^T + b`` over the last axis. Without keep_num_dims the input is flattened to
    ``[-1, depth]``; with it the leading axes are kept (a broadcasting matmul, which the converter
    turns back into FULLY_CONNECTED with keep_num_dims)."""
    x_t, w_t = ctx.in_tensor(0), ctx.in_tensor(1)
    units, depth = w_t.shape[0], w_t.shape[-1]
    w = _weight(ctx, 1, lambda a: a.reshape(units, -1).T, "io", tf.transpose)
    keep = ctx.options.get("keep_num_dims", False)
    x = ctx.input(0)
    in_rank = len(x_t.shape)
    if in_rank != 2 and not keep:
        x, in_rank = tf.reshape(x, [-1, depth]), 2
    return _linear(ctx, tf.matmul, w, w_scale_shape=[1, units], qdim=0, row_axes=[in_rank - 1], x=x,
                   wide=False)


# -- BATCH_MATMUL -----------------------------------------------------------------------------------
@register("BATCH_MATMUL")
def batch_matmul(ctx: OpContext) -> list[Any]:
    """``matmul(adj_x ? x^T : x, adj_y ? y^T : y)`` with broadcast batch axes (TF's BatchMatMulV2)."""
    o = ctx.options
    adj_x, adj_y = bool(o.get("adj_x", False)), bool(o.get("adj_y", False))
    x_t, y_t = ctx.in_tensor(0), ctx.in_tensor(1)
    y = ctx.weight(1) if ctx.is_const(1) and y_t.type_name in ("FLOAT32", "INT8", "UINT8") else ctx.input(1)
    rank = len(y_t.shape)
    n = y_t.shape[-2] if adj_y else y_t.shape[-1]

    def lin(a: Any, b: Any) -> Any:
        return tf.linalg.matmul(a, b, adjoint_a=adj_x, adjoint_b=adj_y)

    if (ctx.builder.options.fake_quant and integer_kernels.is_q8(x_t, True) and integer_kernels.is_q8(y_t, True)
            and integer_kernels.is_q8(ctx.out_tensor(0), True)):
        return [_bmm_integer(ctx, lin, y, x_t, y_t)]
    if (ctx.builder.options.fake_quant and integer_kernels.is_q16(x_t) and integer_kernels.is_q16(y_t)
            and integer_kernels.is_q16(ctx.out_tensor(0))):
        return [_bmm_integer(ctx, lin, y, x_t, y_t)]
    # Per-channel RHS scales run along the output (N) axis.
    shape = [1] * rank
    shape[-2 if adj_y else -1] = n
    return _linear(ctx, lin, y, b_index=None, w_scale_shape=shape, qdim=rank - 2 if adj_y else rank - 1,
                   row_axes=[len(x_t.shape) - (2 if adj_x else 1)])


def _bmm_integer(ctx: OpContext, lin: Lin, y: Any, x_t: Tensor, y_t: Tensor) -> Any:
    """Both operands quantized per tensor (neither has to be constant)."""
    sx, sy = float(x_t.quantization.scale[0]), float(y_t.quantization.scale[0])
    acc = lin(integer_kernels.to_int(ctx.input(0), sx), integer_kernels.to_int(y, sy))
    out = ctx.out_tensor(0)
    if out.type_name == "INT16":
        return integer_kernels.requantize_fixed(acc, sx, np.float32(sy), out, "NONE", WIDE_BMM)
    return integer_kernels.requantize(acc, integer_kernels.requant_scale(sx, np.float32(sy), float(out.quantization.scale[0])),
                             out, "NONE")
