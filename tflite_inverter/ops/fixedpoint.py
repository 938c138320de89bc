"""The integer arithmetic TFLite's quantized kernels share (gemmlowp fixed point,
``kernels/internal/common.h``, ``quantization_util.cc``), once, for conv/FC/LSTM/SVDF/elementwise.

* :func:`quantize_multiplier`: ``QuantizeMultiplier``: ``m ~= q * 2**(shift - 31)`` with ``|q|`` in
  [2**30, 2**31), ``q = round(frac(m) * 2**31)`` rounded half away from zero (``TfLiteRound``), a
  multiplier under 2**-31 flushed to (0, 0), one of 2**30 or more saturated to (±(2**31 - 1), 30).
* :func:`rounding_divide_by_pot`: gemmlowp's ``RoundingDivideByPOT`` (round half away from zero);
  :func:`rounding_divide_by_pot_t` by a per-element tensor exponent; :func:`srdhm`:
  ``SaturatingRoundingDoublingHighMul`` on int32 values (:func:`srdhm16` on int16).
* :func:`rounding_divide_by_pot_np` / :func:`mbqm_np`: the same on int64 numpy arrays (per-code
  tables built at graph-construction time).
* :func:`mbqm_double` / :func:`mbqm`: ``MultiplyByQuantizedMultiplier`` as this interpreter builds
  it (double rounding: ``SaturatingRoundingDoublingHighMul`` then a rounding right shift), on int64
  tensors holding int32 values.
* :func:`q15_table`: gemmlowp's int16 fixed-point ``logistic`` / ``tanh`` over every int16 code (the
  integer LSTM's gates; int16 LOGISTIC/TANH with a power-of-two input scale), with its int16 helpers
  (``SaturatingRoundingDoublingHighMul``, ``SaturatingRoundingMultiplyByPOT``, exp on [-1/4, 0),
  Newton-Raphson reciprocal).
"""

from __future__ import annotations

import functools
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


#: The int32 range the kernels saturate to.
I32_MIN, I32_MAX = -(2 ** 31), 2 ** 31 - 1


def srdhm(a: Any, b: Any) -> Any:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int64 tensors holding int32 values."""
    ab = a * b
    hi = tf.truncatediv(ab + tf.where(ab >= 0, tf.constant(2 ** 30, tf.int64), tf.constant(1 - 2 ** 30, tf.int64)),
                        tf.constant(2 ** 31, tf.int64))
    return tf.where((a == I32_MIN) & (b == I32_MIN), tf.constant(I32_MAX, tf.int64), hi)


def rounding_divide_by_pot_t(x: Any, e: Any) -> Any:
    """gemmlowp ``RoundingDivideByPOT`` by a per-element int64 tensor exponent ``e >= 0``."""
    mask = tf.bitwise.left_shift(tf.ones_like(x), e) - 1
    threshold = tf.bitwise.right_shift(mask, 1) + tf.cast(x < 0, tf.int64)
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


# -- gemmlowp int16 fixed point: logistic and tanh ------------------------------------------------------
# (fixedpoint.h / fixedpoint_sse.h; the functions TFLite's integer LSTM applies to its Q3.12 gates and
# int16 cell state, and the int16 LOGISTIC/TANH kernels to a power-of-two input scale), evaluated once in
# numpy over all 65536 inputs and used as tables.
def _wrap16(x: np.ndarray) -> np.ndarray:
    return ((x + 32768) & 0xFFFF) - 32768


def srdhm16(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16 values in int64 numpy arrays."""
    b = np.broadcast_to(np.asarray(b, dtype=np.int64), np.shape(a))
    ab = a * b
    v = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    q = np.sign(v) * (np.abs(v) // (1 << 15))  # C++ division truncates toward zero
    return np.where((a == b) & (a == -32768), 32767, _wrap16(q))


def _sat_pot16(x: np.ndarray, e: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<e> for int16."""
    if e == 0:
        return x
    if e < 0:
        return rounding_divide_by_pot_np(x, -e)
    threshold = (1 << (15 - e)) - 1
    return np.where(x > threshold, 32767, np.where(x < -threshold, -32768, _wrap16(x << e)))


def _c16(v: int) -> int:
    """RescaleConstantInitializer: an int32 fixed-point constant rounded to int16."""
    return int(rounding_divide_by_pot_np(np.asarray(v, dtype=np.int64), 16))


def _exp_quarter(a: np.ndarray) -> np.ndarray:
    """exp(x) for x in [-1/4, 0), Q0.15 in and out."""
    const, third = _c16(1895147668), _c16(715827883)
    x = _wrap16(a + (1 << 12))
    x2 = srdhm16(x, x)
    x3 = srdhm16(x2, x)
    x4 = srdhm16(x2, x2)
    t = _sat_pot16(_wrap16(srdhm16(_wrap16(_sat_pot16(x4, -2) + x3), third) + x2), -1)
    return np.clip(const + srdhm16(np.full_like(a, const), _wrap16(x + t)), -32768, 32767)


def _exp_negative(a: np.ndarray, ibits: int) -> np.ndarray:
    """exp(x) for x <= 0 given in Q(ibits).(15 - ibits); result Q0.15."""
    frac = 15 - ibits
    quarter = 1 << (frac - 2)
    a_mod = _wrap16((a & (quarter - 1)) - quarter)
    result = _exp_quarter(_sat_pot16(a_mod, ibits))
    remainder = _wrap16(a_mod - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
                           (3, 720401), (4, 242)):
        if ibits > exponent:
            bit = (remainder & (1 << (frac + exponent))) != 0
            result = np.where(bit, srdhm16(result, _c16(mult)), result)
    if ibits > 5:
        result = np.where(a < _c16(-(1 << (36 - ibits))), 0, result)
    return np.where(a == 0, 32767, result)


def _newton(a: np.ndarray) -> np.ndarray:
    """The Newton-Raphson reciprocal of (1 + a) / 2 in Q2.13 (a in Q0.15)."""
    s = a + 32767  # RoundingHalfSum(a, One): (sum + sign(sum)) / 2, truncated toward zero
    v = s + np.where(s >= 0, 1, -1)
    half_den = _wrap16(np.sign(v) * (np.abs(v) // 2))
    x = _wrap16(_c16(1515870810) + srdhm16(half_den, _c16(-1010580540)))
    for _ in range(3):
        one_minus = _wrap16((1 << 13) - srdhm16(half_den, x))
        x = _wrap16(x + _sat_pot16(srdhm16(x, one_minus), 2))
    return x


def _gemmlowp_logistic(a: np.ndarray, ibits: int) -> np.ndarray:
    pos = a > 0
    abs_a = np.where(pos, a, _wrap16(-a))
    r = _sat_pot16(_newton(_exp_negative(_wrap16(-abs_a), ibits)), 1)  # Rescale<0>(ExactMulByPot<-1>(x))
    return np.where(a == 0, _c16(1 << 30), np.where(pos, r, _wrap16(32767 - r)))


def _gemmlowp_tanh(a: np.ndarray, ibits: int) -> np.ndarray:
    neg = a < 0
    n = np.where(neg, a, _wrap16(-a))
    t = _sat_pot16(_wrap16(_newton(_exp_negative(n, ibits + 1)) - (1 << 13)), 2)
    return np.where(a == 0, 0, np.where(neg, _wrap16(-t), t))


@functools.cache
def q15_table(fn: str, ibits: int) -> np.ndarray:
    """gemmlowp's int16 ``logistic`` or ``tanh`` (``fn``) of every int16 code read as Q(ibits).(15 - ibits),
    indexed by code + 32768; Q0.15 results as float64."""
    raw = np.arange(-32768, 32768, dtype=np.int64)
    out = _gemmlowp_logistic(raw, ibits) if fn == "logistic" else _gemmlowp_tanh(raw, ibits)
    return out.astype(np.float64)
