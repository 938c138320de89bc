"""Semantics shared by many rebuilders, written once.

Fused activations, TFLite padding rules, dequantization of constants and fake quantization live
here so that every op family applies them the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tf import tf
from ..errors import UnsupportedOpError
from ..model.ir import Quantization, Tensor

#: Every ActivationFunctionType value the schema defines, and how to apply it.
FUSED_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")


def apply_activation(x: Any, name: str, where: str = "") -> Any:
    """Apply a TFLite fused activation to ``x``.

    The forms chosen are the ones TensorFlow's converter fuses back into the producing op
    (``tf.nn.relu``, ``tf.nn.relu6``, ``clip(-1, 1)``), so a round trip adds no op.
    """
    if name == "NONE":
        return x
    if name == "RELU":
        return tf.nn.relu(x)
    if name == "RELU6":
        return tf.nn.relu6(x)
    if name == "RELU_N1_TO_1":
        return tf.clip_by_value(x, tf.constant(-1, x.dtype), tf.constant(1, x.dtype))
    if name == "TANH":
        return tf.tanh(x)
    if name == "SIGN_BIT":
        # TFLite defines SIGN_BIT as 1 where the sign bit is set (x < 0), else 0 (kTfLiteActSignBit).
        return tf.cast(tf.less(x, tf.zeros_like(x)), x.dtype)
    raise UnsupportedOpError([f"{where}: fused activation {name!r} is not defined by the schema"])


def check_activation(options: dict[str, Any]) -> list[str]:
    act = options.get("fused_activation_function", "NONE")
    return [] if act in FUSED_ACTIVATIONS else [f"fused activation {act!r} unknown"]


#: TFLite's Padding enum values a convolution or pool can have (the schema has no others today).
PADDINGS = ("SAME", "VALID")


def check_padding(options: dict[str, Any]) -> list[str]:
    """The check-phase problem of an unknown ``padding`` option (empty when it is SAME or VALID)."""
    pad = options.get("padding", "SAME")
    return [] if pad in PADDINGS else [f"padding {pad!r} is not SAME or VALID"]


def tf_padding(padding: str, where: str) -> str:
    if padding in PADDINGS:
        return padding
    raise UnsupportedOpError([f"{where}: padding {padding!r} is not SAME or VALID"])


def constant_pad(x: Any, paddings: Any, value: Any = 0) -> Any:
    """Constant padding emitted as TensorFlow's ``PadV2`` (the pad value as a tensor), never ``Pad``.

    With oneDNN graph rewrites on (TensorFlow's default on CPUs with AVX512_VNNI/BF16, AVX-VNNI or
    AMX), the layout pass folds a ``Pad`` feeding any input of a ``Conv2D``/``_FusedConv2D`` into the
    convolution's spatial padding: padding on the channel or batch dimension is dropped ("input depth
    must be evenly divisible by filter depth"; wrong values for batch padding), and a ``Pad`` feeding
    the residual operand of a Conv2D+BiasAdd+Add fusion (BlazeFace's channel-padded shortcuts)
    crashes the process with SIGSEGV. The rewrite matches ``Pad`` only; ``PadV2`` computes the same
    (TFLite's converter writes it back as PADV2, the same kernel as PAD with an explicit value).
    Measured with ``TF_ENABLE_ONEDNN_OPTS=1`` in tests/test_onednn.py.
    """
    x = tf.convert_to_tensor(x)
    return tf.raw_ops.PadV2(input=x, paddings=paddings, constant_values=tf.cast(value, x.dtype))


def dequantize_array(data: np.ndarray, q: Quantization | None) -> np.ndarray:
    """``scale * (q - zero_point)`` with per-tensor or per-axis parameters, as float32."""
    if q is None or not q.is_quantized:
        return np.asarray(data, dtype=np.float32)
    x = np.asarray(data).astype(np.float32)
    scale = q.scale.astype(np.float32)
    zp = q.zero_point.astype(np.float32)
    if scale.size > 1 and x.ndim:
        shape = [1] * x.ndim
        shape[q.quantized_dimension] = scale.size
        scale = scale.reshape(shape)
        zp = zp.reshape(shape) if zp.size == scale.size else zp
    return ((x - zp) * scale).astype(np.float32)


def integer_range(type_name: str) -> tuple[int, int]:
    return {
        "INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767), "INT4": (-8, 7),
        "UINT4": (0, 15), "INT32": (-(2 ** 31), 2 ** 31 - 1), "INT64": (-(2 ** 63), 2 ** 63 - 1),
        "UINT16": (0, 65535), "UINT32": (0, 2 ** 32 - 1),
    }[type_name]


def _q_params(t: Tensor) -> tuple[Any, Any, float, float]:
    q = t.quantization
    scale = q.scale.astype(np.float32)
    zp = q.zero_point.astype(np.float32)
    if scale.size > 1 and len(t.shape) > 1:
        shape = [1] * len(t.shape)
        shape[q.quantized_dimension] = scale.size
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    elif scale.size == 1:
        scale, zp = scale.reshape(()), zp.reshape(())
    lo, hi = integer_range(t.type_name)
    return scale, zp, float(lo), float(hi)


def raw_codes(x: Any, src: Tensor | None, dst: Tensor | None) -> Any:
    """The integers stored for ``src`` read back with ``dst``'s scale and zero point.

    TFLite's data-movement kernels (RESHAPE, TRANSPOSE, SLICE, TILE, GATHER, PAD, max pooling,
    nearest-neighbour resize, REDUCE_MAX/MIN in XNNPACK, ...) copy the raw integers and never
    requantize: when a file records output parameters that differ from the input's, the same codes
    mean other real values. As real values that is the affine map
    ``(x / s_src + zp_src - zp_dst) * s_dst``, exact on the grid (no rounding involved, so float
    mode and faithful mode agree). ``x`` is returned unchanged unless both tensors are per-tensor
    quantized integers of the same type with different parameters.
    """
    if src is None or dst is None or not (src.is_quantized and dst.is_quantized):
        return x
    if src.type_name != dst.type_name or src.type_name not in ("INT8", "UINT8", "INT16", "INT32", "INT4"):
        return x
    qs, qd = src.quantization, dst.quantization
    if qs.scale.size != 1 or qd.scale.size != 1:
        return x
    s_src, s_dst = float(np.float32(qs.scale[0])), float(np.float32(qd.scale[0]))
    zp_src = int(qs.zero_point[0]) if qs.zero_point.size else 0
    zp_dst = int(qd.zero_point[0]) if qd.zero_point.size else 0
    if (s_src, zp_src) == (s_dst, zp_dst) or s_src == 0.0:
        return x
    return (x / s_src + float(zp_src - zp_dst)) * s_dst


def round_half_away(x: Any) -> Any:
    """TFLite rounds half away from zero (std::round); tf.round rounds half to even."""
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def fake_quant(x: Any, t: Tensor) -> Any:
    """Round ``x`` onto the integer grid recorded for tensor ``t`` and map it back to real values.

    An infinite ``x`` saturates at the grid's end, as the default interpreter's QUANTIZE (XNNPACK)
    does (measured: +inf -> the highest code, -inf -> the lowest; the builtin kernel's float-to-int
    conversion sends +inf to the lowest); the straight-through form ``x + (q - x)`` alone would turn
    it into NaN, which then spreads through every later reduction.
    """
    scale, zp, lo, hi = _q_params(t)
    q = tf.clip_by_value(round_half_away(x / scale) + zp, lo, hi)
    y = (q - zp) * scale
    # Straight-through gradient: the rounded value forward, the identity backward, so a faithful
    # quantized model can still be fine-tuned.
    return tf.where(tf.math.is_inf(x), y, x + tf.stop_gradient(y - x))


def quantize_to_int(x: Any, t: Tensor) -> Any:
    """Real values -> the integer tensor ``t`` declares (used at integer model outputs)."""
    scale, zp, lo, hi = _q_params(t)
    q = tf.clip_by_value(round_half_away(x / scale) + zp, lo, hi)
    return tf.cast(q, t.dtype)


def dequantize_int(x: Any, t: Tensor) -> Any:
    """Integer tensor ``t`` -> real values (used at integer model inputs)."""
    scale, zp, _, _ = _q_params(t)
    return (tf.cast(x, tf.float32) - zp) * scale


def same_padding_amounts(in_size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding (before, after) for one spatial dimension."""
    eff = (kernel - 1) * dilation + 1
    out = (in_size + stride - 1) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2


def has_8bit_range(t: Tensor) -> bool:
    """A per-tensor int8/uint8 activation whose range a fake-quant op can carry."""
    return (t.is_quantized and not t.is_constant and t.type_name in ("INT8", "UINT8")
            and t.quantization.scale.size == 1)


def range_fake_quant(x: Any, t: Tensor) -> Any:
    """``tf.quantization.fake_quant_with_min_max_args`` with ``t``'s recorded range.

    With min = s*(lo - zp) and max = s*(hi - zp), TensorFlow's 8-bit fake quant has step s and an
    integral zero point, so no nudging happens and TFLiteConverter takes exactly (s, zp) for ``t``.
    """
    scale = float(t.quantization.scale[0])
    zp = int(t.quantization.zero_point[0])
    lo, hi = integer_range(t.type_name)
    return tf.quantization.fake_quant_with_min_max_args(x, min=scale * (lo - zp), max=scale * (hi - zp),
                                                         num_bits=8, narrow_range=False)
