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


def _doubling_high_mul(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """The rounding high half of ``2 a b`` for ``bits``-wide integers held in int64 numpy arrays
    (gemmlowp's nudge ``+-2**(bits-2)``, then a division by ``2**(bits-1)`` truncating toward zero as
    C++ does); the callers add the one saturating case."""
    ab = np.asarray(a, np.int64) * np.asarray(b, np.int64)
    nudged = ab + np.where(ab >= 0, 1 << (bits - 2), 1 - (1 << (bits - 2)))
    return np.sign(nudged) * (np.abs(nudged) // (1 << (bits - 1)))


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
    h = srdhm_np(v, mult)  # mult < 2**31: never the saturating INT32_MIN * INT32_MIN case
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
    return np.where((a == b) & (a == -32768), 32767, _wrap16(_doubling_high_mul(a, b, 16)))


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


# -- int32 reciprocal and quantized DIV -------------------------------------------------------------------
def srdhm_np(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int64 numpy arrays holding int32 values."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return np.where((a == I32_MIN) & (b == I32_MIN), I32_MAX, _doubling_high_mul(a, b, 32))


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def count_leading_sign_bits_np(x: np.ndarray) -> np.ndarray:
    """``CountLeadingSignBits`` (``kernels/internal/common.h``; GCC's ``__builtin_clrsb``) of int32
    values: the redundant sign bits, ``clz(x) - 1`` for ``x >= 0`` (31 for 0), ``clz(2|x| - 1)`` for
    negative ``x`` (0 for INT32_MIN)."""
    x = np.asarray(x, np.int64)
    mag = np.where(x >= 0, x, np.maximum(2 * np.abs(x) - 1, 0))
    bits = np.zeros_like(mag)
    for k in range(33):  # bit length, exactly
        bits = np.where(mag >= (np.int64(1) << k), k + 1, bits)
    return np.where(x == I32_MIN, 0, 32 - bits - 1 + (x < 0))


def get_reciprocal_np(x: np.ndarray, integer_digits: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """``GetReciprocal(x, integer_digits, &shift)`` (``kernels/internal/common.h``) of positive int32
    values: ``x`` normalised to [1, 2) (``x << clz(x)``), gemmlowp ``one_over_one_plus_x_for_x_in_0_1``
    of its fraction (three Newton-Raphson steps in Q2.29 from ``48/17 - 32/17 d``), as a Q0.31 raw
    value, and ``shift = integer_digits - clz(x)``."""
    x = np.asarray(x, np.int64)
    clz = count_leading_sign_bits_np(x) + 1  # x > 0: leading zeros
    a = _wrap32((x << clz) - (1 << 31))
    s = a + I32_MAX  # RoundingHalfSum(a, F0::One())
    half = np.where(s >= 0, s + 1, s - 1)
    half = np.sign(half) * (np.abs(half) // 2)
    v = _wrap32(1515870810 + srdhm_np(half, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - srdhm_np(half, v))
        v = _wrap32(v + np.clip(srdhm_np(v, one_minus) * 4, I32_MIN, I32_MAX))  # Rescale<2>: saturating x4
    return np.clip(v * 2, I32_MIN, I32_MAX), integer_digits - clz  # ExactMulByPot<-1>, Rescale<0>


def rounding_divide_by_pot_x86(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT`` on int32 values by per-element exponents ``e >= 0`` as the
    x86 build evaluates it past 31 (undefined in C++): the mask is ``(1ll << e) - 1`` (64-bit)
    truncated to int32, and the int32 arithmetic right shift takes ``e`` modulo 32. At ``e = 32`` the
    mask is -1, the threshold -1, so a zero or positive ``x`` gains 1 (measured: 0 / q -> 1 LSB)."""
    x, e = np.asarray(x, np.int64), np.asarray(e, np.int64)
    mask = _wrap32((np.int64(1) << (e & 63)) - 1)
    threshold = (mask >> 1) + (x < 0)
    return (x >> (e & 31)) + (_wrap32(x & mask) > threshold)


def quantized_div_np(q1: np.ndarray, q2: np.ndarray, zp1: int, zp2: int, zp_out: int, mult: int, shift: int,
                     lo: int, hi: int) -> np.ndarray:
    """``reference_ops::DivElementwise`` (``kernels/internal/reference/div.h``) on integer codes."""
    v1 = np.asarray(q1, np.int64) - zp1
    v2 = np.asarray(q2, np.int64) - zp2
    neg = v2 < 0
    v1, v2 = np.where(neg, -v1, v1), np.where(neg, -v2, v2)
    inv, recip_shift = get_reciprocal_np(np.maximum(v2, 1))
    headroom = count_leading_sign_bits_np(v1)
    unscaled = srdhm_np(_wrap32(v1 << headroom), inv)
    total = shift - recip_shift - headroom
    out = zp_out + rounding_divide_by_pot_x86(srdhm_np(unscaled, mult), -total)
    return np.clip(out, lo, hi)


def rounding_divide_by_pot_x86_t(x: Any, e: Any) -> Any:
    """:func:`rounding_divide_by_pot_x86` on int64 tensors holding int32 values (``e >= 0``)."""
    def wrap(v: Any) -> Any:
        return tf.bitwise.bitwise_and(v + 2 ** 31, 0xFFFFFFFF) - 2 ** 31

    mask = wrap(tf.bitwise.left_shift(tf.ones_like(x), tf.bitwise.bitwise_and(e, 63)) - 1)
    threshold = tf.bitwise.right_shift(mask, 1) + tf.cast(x < 0, tf.int64)
    return (tf.bitwise.right_shift(x, tf.bitwise.bitwise_and(e, 31))
            + tf.cast(wrap(tf.bitwise.bitwise_and(x, mask)) > threshold, tf.int64))
