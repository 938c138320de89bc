"""The integer arithmetic TFLite's quantized kernels share (gemmlowp fixed point,
``kernels/internal/common.h``, ``quantization_util.cc``), once, for conv/FC/LSTM/SVDF/elementwise.

* :func:`quantize_multiplier`: ``QuantizeMultiplier``: ``m ~= q * 2**(shift - 31)`` with ``|q|`` in
  [2**30, 2**31), ``q = round(frac(m) * 2**31)`` rounded half away from zero (``TfLiteRound``), a
  multiplier under 2**-31 flushed to (0, 0), one of 2**30 or more saturated to (±(2**31 - 1), 30).
* :func:`rounding_divide_by_pot`: gemmlowp's ``RoundingDivideByPOT`` (round half away from zero).
* :func:`rounding_divide_by_pot_np` / :func:`mbqm_np`: the same on int64 numpy arrays (per-code
  tables built at graph-construction time).
* :func:`mbqm_double` / :func:`mbqm`: ``MultiplyByQuantizedMultiplier`` as this interpreter builds
  it (double rounding: ``SaturatingRoundingDoublingHighMul`` then a rounding right shift), on int64
  tensors holding int32 values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._tf import tf


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier(m)``: ``(q, shift)`` (see the module docstring)."""
    if m == 0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = int(math.floor(abs(frac) * 2.0 ** 31 + 0.5)) * (1 if frac >= 0 else -1)
    if abs(q) == 2 ** 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:  # a multiplier of 2**30 or more (absurd scales): saturate as quantization_util.cc does
        return (2 ** 31 - 1) * (1 if frac >= 0 else -1), 30
    return q, shift


def rounding_divide_by_pot(x: Any, e: int) -> Any:
    """gemmlowp::RoundingDivideByPOT on int64 tensors."""
    if e <= 0:
        return x
    mask = (1 << e) - 1
    threshold = (mask >> 1) + tf.cast(x < 0, tf.int64)
    return tf.bitwise.right_shift(x, e) + tf.cast(tf.bitwise.bitwise_and(x, mask) > threshold, tf.int64)


def mbqm_double(x: Any, q: int, shift: int) -> Any:
    """TFLite's int32 ``MultiplyByQuantizedMultiplier(x, q, shift)`` with double rounding (see the
    module docstring), on int64 tensors holding int32 values."""
    ab = x * (2 ** max(shift, 0)) * q
    hi = tf.truncatediv(ab + tf.where(ab >= 0, tf.constant(2 ** 30, tf.int64), 1 - 2 ** 30), 2 ** 31)
    return rounding_divide_by_pot(hi, max(-shift, 0))


def mbqm(x: Any, m: float) -> Any:
    """``MultiplyByQuantizedMultiplier(x, QuantizeMultiplier(m))`` with double rounding."""
    return mbqm_double(x, *quantize_multiplier(m))


def rounding_divide_by_pot_np(x: np.ndarray, e: int) -> np.ndarray:
    """gemmlowp::RoundingDivideByPOT on int64 numpy values (``e <= 0``: unchanged)."""
    if e <= 0:
        return x
    mask = (1 << e) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + ((x & mask) > threshold)


def mbqm_np(v: np.ndarray, real: float) -> np.ndarray:
    """int32 ``MultiplyByQuantizedMultiplier(v, QuantizeMultiplier(real))`` with double rounding on
    int64 numpy values (the left shift saturates to int32 first, as the kernels' int32 does); exact
    integer arithmetic throughout."""
    mult, shift = quantize_multiplier(real)
    v = np.asarray(v, dtype=np.int64)
    if shift > 0:
        v = np.clip(v << shift, -(1 << 31), (1 << 31) - 1)
    ab = v * mult
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    h = np.sign(nudged) * (np.abs(nudged) // (1 << 31))  # C++ division truncates toward zero
    return rounding_divide_by_pot_np(h, -shift) if shift < 0 else h
