"""Integer-kernel arithmetic shared by the linear ops (conv, depthwise, fully-connected, matmul).

Two kinds of TFLite kernels do not compute what the float graph computes, and faithful mode
(``RebuildOptions.fake_quant``) reproduces them exactly rather than approximately:

* Hybrid (dynamic-range) kernels: float activations, constant int8 weights with a scale. The kernel
  quantizes the float input on the fly to int8 (one scale and zero point per batch row),
  accumulates ``int8 x int8`` in int32 and rescales by the row and weight scales. The default
  interpreter hands hybrid fully-connected, conv, transpose-conv and matmul to XNNPACK's
  dynamically quantized (qd8) kernels, which quantize asymmetrically whatever
  ``asymmetric_quantize_inputs`` says, with XNNPACK's own float32 parameters and ties to even
  (:func:`quantize_rows_xnnpack`), treat a 1x1 stride-1 conv as fully-connected (one scale per
  pixel) and scale the output as ``fma(acc * row_scale, weight_scale, bias)`` (ops/conv.py):
  reproduced bit for bit. Hybrid depthwise stays in the builtin kernel (TFLite's double-precision
  parameters, ties away from zero: :func:`quantize_rows`, :func:`rescale`), within float32 ulps.
  The builtin kernels' symmetric variants are not what the default interpreter runs.
* Full-integer 8-bit kernels: the default CPU interpreter runs them in XNNPACK, which requantizes the
  exact int32 accumulator in float32: ``q = round_half_even(float(acc) * scale) + zero_point`` with
  ``scale = float32(input_scale * weight_scale) / output_scale``. :func:`requantize` does the same.
* 16x8 kernels (int16 activations, int8 weights; never delegated, so the builtin kernels are the
  default interpreter's) requantize the integer accumulator in fixed point (TFLite's
  ``MultiplyByQuantizedMultiplier``, int64 form): :func:`requantize_fixed` for conv, depthwise,
  transpose-conv and int16 batch-matmul; the 16x8 fully-connected kernel rescales in double
  precision instead: :func:`requantize_double`.
* 8-bit conv/fully-connected whose weights are not constant are not delegated (XNNPACK needs
  static weights): the builtin kernel's fixed-point requantization, :func:`requantize_builtin`.
* 8-bit ADD/SUB in XNNPACK: :func:`add_integer` (for the element-wise rebuilders).


Integer accumulators are computed exactly in float64 convolutions/matmuls on integer-valued tensors
(every partial sum of int8 products is far below 2**53). Roundings use a straight-through gradient so
the rebuilt weights stay trainable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Tensor
from .common import integer_range, round_half_away
from .context import OpContext
from .fixedpoint import mbqm, quantize_multiplier

#: Fused activations an integer kernel folds into its output clamp.
CLAMP_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def ste(x: Any, rounded: Any) -> Any:
    """``rounded`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + tf.stop_gradient(rounded - x)


def is_q8(t: Tensor | None, per_tensor: bool = False) -> bool:
    """An 8-bit quantized tensor (optionally with a single scale)."""
    if t is None or not t.is_quantized or t.type_name not in ("INT8", "UINT8"):
        return False
    return not per_tensor or t.quantization.scale.size == 1


def safe_scale(scale: np.ndarray) -> np.ndarray:
    """Scales with zeros replaced by 1 (an all-zero channel may carry scale 0; dividing by it is NaN)."""
    s = np.asarray(scale, dtype=np.float32)
    return np.where(s == 0, np.float32(1), s).astype(np.float32)


def to_int(x: Any, scale: Any) -> Any:
    """Real values on a quantization grid -> the integers ``q - zero_point`` (float64, exact)."""
    t = x / scale
    return tf.cast(ste(t, tf.round(t)), tf.float64)


def clamp_range(out: Tensor, activation: str) -> tuple[float, float]:
    """TFLite's quantized activation range for ``out``, in ``q - zero_point`` units."""
    scale = float(out.quantization.scale[0])
    zp = int(out.quantization.zero_point[0]) if out.quantization.zero_point.size else 0
    lo, hi = integer_range(out.type_name)

    def q(v: float) -> int:
        return zp + int(np.sign(v) * np.floor(abs(v) / scale + 0.5))

    if activation == "RELU":
        lo = max(lo, q(0.0))
    elif activation == "RELU6":
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif activation == "RELU_N1_TO_1":
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    return float(lo - zp), float(hi - zp)


def requant_scale(in_scale: float, w_scale: np.ndarray, out_scale: float) -> np.ndarray:
    """XNNPACK's float32 requantization scale ``(input_scale * weight_scale) / output_scale``."""
    prod = np.float32(in_scale) * np.asarray(w_scale, dtype=np.float32)
    return (prod / np.float32(out_scale)).astype(np.float32)


def requantize(acc: Any, scale: np.ndarray, out: Tensor, activation: str) -> Any:
    """Exact int accumulator (float64) -> the real value of XNNPACK's 8-bit output.

    ``scale`` broadcasts over the last (channel) axis. The clamp bounds are integers, so clamping
    before rounding equals clamping after it.
    """
    lo, hi = clamp_range(out, activation)
    y = tf.cast(acc, tf.float32) * tf.constant(scale, tf.float32)
    y = tf.clip_by_value(y, lo, hi)
    return ste(y, tf.round(y)) * float(out.quantization.scale[0])


def is_q16(t: Tensor | None) -> bool:
    """An int16 tensor quantized per tensor (16x8 activations)."""
    return t is not None and t.is_quantized and t.type_name == "INT16" and t.quantization.scale.size == 1


def requantize_fixed(acc: Any, in_scale: float, w_scale: np.ndarray, out: Tensor, activation: str,
                     wide: bool = True) -> Any:
    """Exact integer accumulator (float64) -> real value of a 16x8 kernel's int16 output.

    TFLite's ``MultiplyByQuantizedMultiplier`` with the 31-bit multiplier of ``double(in_scale) *
    w_scale / out_scale`` (one per output channel, last axis): the int64-accumulator form (``wide``:
    multiplier reduced to 15 bits, one rounding-half-up right shift; conv kernels, int16
    batch-matmul), or the full 31-bit multiplier with one rounding-half-up shift (``wide=False``).
    ai_edge_litert is built with double rounding (``TFLITE_SINGLE_ROUNDING`` off: the int16
    softmax's int32 rescale matches only the double-rounding form, measured), and in that build the
    int64 form is the 15-bit one reproduced here. The shifted product is returned as int32 by the
    kernels, so it wraps before the clamp.
    """
    out_scale = float(out.quantization.scale[0])
    params = [quantize_multiplier(float(np.float32(in_scale)) * float(ws) / out_scale)
              for ws in np.reshape(np.asarray(w_scale, np.float64), [-1])]
    mult = np.array([q for q, _ in params], np.int64)
    shift = np.array([s for _, s in params], np.int64)
    if wide:
        mult = np.where(mult < 0x7FFF0000, (mult + (1 << 15)) >> 16, 0x7FFF)
        total = 15 - shift
    else:
        total = 31 - shift
    # A multiplier of 2**15 (wide) or 2**31 or more leaves no right shift: the product is shifted left.
    left, total = np.maximum(1 - total, 0), np.maximum(total, 1)
    a, m = tf.cast(acc, tf.int64), mult << left
    if np.all(total >= 16):
        # acc * m overflows int64 once |acc| nears 2**32 (an int64 bias); the kernels' product does
        # not. floor((hi * 2**16 * m + lo * m + r) / 2**t) = floor((hi * m + floor((lo * m + r) / 2**16))
        # / 2**(t - 16)) with acc = hi * 2**16 + lo, 0 <= lo < 2**16.
        hi_part, lo_part = a // 2 ** 16, a % 2 ** 16
        low = (lo_part * tf.constant(m) + tf.constant(1 << (total - 1))) // 2 ** 16
        q = (hi_part * tf.constant(m) + low) // tf.constant(1 << (total - 16))
    else:
        q = (a * tf.constant(m) + tf.constant(1 << (total - 1))) // tf.constant(1 << total)
    # The kernels return the shifted product as int32 before clamping: an absurd bias wraps around.
    q = (q + 2 ** 31) % 2 ** 32 - 2 ** 31
    lo, hi = clamp_range(out, activation)
    y = tf.clip_by_value(tf.cast(q, tf.float32), lo, hi) * out_scale
    approx = tf.cast(acc, tf.float32) * tf.constant(requant_scale(in_scale, w_scale, out_scale)) * out_scale
    # Clamped like the output, or ``approx + (y - approx)`` loses y's low bits to float32 cancellation
    # when an absurd bias makes approx huge.
    approx = tf.clip_by_value(approx, lo * out_scale, hi * out_scale)
    return ste(approx, y)


def requantize_double(acc: Any, in_scale: float, w_scale: np.ndarray, out: Tensor, activation: str) -> Any:
    """Exact integer accumulator (float64) -> real value of the 16x8 FULLY_CONNECTED kernel's output.

    ai_edge_litert's int16 fully-connected (per-tensor and per-channel, int64 or int32 bias) does not
    use a fixed-point multiplier: ``(int32_t) round((double) acc * ((double) in_scale * (double)
    w_scale / (double) out_scale))`` with the float32 scales, ``round`` half away from zero, then the
    clamp. A product outside int32 converts to INT32_MIN (x86 ``cvttsd2si``), whatever its sign.
    Measured against the fixed-point forms: identical except on exact ties (power-of-two scales),
    where only this one matches.
    """
    out_scale = float(out.quantization.scale[0])
    eff = np.array([float(np.float32(in_scale)) * float(np.float32(ws)) / float(np.float32(out_scale))
                    for ws in np.reshape(np.asarray(w_scale, np.float32), [-1])], np.float64)
    v = tf.cast(acc, tf.float64) * tf.constant(eff)
    a = tf.abs(v)
    f = tf.floor(a)
    r = tf.sign(v) * (f + tf.cast(a - f >= 0.5, tf.float64))  # std::round, exactly
    r = tf.where(tf.abs(r) < 2.0 ** 31, r, tf.constant(-(2.0 ** 31), tf.float64))
    lo, hi = clamp_range(out, activation)
    y = tf.cast(tf.clip_by_value(r, lo, hi), tf.float32) * out_scale
    approx = tf.cast(acc, tf.float32) * tf.constant(requant_scale(in_scale, w_scale, out_scale)) * out_scale
    return ste(tf.clip_by_value(approx, lo * out_scale, hi * out_scale), y)


def requantize_builtin(acc: Any, in_scale: float, w_scale: float, out: Tensor, activation: str,
                       gemm: bool) -> Any:
    """Exact integer accumulator (float64) -> real value of a builtin (not delegated) 8-bit kernel's
    output, with the multiplier ``QuantizeMultiplier(double(in_scale) * w_scale / out_scale)``.
    XNNPACK takes 8-bit conv/fully-connected only with constant weights; with a weight tensor
    computed at run time the builtin kernel runs. Its CONV_2D and FULLY_CONNECTED (``gemm``) go
    through ruy's x86 kernels: ``hi = (x * 2**left * q + 2**30) >> 31``, then a rounding-half-up
    right shift ``(hi + 2**(e-1)) >> e`` (neither TFLite's single- nor its double-rounding form: both
    are 1 LSB off on ~0.2 % of the elements); the others (DEPTHWISE_CONV_2D, ...) use TFLite's
    ``MultiplyByQuantizedMultiplier`` in the double-rounding form ai_edge_litert is built with (a
    rounding doubling high multiply, then a rounding-half-away right shift). Both measured."""

    out_scale = float(out.quantization.scale[0])
    m = float(np.float32(in_scale)) * float(np.float32(w_scale)) / float(np.float32(out_scale))
    a = tf.cast(acc, tf.int64)
    if gemm:
        mult, shift = quantize_multiplier(m)
        hi = (a * (2 ** max(shift, 0) * mult) + 2 ** 30) // 2 ** 31
        e = max(-shift, 0)
        q = tf.cast((hi + 2 ** (e - 1)) // 2 ** e if e > 0 else hi, tf.float32)
    else:
        q = tf.cast(mbqm(a, m), tf.float32)
    lo, hi = clamp_range(out, activation)
    y = tf.clip_by_value(q, lo, hi) * out_scale
    approx = tf.cast(acc, tf.float32) * tf.constant(requant_scale(in_scale, np.float32(w_scale), out_scale)) * out_scale
    return ste(tf.clip_by_value(approx, lo * out_scale, hi * out_scale), y)


def exact_bias(ctx: OpContext, index: int) -> Any:
    """A quantized int32/int64 bias as exact integers (float64), still driven by its trainable variable.

    The float32 variable cannot hold large integers exactly, so the value is the stored integer plus
    the rounded change of the variable since it was created (zero until someone trains it).
    """
    t = ctx.in_tensor(index)
    scale = safe_scale(t.quantization.scale)
    var = ctx.weight(index)
    delta = (var - tf.constant(ctx.const(index), tf.float32)) / tf.constant(scale)
    stored = np.asarray(t.data()).astype(np.int64) - np.asarray(t.quantization.zero_point, np.int64)
    return tf.constant(stored.astype(np.float64)) + tf.cast(ste(delta, tf.round(delta)), tf.float64)


def quantize_rows(x: Any, axes: list[int], half_even: bool) -> tuple[Any, Any]:
    """On-the-fly asymmetric int8 quantization of a float input, one scale and zero point per row.

    ``axes`` are the axes reduced into one row (all but the batch axis for conv, the channel axis for
    XNNPACK's 1x1 conv, the last axis for fully-connected and matmul). The scale and zero point are
    TFLite's ``AsymmetricQuantizeFloats`` (double precision, zero point nudged from the nearer end);
    values are ``round(x * (1 / scale)) + zero_point`` with ties to even in XNNPACK (``half_even``)
    and away from zero in the builtin kernels. Returns ``q - zero_point`` as exact float64 integers
    and the float32 per-row scaling factor (keepdims shape).
    """
    rmin = tf.cast(tf.minimum(tf.reduce_min(x, axes, keepdims=True), 0.0), tf.float64)
    rmax = tf.cast(tf.maximum(tf.reduce_max(x, axes, keepdims=True), 0.0), tf.float64)
    flat = tf.equal(rmin, rmax)
    scale = tf.where(flat, tf.ones_like(rmin), (rmax - rmin) / 255.0)
    zp_min = -128.0 - rmin / scale
    zp_max = 127.0 - rmax / scale
    err_min = 128.0 + tf.abs(rmin / scale)
    err_max = 127.0 + tf.abs(rmax / scale)
    zpd = tf.where(err_min < err_max, zp_min, zp_max)
    zp = tf.clip_by_value(round_half_away(zpd), -128.0, 127.0)
    zp = tf.where(flat, tf.zeros_like(zp), zp)
    sf = tf.cast(scale, tf.float32)
    zp32 = tf.cast(zp, tf.float32)
    t = x * reciprocal(sf)
    q = ste(t, tf.round(t) if half_even else round_half_away(t))
    q = tf.clip_by_value(q + zp32, -128.0, 127.0)
    return tf.cast(q - zp32, tf.float64), sf


def quantize_rows_xnnpack(x: Any, axes: list[int]) -> tuple[Any, Any]:
    """XNNPACK's own on-the-fly int8 quantization (``xnn_f32_qd8_asymmetric_quantization_params``),
    one row per ``axes``, all in float32 as XNNPACK computes it: ``inv = 255 / (rmax - rmin)`` (1 for
    a flat row), zero point ``-128 - rmin * inv`` or ``127 - rmax * inv`` (whichever end errs less,
    clamped, ties to even), ``q = round_half_even(x * inv) + zero_point``; the dequantization scale
    is ``1 / inv``. The scale can differ by one float32 ulp from TFLite's double-precision
    ``AsymmetricQuantizeFloats`` (:func:`quantize_rows`), which the output then shows. Used for every
    hybrid op XNNPACK runs; returns ``q - zero_point`` (exact float64 integers) and the float32 scale.
    """
    rmin = tf.minimum(tf.reduce_min(x, axes, keepdims=True), 0.0)
    rmax = tf.maximum(tf.reduce_max(x, axes, keepdims=True), 0.0)
    flat = tf.equal(rmin, rmax)
    # float32 division correctly rounded (via float64: double rounding is innocuous for a quotient)
    span = tf.where(flat, tf.ones_like(rmax), rmax - rmin)
    inv = tf.where(flat, tf.ones_like(rmax), tf.cast(255.0 / tf.cast(span, tf.float64), tf.float32))
    rmin_s, rmax_s = rmin * inv, rmax * inv
    zp = tf.where((-128.0 + rmin_s) + (127.0 + rmax_s) > 0, -128.0 - rmin_s, 127.0 - rmax_s)
    zp = tf.round(tf.clip_by_value(zp, -128.0, 127.0))
    t = x * inv
    q = tf.clip_by_value(ste(t, tf.round(t)) + zp, -128.0, 127.0)
    return tf.cast(q - zp, tf.float64), reciprocal(inv)


def reciprocal(v: Any) -> Any:
    """The correctly rounded float32 ``1 / v``: TF's float32 division on CPU may be an approximate
    reciprocal, one ulp off, which moves roundings the integer kernels make."""
    return tf.cast(1.0 / tf.cast(v, tf.float64), tf.float32)


def is_hybrid(x: Tensor | None, w: Tensor | None) -> bool:
    """TFLite runs a hybrid kernel: float32 activations, constant int8 weights with a scale."""
    return (x is not None and w is not None and x.type_name == "FLOAT32" and w.is_constant
            and w.type_name == "INT8" and w.is_quantized)


def rescale(acc: Any, row_scale: Any, w_scale: np.ndarray) -> Any:
    """Hybrid kernels: ``float(acc) * (row_scale * weight_scale)`` (weight scale per output channel)."""
    return tf.cast(acc, tf.float32) * (row_scale * tf.constant(np.asarray(w_scale, np.float32)))


def add_integer(a: Any, b: Any, a_t: Tensor, b_t: Tensor, out: Tensor, activation: str = "NONE",
                subtract: bool = False) -> Any:
    """XNNPACK's 8-bit ADD/SUB (the default interpreter's kernel), exactly, as real values of ``out``.

    With ``s_a = float32(scale_a / scale_out)``, ``s_b`` likewise (negated for SUB) and
    ``shift = 20 - exponent(max(|s_a|, |s_b|))``, each input is weighted by the integer multiplier
    ``lrintf(s * 2**shift)`` and the sum is rounded ``(acc + 2**(shift-1)) >> shift``. Inputs are
    per-tensor quantized 8-bit values on their grids; broadcasting follows numpy.
    """
    sa, sb, so = (np.float32(t.quantization.scale[0]) for t in (a_t, b_t, out))
    a_os, b_os = np.float32(sa / so), np.float32(sb / so)
    if subtract:
        b_os = -b_os
    top = np.array(max(abs(a_os), abs(b_os)), np.float32)
    shift = 20 - (int(top.view(np.uint32) >> 23) - 127)
    am, bm = (int(np.rint(np.float32(v * np.float32(2.0 ** shift)))) for v in (a_os, b_os))
    qa = tf.cast(tf.round(a / float(sa)), tf.int64)  # q - zero_point; zero points cancel in the sum
    qb = tf.cast(tf.round(b / float(sb)), tf.int64)
    acc = qa * am + qb * bm + 2 ** (shift - 1)
    lo, hi = clamp_range(out, activation)
    q = tf.clip_by_value(tf.cast(acc // 2 ** shift, tf.float32), lo, hi)
    y_float = a - b if subtract else a + b
    return ste(y_float, q * float(so))
