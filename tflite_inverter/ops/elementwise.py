"""Element-wise math, comparison, logical and activation ops.

Broadcasting follows numpy rules in both TFLite and TensorFlow, so binary ops map one to one. Each
TensorFlow form below is the one the TFLite converter turns back into the same single builtin (checked
by the tests), e.g. ``tf.truncatediv`` -> DIV on integers, ``relu(x) + (-alpha) * relu(-x)`` -> PRELU,
``x * relu6(x + 3) / 6`` -> HARD_SWISH.

Quantized tensors arrive as real values (see :mod:`..rebuild`), so every rebuilder computes the float
semantics and the builder rounds the output onto its integer grid.

Faithful int16 ADD/SUB (16x8) run the builtin kernel (XNNPACK takes no int16): ``pot_scale_int16``
with power-of-two scales selects its power-of-two path (:func:`_add_int16_pot`), anything else its
general path (``left_shift`` 15, int32 double rounding, :func:`_add_int16_general`); both exact.

Faithful int16 EXP, LOG, RSQRT and GELU (zero points 0) run the builtin kernels' 513-entry
``LUTPopulate<int16_t>`` table (float transform; RSQRT/LOG saturate at and below zero; GELU the erfc
form or the tanh form) read through the interpolating ``LUTLookup``: one output code per input code
(:func:`int16_lut_codes`), exact on every code. XNNPACK takes none of them for int16.
Faithful int16 LOGISTIC / TANH (non-power-of-two input scale) run ``reference_integer_ops``' 256-entry
sigmoid-table interpolation (:func:`int16_sigmoid_codes`) over the kernel's own table, measured from the
interpreter (``int16_sigmoid_table.json``, by benchmarks/probe_sigmoid_table.py): exact on every code.

Exception, faithful mode: 8-bit HARD_SWISH (int8 and uint8) is not XNNPACK's in the default interpreter
(its delegate takes HARD_SWISH for float32 only; measured: the builtin's integers match the default
interpreter's on every input code), so the builtin ``HardSwish`` kernel counts -- reference_ops and
optimized_ops compute the same integers: input codes scaled by 2**7 onto a "hires" int16 scale, a
rounding int16 doubling-high-mul into output scale and one into a "reluish" [-1, 1] int16 value
(3/32768 scale), their non-rounding doubling-high-mul, then a rounding shift. That maps each of the
256 input codes to one output code; the rebuild looks it up (:func:`hard_swish_table`, the float form
carries the gradient). The float form rounded onto the grid is off by 1 LSB on ~1.5 % of codes.

Faithful RELU / RELU6 / RELU_N1_TO_1 (int8, uint8, int16) whose input and output scales differ run the builtin
``ReluX`` (XNNPACK leaves them; its clamp needs equal quantization): ``zp_out +
MultiplyByQuantizedMultiplier(q - zp_in)`` in the double-rounding form (rounding doubling high-mul,
then a rounding shift) with the multiplier of the float32 quotient ``s_in / s_out``, clamped to the
activation range; also one table lookup per code (:func:`relu_table`). Equal scales: the float form
is already exact. Faithful ABS int8/int16 (builtin AbsEval; XNNPACK takes float ABS only) is the same
requantization of ``|q - zp_in|``; the float form rounded onto the grid is 1 LSB off on ties.
Faithful int16 LEAKY_RELU runs the builtin ``QuantizeLeakyRelu`` (:func:`leaky_relu_table`: one
multiplier per sign of ``q - zp_in``, double rounding). 8-bit LEAKY_RELU is XNNPACK's in the default
interpreter (measured: its codes differ from the builtin's): its vlrelu rounds ``256 * s_in / s_out``
and ``256 * alpha * s_in / s_out`` (float32) to integers ``M`` and computes ``zp_out + ((q * M + 128)
>> 8)``. Outside XNNPACK's ratio range ([2**-8, 2**7], the negative one by magnitude) the table
follows the builtin form; that boundary is taken from XNNPACK's operator check, not measured.
Faithful PRELU int8/uint8 and 16x8 (int16 input/output, int8 alpha) runs the builtin kernel
(:func:`_exact_prelu`; XNNPACK leaves quantized PRELU). The int16 kernel reads alpha as int8 and
does not check its type: an int16 alpha tensor is outside its contract (it reads the int16 buffer
byte by byte); the rebuild keeps the float form there.

Quantized FLOOR_DIV / FLOOR_MOD (int8, int16; ``kernels/floor_div.cc`` / ``floor_mod.cc``, no XNNPACK
path) ignore the quantization entirely: Prepare requires equal input types (float32, int32, int8,
int16; uint8 is refused with "Type 'UINT8' is not supported"), Eval first fails with "Division by 0"
on any zero divisor code, then applies ``FloorDiv<T>`` = ``std::floor(double(a) / double(b))``
converted to ``T`` / ``reference_ops::FloorMod<T>`` (C++ ``%`` moved onto the divisor's sign) to the
stored codes (``BinaryFunction``, or ``BroadcastBinaryFunction4DSlow`` when broadcasting), and stores
the result code unchanged: read back with the output's scale and zero point. Both modes rebuild that
on the codes (:func:`_floor_codes`; recovering a code from its on-grid real value is exact). A
constant zero divisor code or per-channel parameters are refused in the check; a zero divisor code
known only at run time, and ``INT_MIN // -1`` (``double -> T`` out of range: undefined in C++), fail
a ``tf.debugging`` assertion naming the op instead of producing a silent value (measured: this
runtime stores -128 for int8 ``-128 // -1``, i.e. wraps; C++ leaves it undefined). The upstream
sources indexed here predate the int8/int16 cases (their Prepare lists float32/int32[/int64]); the
int8/int16 behaviour above is that of the installed ai_edge_litert, measured by
tests/test_int_kernels_raw.py (zero divisor codes fail for int8 and int16 in both ops).

Faithful int8 SQUARED_DIFFERENCE runs the builtin kernel's fixed point (:func:`squared_difference`);
the float form rounded onto the grid is 1 LSB off on exact ties.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph
from . import integer_kernels
from .common import check_activation, integer_range, raw_codes, round_half_away
from .context import OpContext, is_real_quantized
from .fixedpoint import (
    count_leading_sign_bits_np,
    get_reciprocal_np,
    mbqm,
    mbqm_double,
    mbqm_np,
    q15_table,
    quantize_multiplier,
    rounding_divide_by_pot,
    rounding_divide_by_pot_np,
    rounding_divide_by_pot_x86_t,
    srdhm,
    srdhm16,
)
from .registry import register


def _act_check(op: Operator, sg: Subgraph) -> list[str]:
    return check_activation(op.options)


def _is_real_quantized(t: Any) -> bool:

    return t is not None and is_real_quantized(t)


def _to_codes(x: Any, t: Any) -> Any:
    """Real values of per-tensor quantized ``t`` -> its integer codes (as float32)."""
    q = t.quantization
    return round_half_away(x / float(q.scale[0])) + float(q.zero_point[0])


def _from_codes(codes: Any, t: Any) -> Any:
    """Integer codes (float32) of per-tensor quantized ``t`` -> real values."""
    q = t.quantization
    return (codes - float(q.zero_point[0])) * float(q.scale[0])


def _per_tensor_check(op: Operator, sg: Subgraph) -> list[str]:
    """Ops that work on raw integer codes need one scale per tensor."""
    problems = []
    for kind, idx in (("input", op.inputs[:1]), ("output", op.outputs[:1])):
        for i in idx:
            if i >= 0 and sg.tensors[i].is_quantized and sg.tensors[i].quantization.per_channel:
                problems.append(f"per-channel quantized {kind}")
    return problems


# -- binary arithmetic with a fused activation ----------------------------------------------------
def _integer_add(ctx: OpContext, subtract: bool) -> Any | None:
    """Faithful mode, 8-bit per-tensor operands: the interpreter's exact integer ADD/SUB (a float add
    followed by rounding differs by one LSB now and then, and deep residual nets amplify that)."""
    a_t, b_t, y_t = ctx.in_tensor(0), ctx.in_tensor(1), ctx.out_tensor(0)
    act = ctx.options.get("fused_activation_function", "NONE")
    if (ctx.builder.options.fake_quant and act in integer_kernels.CLAMP_ACTIVATIONS
            and all(integer_kernels.is_q8(t, per_tensor=True) for t in (a_t, b_t, y_t))
            and all(2.0 ** -10 <= t.quantization.scale[0] / y_t.quantization.scale[0] < 2.0 ** 8 for t in (a_t, b_t))):
        # XNNPACK takes the op only for input/output scale ratios in [2^-10, 2^8); outside that range
        # (e.g. dead tensors with scales near 1e-35) the interpreter runs the built-in kernel.
        return integer_kernels.add_integer(ctx.input(0), ctx.input(1), a_t, b_t, y_t, act, subtract=subtract)
    if (ctx.builder.options.fake_quant and act in integer_kernels.CLAMP_ACTIVATIONS
            and all(integer_kernels.is_q16(t) for t in (a_t, b_t, y_t))
            and all(float(t.quantization.scale[0]) > 0 for t in (a_t, b_t, y_t))):
        if not (ctx.options.get("pot_scale_int16", True) and all(_pot_scale(t) for t in (a_t, b_t, y_t))):
            return _add_int16_general(ctx.input(0), ctx.input(1), a_t, b_t, y_t, act, subtract)
        if list(a_t.shape) == list(b_t.shape):  # the pot kernel reads both operands flat (no broadcasting)
            return _add_int16_pot(ctx.input(0), ctx.input(1), a_t, b_t, y_t, act, subtract)
    return None


def _pot_scale(t: Any) -> bool:
    """The kernels' ``CheckedLog2``: the scale's log2 is within 1e-3 of an integer."""
    s = float(t.quantization.scale[0])
    return s > 0 and abs(np.log2(s) - np.round(np.log2(s))) < 1e-3


def _add_int16_pot(a: Any, b: Any, a_t: Any, b_t: Any, y_t: Any, act: str, subtract: bool) -> Any:
    """The builtin int16 ADD/SUB, power-of-two path (``pot_scale_int16`` set and every scale a power of
    two; the kernel requires one input's scale to equal the output's, the other's to be smaller): the
    other input's code is divided by ``2**k`` with gemmlowp's ``RoundingDivideByPOT`` (ties away from
    zero), the two codes are added (subtracted) with int16 saturation, then clamped to the activation."""
    sa, sb, so = (float(np.float32(t.quantization.scale[0])) for t in (a_t, b_t, y_t))
    qa = tf.cast(tf.round(a / sa), tf.int64)
    qb = tf.cast(tf.round(b / sb), tf.int64)
    ka, kb = (int(np.round(np.log2(so))) - int(np.round(np.log2(s))) for s in (sa, sb))  # right shifts
    qa, qb = rounding_divide_by_pot(qa, ka), rounding_divide_by_pot(qb, kb)
    raw = tf.clip_by_value(qa - qb if subtract else qa + qb, -32768, 32767)
    lo, hi = integer_kernels.clamp_range(y_t, act)
    q = tf.clip_by_value(tf.cast(raw, tf.float32), lo, hi)
    return integer_kernels.ste(a - b if subtract else a + b, q * so)


def _add_int16_general(a: Any, b: Any, a_t: Any, b_t: Any, y_t: Any, act: str, subtract: bool) -> Any:
    """The builtin int16 ADD/SUB, general-scale path (``add.cc`` / ``sub.cc`` with ``left_shift`` 15;
    XNNPACK does not take int16): with ``t = 2 * max(s_a, s_b)`` (double of the float32 scales), each
    code ``q << 15`` is rescaled by ``MultiplyByQuantizedMultiplierSmallerThanOneExp`` with multiplier
    ``s / t``, the two are added (subtracted), and the sum is rescaled by ``t / (2**15 * s_y)``, then
    clamped to the activation range. Every step is int32 double rounding (:func:`.fixedpoint.mbqm_double`).
    """
    sa, sb, so = (float(np.float32(t.quantization.scale[0])) for t in (a_t, b_t, y_t))
    twice = 2.0 * max(sa, sb)
    qa = tf.cast(tf.round(a / sa), tf.int64) * 2 ** 15
    qb = tf.cast(tf.round(b / sb), tf.int64) * 2 ** 15
    sa_ = mbqm_double(qa, *quantize_multiplier(sa / twice))
    sb_ = mbqm_double(qb, *quantize_multiplier(sb / twice))
    raw = sa_ - sb_ if subtract else sa_ + sb_
    q = mbqm_double(raw, *quantize_multiplier(twice / (2 ** 15 * so)))
    lo, hi = integer_kernels.clamp_range(y_t, act)
    q = tf.clip_by_value(tf.cast(q, tf.float32), lo, hi)
    return integer_kernels.ste(a - b if subtract else a + b, q * so)


@register("ADD", check=_act_check)
def add(ctx: OpContext) -> list[Any]:
    exact = _integer_add(ctx, subtract=False)
    return [exact if exact is not None else ctx.activation(tf.add(ctx.input(0), ctx.input(1)))]


@register("SUB", check=_act_check)
def sub(ctx: OpContext) -> list[Any]:
    exact = _integer_add(ctx, subtract=True)
    return [exact if exact is not None else ctx.activation(tf.subtract(ctx.input(0), ctx.input(1)))]


def _integer_mul(ctx: OpContext) -> Any | None:
    """Faithful mode, per-tensor quantized operands: the interpreter's exact integer MUL.

    The product ``(qa - za) * (qb - zb)`` is an exact integer. 8-bit: the default interpreter hands
    MUL to XNNPACK when ``float32(float32(s_a * s_b) / s_y)`` lies in [2**-16, 2**8) (its delegate's
    range check), which requantizes in float32 and rounds half to even (:func:`.integer_kernels.requantize`);
    outside it, and for int16, the builtin kernel's ``MultiplyByQuantizedMultiplier`` with the
    multiplier of ``s_a * s_b / s_y`` (:func:`.integer_kernels.requantize_fixed`, int32 form). Not
    reproduced: int16 operands whose product, rescaled by ``s_a * s_b / s_y >= 1``, leaves int32 inside
    the kernel (it returns garbage, measured; models have ``s_y >= s_a * s_b``).
    """
    a_t, b_t, y_t = ctx.in_tensor(0), ctx.in_tensor(1), ctx.out_tensor(0)
    act = ctx.options.get("fused_activation_function", "NONE")
    if not (ctx.builder.options.fake_quant and act in integer_kernels.CLAMP_ACTIVATIONS):
        return None
    eight = all(integer_kernels.is_q8(t, per_tensor=True) for t in (a_t, b_t, y_t)) and len({t.type_name for t in
                                                                                   (a_t, b_t, y_t)}) == 1
    sixteen = all(integer_kernels.is_q16(t) for t in (a_t, b_t, y_t))
    if not (eight or sixteen):
        return None
    sa, sb = float(a_t.quantization.scale[0]), float(b_t.quantization.scale[0])
    if sa == 0 or sb == 0 or float(y_t.quantization.scale[0]) == 0:
        return None
    a, b = ctx.input(0), ctx.input(1)
    acc = tf.cast(tf.round(a / sa), tf.float64) * tf.cast(tf.round(b / sb), tf.float64)
    scale = integer_kernels.requant_scale(sa, np.float32(sb), float(y_t.quantization.scale[0]))
    if eight and 2.0 ** -16 <= float(scale) < 2.0 ** 8:
        exact = integer_kernels.requantize(acc, scale, y_t, act)
    else:
        exact = integer_kernels.requantize_fixed(acc, sa, np.array([sb]), y_t, act, wide=False)
    # The float product only carries the gradient; clamped to the output's range, or its cancellation
    # against a far larger product loses the exact value's low bits in float32.
    lo, hi = integer_kernels.clamp_range(y_t, act)
    s_y = float(y_t.quantization.scale[0])
    return integer_kernels.ste(tf.clip_by_value(a * b, lo * s_y, hi * s_y), exact)


@register("MUL", check=_act_check)
def mul(ctx: OpContext) -> list[Any]:
    exact = _integer_mul(ctx)
    return [exact if exact is not None else ctx.activation(tf.multiply(ctx.input(0), ctx.input(1)))]


def _div_check(op: Operator, sg: Subgraph) -> list[str]:
    """The quantized kernel reads one scale per tensor."""
    problems = check_activation(op.options)
    ts = [sg.tensors[i] for i in (*op.inputs[:2], op.outputs[0])]
    if not all(t.is_quantized and t.type_name in ("INT8", "UINT8", "INT16") for t in ts):
        return problems
    if any(t.quantization.per_channel for t in ts):
        return [*problems, "quantized DIV with per-channel scales: the kernel reads one scale per tensor"]
    return problems


def _div_multiplier(a_t: Any, b_t: Any, y_t: Any) -> tuple[int, int]:
    """``div.cc`` Prepare: ``QuantizeMultiplier(s1 / (s2 * s_out))``, the quotient in float32 (the
    params' scales are ``float``) widened to double."""
    s1, s2, so = (np.float32(t.quantization.scale[0]) for t in (a_t, b_t, y_t))
    return quantize_multiplier(float(np.float32(s1 / np.float32(s2 * so))))


def _integer_div(ctx: OpContext) -> Any | None:
    """Faithful mode, int8/uint8/int16 per-tensor: ``reference_ops::DivElementwise`` /
    ``BroadcastDivSlowQuantized`` (``kernels/internal/reference/div.h``; the default interpreter's
    optimized 8-bit kernel computes the same integers, measured; XNNPACK takes no quantized DIV).

    With ``v1 = q1 - z1``, ``v2 = q2 - z2`` (both negated when ``v2 < 0``): ``GetReciprocal(v2, 31)``
    (a Q0.31 Newton-Raphson reciprocal of ``v2`` normalised to [1, 2) and ``recip_shift = 31 -
    clz(v2)``), ``headroom = CountLeadingSignBits(v1)``, ``u = SRDHM(v1 << headroom, inv)``, then
    ``z_out + RoundingDivideByPOT(SRDHM(u, M), recip_shift + headroom - shift)`` clamped. ``v1 = 0``
    has headroom 31, so the exponent can reach 32 and more, and a multiplier ``s1 / (s2 s_out)`` of
    2**15 or more makes it negative for large ``|v1|``: both undefined in C++ (gemmlowp asserts
    [0, 31]); the x86 build's ``(1ll << e) - 1`` mask (count modulo 64) and int32 arithmetic shift
    (count modulo 32) are reproduced (:func:`.fixedpoint.rounding_divide_by_pot_x86`; measured on
    both sides of the range). So ``0 / v2`` comes out as ``z_out + 1`` when the exponent is exactly 32
    (the 128-LSB elements of the 8-bit output-scale-x3 probe case were such zeros, and negative
    ``v1`` whose headroom the earlier float form could not see). The
    per-code parts (reciprocal and sign of every divisor code, headroom of every dividend) are tables
    built once (:func:`.fixedpoint.get_reciprocal_np`, :func:`.fixedpoint.count_leading_sign_bits_np`).
    """
    a_t, b_t, y_t = ctx.in_tensor(0), ctx.in_tensor(1), ctx.out_tensor(0)
    act = ctx.options.get("fused_activation_function", "NONE")
    ts = (a_t, b_t, y_t)
    if not (ctx.builder.options.fake_quant and act in integer_kernels.CLAMP_ACTIVATIONS
            and all(_is_real_quantized(t) and t.type_name in ("INT8", "UINT8", "INT16")
                    and not t.quantization.per_channel for t in ts)
            and len({t.type_name for t in ts}) == 1):
        return None
    mult, shift = _div_multiplier(*ts)
    if mult == 0:
        return None
    sa, sb, so = (float(t.quantization.scale[0]) for t in ts)
    lo_t, hi_t = integer_range(a_t.type_name)
    z2 = int(b_t.quantization.zero_point[0])
    codes2 = np.arange(lo_t, hi_t + 1, dtype=np.int64)
    v2 = codes2 - z2
    sign = np.where(v2 < 0, -1, 1)
    inv, rshift = get_reciprocal_np(np.maximum(np.abs(v2), 1))
    span = hi_t - lo_t + 1
    v1_all = np.arange(-span, span + 1, dtype=np.int64)
    headroom_tab = tf.constant(count_leading_sign_bits_np(v1_all), tf.int64)
    a, b = ctx.input(0), ctx.input(1)
    v1 = tf.cast(integer_kernels.to_int(a, sa), tf.int64)
    i2 = tf.cast(integer_kernels.to_int(b, sb), tf.int64) + (z2 - lo_t)
    v1 = v1 * tf.gather(tf.constant(sign, tf.int64), i2)
    headroom = tf.gather(headroom_tab, v1 + span)
    unscaled = srdhm(v1 * tf.bitwise.left_shift(tf.ones_like(v1), headroom), tf.gather(tf.constant(inv), i2))
    e = tf.gather(tf.constant(rshift), i2) + headroom - shift
    v1 = v1 + 0 * e  # broadcast to the output shape
    r = rounding_divide_by_pot_x86_t(srdhm(unscaled, tf.constant(mult, tf.int64)), e + 0 * v1)
    lo, hi = integer_kernels.clamp_range(y_t, act)
    exact = tf.cast(tf.clip_by_value(tf.cast(r, tf.float64), lo, hi), tf.float32) * so
    return integer_kernels.ste(tf.clip_by_value(a / b, lo * so, hi * so), exact)


@register("DIV", check=_div_check)
def div(ctx: OpContext) -> list[Any]:
    """Float: true division. Integer: TFLite's kernel evaluates C++ ``a / b``, which truncates toward
    zero (-7 / 2 = -3); ``tf.truncatediv`` is that, and the converter maps it back to DIV. Quantized,
    faithful: :func:`_integer_div`."""
    exact = _integer_div(ctx)
    if exact is not None:
        return [exact]
    x, y = ctx.input(0), ctx.input(1)
    fn = tf.math.truediv if x.dtype.is_floating else tf.truncatediv
    return [ctx.activation(fn(x, y))]


# -- plain unary and binary ops ---------------------------------------------------------------------
#: Unary builtins that are one TensorFlow op (lambdas: ``tf`` is resolved lazily, at build time).
_UNARY: dict[str, Callable[[Any], Any]] = {
    "ABS": lambda x: tf.abs(x),
    "CEIL": lambda x: tf.math.ceil(x),
    "COS": lambda x: tf.cos(x),
    "EXP": lambda x: tf.exp(x),
    "FLOOR": lambda x: tf.floor(x),
    "LOG": lambda x: tf.math.log(x),
    "ROUND": lambda x: tf.round(x),  # both round half to even (TFLite's RoundToNearest)
    "RSQRT": lambda x: tf.math.rsqrt(x),
    "SIN": lambda x: tf.sin(x),
    "SQRT": lambda x: tf.sqrt(x),
    "SQUARE": lambda x: tf.square(x),
    "SIGN": lambda x: tf.sign(x),
    "LOGICAL_NOT": lambda x: tf.logical_not(x),
    "RELU": lambda x: tf.nn.relu(x),
    "RELU6": lambda x: tf.nn.relu6(x),
    "RELU_N1_TO_1": lambda x: tf.clip_by_value(x, -1.0, 1.0),  # converter: RELU_N1_TO_1
    # No TensorFlow pattern converts back to RELU_0_TO_1; min(relu(x), 1) becomes RELU + MINIMUM.
    "RELU_0_TO_1": lambda x: tf.minimum(tf.nn.relu(x), 1.0),
    "LOGISTIC": lambda x: tf.sigmoid(x),
    "TANH": lambda x: tf.tanh(x),
    "ELU": lambda x: tf.nn.elu(x),  # TFLite: x < 0 ? expm1(x) : x
    "HARD_SWISH": lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,  # the converter fuses exactly this form
    "REAL": lambda x: tf.math.real(x),
    "IMAG": lambda x: tf.math.imag(x),
    "COMPLEX_ABS": lambda x: tf.abs(x),
}

#: Binary builtins without options that are one TensorFlow op.
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "POW": lambda a, b: tf.pow(a, b),
    "LOGICAL_AND": lambda a, b: tf.logical_and(a, b),
    "LOGICAL_OR": lambda a, b: tf.logical_or(a, b),
    "ATAN2": lambda a, b: tf.math.atan2(a, b),
    "BITWISE_XOR": lambda a, b: tf.bitwise.bitwise_xor(a, b),
    # Both clamp the shift amount to [0, bits - 1] and shift signed values arithmetically.
    "RIGHT_SHIFT": lambda a, b: tf.bitwise.right_shift(a, b),
    # The StableHLO element-wise builtins the TFLite runtime executes. TensorFlow has no op that
    # converts back to them; the equivalent builtin (ADD, MUL, ...) is what a round trip produces.
    "STABLEHLO_ADD": lambda a, b: tf.add(a, b),
    "STABLEHLO_MULTIPLY": lambda a, b: tf.multiply(a, b),
    "STABLEHLO_MAXIMUM": lambda a, b: tf.maximum(a, b),
    "STABLEHLO_MINIMUM": lambda a, b: tf.minimum(a, b),
    # Shift amounts outside [0, bits) are undefined in the TFLite kernel (x86 takes them modulo the
    # width); TensorFlow clamps them to bits - 1. In-range shifts agree.
    "STABLEHLO_SHIFT_LEFT": lambda a, b: tf.bitwise.left_shift(a, b),
}


def _make_unary(fn: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def rebuild(ctx: OpContext) -> list[Any]:
        return [fn(ctx.input(0))]

    return rebuild


def _make_binary(fn: Callable[[Any, Any], Any]) -> Callable[[Any], list[Any]]:
    def rebuild(ctx: OpContext) -> list[Any]:
        return [fn(ctx.input(0), ctx.input(1))]

    return rebuild


def _stablehlo_check(op: Operator, sg: Subgraph) -> list[str]:
    """The StableHLO element-wise kernels compute on the stored integers of quantized tensors and
    ignore their scales; a real-valued rebuild would compute something else."""
    quantized = [sg.tensors[i].name for i in (*op.inputs, *op.outputs)
                 if i >= 0 and sg.tensors[i].is_quantized and sg.tensors[i].type_name not in ("FLOAT32", "FLOAT16")]
    if quantized:
        return [f"{op.name} on quantized tensors ({', '.join(map(repr, quantized))}): the runtime computes on the "
                "stored integers and ignores the scales; not rebuilt"]
    return []


def _std_round(v: np.ndarray) -> np.ndarray:
    """``std::round`` (half away from zero) of float32 values, exactly (done in float64), as float32."""
    w = v.astype(np.float64)
    return (np.sign(w) * np.floor(np.abs(w) + 0.5)).astype(np.float32)


def int16_lut_codes(s_in: float, s_out: float, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The output code of every int16 input code (index ``q + 32768``) under TFLite's
    ``LUTPopulate<int16_t>`` (``kernels/internal/common.h`` / ``lut.h``, FloatT = float, zero points 0)
    read through ``LUTLookup``.

    Table: 512 float32 samples of ``fn`` over [``-32768 s_in``, ``32767 s_in``] (``input_min + i *
    step``, step ``(max - min) / 512``), each scaled by ``65536 / (65535 s_out)``, rounded
    (``std::round``) and lowered by half the interpolation error at its interval's midpoint, clamped
    to int16, plus the end point. ``fn`` maps float32 to float32 (the kernels' ``float`` transform).
    Lookup: entry ``256 + (q >> 7)`` plus ``(slope * (q & 127) + 64) >> 7``, int16 arithmetic.
    A NaN entry reads as -32768 (x86 converts it so).
    """
    f32 = np.float32
    s_i, s_o = f32(s_in), f32(s_out)
    i_min, i_max = s_i * f32(-32768), s_i * f32(32767)
    step = (i_max - i_min) / f32(512)
    half = step / f32(2)
    inv = f32(65536) / (s_o * f32(32767) - s_o * f32(-32768))
    i = np.arange(512, dtype=f32)
    with np.errstate(all="ignore"):
        val, mid = fn(i_min + i * step), fn(i_min + i * step + half)
        nxt = fn(i_min + (i + f32(1)) * step)
        sample = _std_round(val * inv)
        interp = _std_round((nxt * inv + sample) / f32(2))
        bias = _std_round((interp - _std_round(mid * inv)) / f32(2))
        last = _std_round(fn(np.array([i_max], f32)) * inv)
        table = np.concatenate([sample - bias, last]).astype(np.float64)
    table = np.where(np.isnan(table), -32768.0, np.clip(table, -32768.0, 32767.0)).astype(np.int64)
    q = np.arange(-32768, 32768, dtype=np.int64)
    index, offset = (q >> 7) + 256, q & 127
    base = table[index]

    def wrap(v: np.ndarray) -> np.ndarray:
        return ((v + 32768) & 0xFFFF) - 32768

    slope = wrap(table[index + 1] - base)
    return wrap(base + wrap((slope * offset + 64) >> 7))


def _f32(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A float transform computed in double and rounded once to float32 (libm's float functions are
    correctly rounded here in practice)."""
    return lambda x: fn(x.astype(np.float64)).astype(np.float32)


def _gelu_exact(x: np.ndarray) -> np.ndarray:
    """``reference_ops::GeluTransform``: ``0.5f * x * erfcf(x * -(float)M_SQRT1_2)``, float32."""
    f32 = np.float32
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return (f32(0.5) * x) * erfc((x * f32(-math.sqrt(0.5))).astype(np.float64)).astype(f32)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """``GeluTransformApproximate``: ``0.5f * x * (1 + tanhf(sqrt(2/pi)f * (x + 0.044715f x^3)))``."""
    f32 = np.float32
    inner = f32(2.0 / math.sqrt(math.pi) * math.sqrt(0.5)) * (x + f32(0.044715) * x * x * x)
    return (f32(0.5) * x) * (f32(1) + np.tanh(inner.astype(np.float64)).astype(f32))


def _int16_lut_transforms(name: str, s_out: float, options: dict) -> Callable[[np.ndarray], np.ndarray] | None:
    """The float transform each int16 LUT kernel tabulates (RSQRT/LOG saturate at and below zero)."""
    top, bottom = np.float32(32767 * np.float32(s_out)), np.float32(-32768 * np.float32(s_out))
    if name == "EXP":
        return _f32(np.exp)
    if name == "RSQRT":
        return lambda x: np.where(x <= 0, top, _f32(lambda v: 1.0 / np.sqrt(v))(np.maximum(x, 1e-30)))
    if name == "LOG":
        return lambda x: np.where(x <= 0, bottom, _f32(np.log)(np.maximum(x, 1e-30)))
    if name == "GELU":
        return _gelu_tanh if options.get("approximate", False) else _gelu_exact
    return None


def _gemmlowp_shift(s_in: float, tanh: bool) -> int | None:
    """The input left shift when the builtin int16 LOGISTIC / TANH takes its gemmlowp fixed-point path
    (a power-of-two input scale: 2**-12, and for TANH also 2**-11, measured), else None."""
    log2 = math.log2(float(np.float32(s_in)))
    if abs(log2 - round(log2)) >= 1e-3:
        return None
    shift = 12 + round(log2)
    return shift if shift == 0 or (tanh and shift == 1) else None


def int16_gemmlowp_sigmoid_codes(s_in: float, tanh: bool) -> np.ndarray | None:
    """Every int16 input code's output under the builtin int16 LOGISTIC / TANH on its gemmlowp path
    (:func:`_gemmlowp_shift`): the code shifted left (saturating) into Q3.12, then gemmlowp's
    fixed-point ``logistic`` / ``tanh`` to Q0.15 (the arithmetic of the 16-bit LSTM gates,
    :func:`.fixedpoint.q15_table`). Measured exact on every code at 2**-12 (both) and 2**-11 (TANH)."""

    shift = _gemmlowp_shift(s_in, tanh)
    if shift is None:
        return None
    q = np.arange(-32768, 32768, dtype=np.int64)
    return q15_table("tanh" if tanh else "logistic", 3)[np.clip(q << shift, -32768, 32767) + 32768]


SIGMOID_TABLE_FILE = Path(__file__).with_name("int16_sigmoid_table.json")


@lru_cache(maxsize=1)
def sigmoid_table() -> np.ndarray:
    """The 256 entries (0.16 fixed point) of the int16 LOGISTIC / TANH kernels' ``sigmoid_table_uint16``,
    as measured from the interpreter by benchmarks/probe_sigmoid_table.py (shipped with the package)."""
    table = np.asarray(json.loads(SIGMOID_TABLE_FILE.read_text())["table"], dtype=np.int64)
    if table.shape != (256,):
        raise ValueError(f"{SIGMOID_TABLE_FILE}: expected 256 entries, found {table.shape}")
    return table


def int16_sigmoid_codes(s_in: float, tanh: bool) -> np.ndarray | None:
    """Every int16 input code's output under the builtin int16 LOGISTIC / TANH for a non-power-of-two
    input scale (``activations.cc``: ``input_multiplier > 0`` selects ``reference_integer_ops``).

    Prepare: ``m = s_in * 4096 * 3`` (double), doubled while ``m <= 32767 / 2`` (at most 31 times,
    counting ``left_shift``), truncated to int. Kernel: ``v = (q * m + round) >> left_shift``; ``|v|``
    indexes the 256-entry table of ``sigmoid(i / 24)`` in 0.16 format by ``|v| >> 9`` (TANH: ``>> 8``),
    interpolating the low 9 (8) bits; saturated from index 255; mirrored for negative ``v`` and
    rounded back to Q0.15. ``None`` on the gemmlowp path (:func:`_gemmlowp_shift`).

    The table is the kernel's hard-coded ``sigmoid_table_uint16``, which no rounding of the formula
    gives (44 of its 256 entries are one above ``round(65536 sigmoid(i / 24))``): :func:`sigmoid_table` reads it
    as measured from the interpreter. Measured exact on every code (tests/test_ops_int16x8.py).
    """
    if _gemmlowp_shift(s_in, tanh) is not None:
        return None
    m, shift = float(np.float32(s_in)) * 4096.0 * 3.0, 0
    while m <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        m *= 2.0
    mult = int(m)
    table = sigmoid_table()
    q = np.arange(-32768, 32768, dtype=np.int64)
    v = (q * mult + ((1 << (shift - 1)) if shift > 0 else 0)) >> shift
    a = np.abs(v)
    bits = 8 if tanh else 9
    uh = a >> bits
    safe = np.minimum(uh, 254)
    ua, ub = table[safe], table[safe + 1]
    interp = (ua << bits) + (a & ((1 << bits) - 1)) * (ub - ua)
    if tanh:
        r = np.where(uh >= 255, 0xFFFF << 8, interp)
        r = np.where(v >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1) >> 8
    else:
        r = np.where(uh >= 255, 0x7FFF << 10, interp)
        r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1) >> 10
    return ((r + 32768) & 0xFFFF) - 32768  # stored as int16


def _int16_lut_op(ctx: OpContext, name: str) -> Any | None:
    """Faithful int16 (zero points 0) EXP / LOG / RSQRT / GELU: the builtin kernels' interpolated
    513-entry table (:func:`int16_lut_codes`), looked up per input code; ``None`` otherwise."""
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and integer_kernels.is_q16(in_t) and integer_kernels.is_q16(out_t)
            and not in_t.quantization.zero_point.any() and not out_t.quantization.zero_point.any()):
        return None
    s_in, s_out = float(in_t.quantization.scale[0]), float(out_t.quantization.scale[0])
    if s_in <= 0 or s_out <= 0:
        return None
    if name in ("LOGISTIC", "TANH"):
        table = int16_sigmoid_codes(s_in, tanh=name == "TANH")
        if table is None:
            table = int16_gemmlowp_sigmoid_codes(s_in, tanh=name == "TANH")
    else:
        fn = _int16_lut_transforms(name, s_out, ctx.options)
        table = None if fn is None else int16_lut_codes(s_in, s_out, fn)
    if table is None:
        return None
    codes = tf.constant(table.astype(np.float32))
    x = ctx.input(0)
    q = tf.cast(tf.clip_by_value(tf.round(x / s_in), -32768.0, 32767.0), tf.int32) + 32768
    y_float = _UNARY[name](x) if name in _UNARY else tf.nn.gelu(x, approximate=bool(ctx.options.get("approximate")))
    # the float form carries the gradient only; clipped to the output range so that the straight-through
    # sum ``y + (exact - y)`` stays exact in float32
    y_float = tf.where(tf.math.is_finite(y_float), y_float, tf.zeros_like(y_float))
    y_float = tf.clip_by_value(y_float, -32768.0 * s_out, 32767.0 * s_out)
    return integer_kernels.ste(y_float, tf.gather(codes, q) * float(np.float32(s_out)))


def _make_lut_unary(name: str, fn: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def rebuild(ctx: OpContext) -> list[Any]:
        exact = _int16_lut_op(ctx, name)
        return [exact if exact is not None else fn(ctx.input(0))]

    return rebuild


for _name, _fn in _UNARY.items():
    if _name in ("ABS", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1"):  # registered below with their exact integer forms
        continue
    if _name in ("EXP", "LOG", "RSQRT", "LOGISTIC", "TANH"):
        register(_name)(_make_lut_unary(_name, _fn))
        continue
    register(_name)(_make_unary(_fn))
def _codes(x: Any, t: Any) -> Any:
    """The stored integer codes (int32) of a quantized operand carried as real values."""
    scale, zp = float(np.float32(t.quantization.scale[0])), int(t.quantization.zero_point[0])
    return tf.cast(tf.round(x / scale), tf.int32) + zp


def _floor_check(op: Operator, sg: Subgraph) -> list[str]:
    """floor_div.cc / floor_mod.cc Prepare and Eval refusals that are knowable from the file."""
    ts = [sg.tensors[i] for i in (*op.inputs[:2], *op.outputs[:1]) if i >= 0]
    if not any(t.is_quantized for t in ts):
        return []
    if len(ts) < 3:
        return []
    a, b, o = ts
    if len({a.type_name, b.type_name}) != 1:
        return [f"{op.name}: input types differ ({a.type_name}, {b.type_name}); the kernel's Prepare requires "
                "equal types"]
    if a.type_name not in ("INT8", "INT16"):
        return [f"{op.name}: quantized {a.type_name} operands; the kernel supports float32, int32, int8 and "
                f"int16 only (Type '{a.type_name}' is not supported)"]
    if o.type_name != a.type_name:
        return [f"{op.name}: output type {o.type_name} differs from the input type {a.type_name} (the kernel "
                "stores the input type's codes)"]
    if not all(t.is_quantized and t.quantization.scale.size == 1 for t in ts):
        return [f"{op.name} on quantized tensors needs per-tensor parameters on both inputs and the output "
                "(the kernel computes on the stored codes; other codes are not rebuilt)"]
    if b.is_constant and np.any(np.asarray(b.data()) == 0):
        return [f"{op.name}: the constant divisor {b.name!r} holds a zero code (the kernel fails: Division by 0)"]
    return []


def _floor_codes(ctx: OpContext, mod: bool) -> Any:
    """FLOOR_DIV / FLOOR_MOD on the stored codes, read back with the output's parameters."""
    ta, tb, to = ctx.in_tensor(0), ctx.in_tensor(1), ctx.out_tensor(0)
    qa, qb = _codes(ctx.input(0), ta), _codes(ctx.input(1), tb)
    hi = integer_range(to.type_name)[1]
    checks = [tf.debugging.assert_none_equal(qb, tf.constant(0, tf.int32),
                                             message=f"{ctx.op.name} division by 0 (a zero divisor code)")]
    if mod:
        code = tf.math.floormod(qa, qb + tf.cast(tf.equal(qb, 0), tf.int32))
    else:
        code = tf.math.floordiv(qa, qb + tf.cast(tf.equal(qb, 0), tf.int32))
        checks.append(tf.debugging.assert_less_equal(
            code, tf.constant(hi, tf.int32),
            message=f"{ctx.op.name} overflow: INT_MIN // -1 does not fit {to.type_name} (undefined in the kernel)"))
    with tf.control_dependencies(checks):
        code = tf.identity(code)
    so, zo = float(np.float32(to.quantization.scale[0])), int(to.quantization.zero_point[0])
    return tf.cast(code - zo, tf.float32) * so


def _make_floor(name: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any], list[Any]]:
    def rebuild(ctx: OpContext) -> list[Any]:
        if ctx.in_tensor(0).is_quantized or ctx.out_tensor(0).is_quantized:
            return [_floor_codes(ctx, name == "FLOOR_MOD")]
        return [fn(ctx.input(0), ctx.input(1))]

    return rebuild


register("FLOOR_DIV", check=_floor_check)(_make_floor("FLOOR_DIV", lambda a, b: tf.math.floordiv(a, b)))
register("FLOOR_MOD", check=_floor_check)(_make_floor("FLOOR_MOD", lambda a, b: tf.math.floormod(a, b)))
for _name, _fn in _BINARY.items():
    register(_name, check=_stablehlo_check if _name.startswith("STABLEHLO_") else None)(_make_binary(_fn))


@register("SQUARED_DIFFERENCE")
def squared_difference(ctx: OpContext) -> list[Any]:
    """Faithful mode, int8 per-tensor (the only quantized kernel; XNNPACK does not take it): TFLite's
    ``squared_difference.cc`` in fixed point. With ``m = 2 * max(sa, sb)``: each ``(q - z) * 2**7`` is
    scaled by ``s / m`` (``MultiplyByQuantizedMultiplier``), the difference squared, scaled by
    ``m**2 / (2**14 * so)``, the output zero point added and the result clamped to int8. Its
    ``MultiplyByQuantizedMultiplierSmallerThanOneExp`` rounds twice (doubling high multiply, then a
    rounding shift) as ai_edge_litert is built: measured, single rounding is 1 LSB off."""
    a, b = ctx.input(0), ctx.input(1)
    ts = (ctx.in_tensor(0), ctx.in_tensor(1), ctx.out_tensor(0))
    if not (ctx.builder.options.fake_quant and all(integer_kernels.is_q8(t, per_tensor=True) and t.type_name == "INT8"
                                                   for t in ts)):
        return [tf.math.squared_difference(a, b)]
    sa, sb, so = (float(t.quantization.scale[0]) for t in ts)
    if sa == 0 or sb == 0 or so == 0:
        return [tf.math.squared_difference(a, b)]
    m = 2.0 * max(sa, sb)
    da = mbqm(tf.cast(integer_kernels.to_int(a, sa), tf.int64) * 128, sa / m)
    db = mbqm(tf.cast(integer_kernels.to_int(b, sb), tf.int64) * 128, sb / m)
    r = tf.cast(mbqm(tf.square(da - db), m * m / (2.0 ** 14 * so)), tf.float64)
    zo = float(ts[2].quantization.zero_point[0])
    y = tf.cast(tf.clip_by_value(r, -128.0 - zo, 127.0 - zo), tf.float32) * so
    approx = tf.clip_by_value(tf.math.squared_difference(a, b), (-128.0 - zo) * so, (127.0 - zo) * so)
    return [integer_kernels.ste(approx, y)]


def _raw_operands(ctx: OpContext) -> tuple[Any, Any]:
    """Both operands as their raw integers read with the output's parameters (:func:`.common.raw_codes`)."""
    return (raw_codes(ctx.input(0), ctx.in_tensor(0), ctx.out_tensor(0)),
            raw_codes(ctx.input(1), ctx.in_tensor(1), ctx.out_tensor(0)))


@register("MAXIMUM")
def maximum(ctx: OpContext) -> list[Any]:
    """The quantized kernels compare the raw integers of both operands and store the larger one
    unchanged (maximum_minimum.cc: no requantization), so with other output parameters the same code
    means another real value; the affine read-back keeps the order, so the maximum of the read-back
    values is the read-back of the maximum code."""
    return [tf.maximum(*_raw_operands(ctx))]


@register("MINIMUM")
def minimum(ctx: OpContext) -> list[Any]:
    """As MAXIMUM: the raw integer minimum, read with the output's parameters."""
    return [tf.minimum(*_raw_operands(ctx))]


# -- comparisons ------------------------------------------------------------------------------------------
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "EQUAL": lambda a, b: tf.equal(a, b),
    "NOT_EQUAL": lambda a, b: tf.not_equal(a, b),
    "LESS": lambda a, b: tf.less(a, b),
    "LESS_EQUAL": lambda a, b: tf.less_equal(a, b),
    "GREATER": lambda a, b: tf.greater(a, b),
    "GREATER_EQUAL": lambda a, b: tf.greater_equal(a, b),
}

#: TFLite's int8/uint8 comparison kernels rescale both inputs to ``round(real * 2**8)`` (a left shift
#: of 8 then each input's scale as a fixed-point multiplier) and compare those integers.
_COMPARE_GRID = 256.0


#: int16 comparisons the installed kernel runs through ``ComparisonWithScaling`` (as for 8-bit);
#: the others (LESS, GREATER, ...) go to ``Comparison<int16_t>`` on the stored codes (measured).
_INT16_SCALED = ("EQUAL", "NOT_EQUAL")


def _make_comparison(name: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any], list[Any]]:
    def rebuild(ctx: OpContext) -> list[Any]:
        """Quantized int8/uint8 inputs compare on TFLite's grid of 1/256 (absolute, whatever the
        scales): values closer than that can compare equal, which the real values would not.

        Quantized int16 (``comparisons.cc`` of the installed interpreter, measured against both
        hypotheses): EQUAL / NOT_EQUAL take ``reference_ops::ComparisonWithScaling`` like 8-bit,
        ``MultiplyByQuantizedMultiplierSmallerThanOneExp((q - z) << 8, QuantizeMultiplier(s))`` per
        input, compared as integers (done here in exact fixed point, :func:`.fixedpoint.mbqm`);
        LESS / LESS_EQUAL / GREATER / GREATER_EQUAL take ``Comparison<int16_t>``
        (``reference_ops::ComparisonImpl``), which compares the stored codes and ignores scales and
        zero points."""
        a, b = ctx.input(0), ctx.input(1)
        ts = (ctx.in_tensor(0), ctx.in_tensor(1))
        if all(_is_real_quantized(t) and t.type_name == "INT16" and not t.quantization.per_channel for t in ts):
            if name not in _INT16_SCALED:
                return [fn(_to_codes(a, ts[0]), _to_codes(b, ts[1]))]
            sa, sb = (float(np.float32(t.quantization.scale[0])) for t in ts)
            va = mbqm(tf.cast(integer_kernels.to_int(a, sa), tf.int64) * 256, sa)
            vb = mbqm(tf.cast(integer_kernels.to_int(b, sb), tf.int64) * 256, sb)
            return [fn(va, vb)]
        if all(_is_real_quantized(ctx.in_tensor(i)) and ctx.in_tensor(i).type_name in ("INT8", "UINT8")
               for i in (0, 1)):
            a, b = round_half_away(a * _COMPARE_GRID), round_half_away(b * _COMPARE_GRID)
        return [fn(a, b)]

    return rebuild


for _name, _fn in _COMPARISONS.items():
    register(_name)(_make_comparison(_name, _fn))


# -- ops with options or parameters ---------------------------------------------------------------
@register("ADD_N")
def add_n(ctx: OpContext) -> list[Any]:
    return [tf.add_n(ctx.inputs)]


@register("LEAKY_RELU")
def leaky_relu(ctx: OpContext) -> list[Any]:
    """TFLite: ``x > 0 ? x : alpha * x`` (the TF kernel is the same for every alpha)."""
    alpha = float(ctx.options.get("alpha", 0.0))
    x = ctx.input(0)
    y = tf.nn.leaky_relu(x, alpha=alpha)
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and (integer_kernels.is_q16(in_t) or integer_kernels.is_q8(in_t, True))
            and out_t.type_name == in_t.type_name
            and out_t.quantization.scale.size == 1):
        return [y]
    lo, hi = integer_range(in_t.type_name)
    codes = tf.clip_by_value(_to_codes(x, in_t), lo, hi)
    r = tf.gather(tf.constant(leaky_relu_table(in_t, out_t, alpha)), tf.cast(codes - lo, tf.int32))
    return [integer_kernels.ste(y, _from_codes(r, out_t))]


def _prelu_check(op: Operator, sg: Subgraph) -> list[str]:
    """The interpreter's int16 PRELU is 16x8: it reads alpha as int8 without checking its type, so an
    int16 alpha is read byte by byte (measured: outputs follow the bytes [0, 20, 0, ...] of alpha
    [5120, 10240, 15360]). Such a model has no defined result to reproduce."""
    x, alpha = sg.input_of(op, 0), sg.input_of(op, 1)
    if x is not None and alpha is not None and x.type_name == "INT16" and alpha.type_name == "INT16":
        return ["int16 input with an int16 alpha: the interpreter's 16x8 PRELU kernel reads alpha as int8 bytes "
                "(undefined result); quantize alpha as int8"]
    return []


@register("PRELU", check=_prelu_check)
def prelu(ctx: OpContext) -> list[Any]:
    """TFLite: ``x >= 0 ? x : alpha * x`` with ``alpha`` broadcast against ``x``.

    ``relu(x) + (-alpha) * relu(-x)`` is the Keras pattern the converter fuses back into PRELU (the
    ``relu(x) - alpha * relu(-x)`` spelling is not fused). It is exact in float: both products only
    flip signs. The converter only fuses it when alpha has rank ``rank(x) - 1`` (Keras' alpha shape),
    so a constant alpha is reshaped to that rank (leading 1s added or dropped: same broadcast) and
    becomes a trainable weight.
    """
    x = ctx.input(0)
    if ctx.is_const(1):
        shape = _prelu_alpha_shape(ctx.in_tensor(1).shape, len(ctx.in_tensor(0).shape))
        alpha = ctx.weight(1, (lambda a: a.reshape(shape)) if shape is not None else None,
                           "prelu" if shape is not None else "")
    else:
        alpha = ctx.input(1)
    alpha = tf.cast(alpha, x.dtype)
    y = tf.nn.relu(x) + tf.negative(alpha) * tf.nn.relu(tf.negative(x))
    exact = _exact_prelu(ctx, x, alpha, y)
    return [exact if exact is not None else y]


def _exact_prelu(ctx: OpContext, x: Any, alpha: Any, y_float: Any) -> Any | None:
    """Faithful 8-bit and 16x8 (int16 input/output, int8 alpha) PRELU: the builtin kernel (XNNPACK
    leaves quantized PRELU; measured, the default interpreter's codes are the builtin's and the
    reference kernel's): ``zp_out + MultiplyByQuantizedMultiplier(q, s_in / s_out)`` for ``q = x - zp_in
    >= 0``, else ``zp_out + MultiplyByQuantizedMultiplier(q * (a - zp_a), s_in * s_a / s_out)``
    (PreluPrepare: float products), double rounding, clamped."""

    in_t, a_t, out_t = ctx.in_tensor(0), ctx.in_tensor(1), ctx.out_tensor(0)
    ok8 = integer_kernels.is_q8(in_t, True) and a_t.type_name == in_t.type_name
    ok16 = integer_kernels.is_q16(in_t) and a_t.type_name == "INT8"
    if not (ctx.builder.options.fake_quant and (ok8 or ok16) and out_t.type_name == in_t.type_name
            and out_t.quantization.scale.size == 1 and a_t.quantization.scale.size == 1):
        return None
    s_in, s_a, s_out = (np.float32(t.quantization.scale[0]) for t in (in_t, a_t, out_t))
    q = tf.cast(_to_codes(x, in_t), tf.int64) - int(in_t.quantization.zero_point[0])
    a = tf.cast(_to_codes(alpha, a_t), tf.int64) - int(a_t.quantization.zero_point[0])
    pos = mbqm_double(q, *quantize_multiplier(float(s_in / s_out)))
    neg = mbqm_double(q * a, *quantize_multiplier(float(s_in * s_a / s_out)))
    r = tf.where(q >= 0, pos, neg) + int(out_t.quantization.zero_point[0])
    r = tf.clip_by_value(tf.cast(r, tf.float32), *integer_range(out_t.type_name))
    return integer_kernels.ste(y_float, _from_codes(r, out_t))


def _prelu_alpha_shape(alpha_shape: tuple[int, ...], x_rank: int) -> list[int] | None:
    """Alpha's shape with rank ``x_rank - 1`` and the same broadcast against x, or None if none."""
    a = list(alpha_shape)
    while len(a) > x_rank - 1 and a and a[0] == 1:
        a.pop(0)
    if x_rank < 1 or len(a) > x_rank - 1:
        return None
    return [1] * (x_rank - 1 - len(a)) + a


@register("GELU")
def gelu(ctx: OpContext) -> list[Any]:
    """``approximate`` selects the tanh form, as in TensorFlow; the converter keeps the option.
    Faithful int16: the kernel's interpolated table (:func:`_int16_lut_op`)."""
    exact = _int16_lut_op(ctx, "GELU")
    return [exact if exact is not None else tf.nn.gelu(ctx.input(0), approximate=bool(ctx.options.get("approximate", False)))]


@register("NEG", check=_per_tensor_check)
def neg(ctx: OpContext) -> list[Any]:
    """TFLite's integer NEG negates the raw codes and ignores the quantization parameters (the
    converter never emits it; hand-made int8 models do). So a quantized input is negated as codes,
    wrapping like the C++ cast (-(-128) -> -128), and the codes read with the output's parameters."""
    x, in_t, out_t = ctx.input(0), ctx.in_tensor(0), ctx.out_tensor(0)
    if not (_is_real_quantized(in_t) and _is_real_quantized(out_t)):
        return [tf.negative(x)]
    if in_t.type_name not in ("INT8", "INT16"):
        raise ctx.unsupported(f"NEG of a quantized {in_t.type_name} tensor")
    codes = tf.negative(_to_codes(x, in_t))
    span = 2.0 ** (8 * in_t.dtype.itemsize)
    codes = tf.where(codes >= span / 2, codes - span, codes)
    return [_from_codes(codes, out_t)]


@register("CAST", check=_per_tensor_check)
def cast(ctx: OpContext) -> list[Any]:
    """Convert to the output tensor's type (``CastOptions`` only repeat the tensor types; the kernel
    reads the tensors). TFLite casts raw values: a quantized input contributes its integer codes, not
    its real values, so those are recovered first, and a quantized output holds the cast codes;
    float -> int truncates toward zero in both."""
    x = ctx.input(0)
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if _is_real_quantized(in_t):
        x = _to_codes(x, in_t)
    if _is_real_quantized(out_t):
        return [_from_codes(tf.cast(tf.cast(x, out_t.dtype), tf.float32), out_t)]
    return [tf.cast(x, ctx.out_dtype(0))]


# -- HARD_SWISH 8-bit: the builtin kernel's fixed-point arithmetic as a 256-entry table ---------------
def _sat16(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -32768, 32767)


def _dhm16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's non-rounding int16 ``SaturatingDoublingHighMul``: ``(a * b) / 2**15`` truncated."""
    ab = a.astype(np.int64) * b.astype(np.int64)
    r = np.trunc(ab / (1 << 15)).astype(np.int64)
    return np.where((a == -32768) & (b == -32768), 32767, r)


def _to_int16_multiplier(m: float) -> tuple[int, int]:
    q, shift = quantize_multiplier(m)
    return min(32767, (q + (1 << 15)) >> 16), shift  # DownScaleInt32ToInt16Multiplier


def hard_swish_table(in_t: Any, out_t: Any) -> np.ndarray:
    """TFLite's 8-bit ``HardSwish`` (reference_ops and optimized_ops compute the same integers): output
    codes for every input code ``lo..hi``. Multipliers from Prepare, all from float32 scales."""
    s_in, s_out = np.float32(in_t.quantization.scale[0]), np.float32(out_t.quantization.scale[0])
    zp_in, zp_out = int(in_t.quantization.zero_point[0]), int(out_t.quantization.zero_point[0])
    hires = np.float32(1.0 / 128.0) * s_in
    out_m, out_e = _to_int16_multiplier(float(hires / s_out))
    rel_m, rel_e = _to_int16_multiplier(float(hires / np.float32(3.0 / 32768.0)))
    lo, hi = integer_range(in_t.type_name)
    v = np.arange(int(lo), int(hi) + 1, dtype=np.int64) - zp_in
    hires_v = _sat16(v * 128)
    pre_out = srdhm16(hires_v, out_m)
    rel = hires_v
    if rel_e > 0:
        rel = _sat16(rel * (1 << (rel_e - 1)))
    rel = srdhm16(rel, rel_m)
    if rel_e > 0:
        rel = _sat16(rel * 2)
    if rel_e < 0:
        rel = rounding_divide_by_pot_np(rel, -rel_e)
    rel = (rel + (1 << 15)) >> 1
    out = rounding_divide_by_pot_np(_dhm16(rel, pre_out), -out_e) + zp_out
    olo, ohi = integer_range(out_t.type_name)
    return np.clip(out, int(olo), int(ohi)).astype(np.float32)


def _exact_hard_swish(ctx: OpContext, x: Any, y_float: Any) -> Any | None:
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    if not (ctx.builder.options.fake_quant and integer_kernels.is_q8(in_t, True) and integer_kernels.is_q8(out_t, True)
            and in_t.type_name == out_t.type_name):
        return None
    lo, hi = integer_range(in_t.type_name)
    codes = tf.clip_by_value(_to_codes(x, in_t), lo, hi)
    r = tf.gather(tf.constant(hard_swish_table(in_t, out_t)), tf.cast(codes - lo, tf.int32))
    return integer_kernels.ste(y_float, _from_codes(r, out_t))


@register("HARD_SWISH")
def hard_swish(ctx: OpContext) -> list[Any]:
    """``x * relu6(x + 3) / 6``; faithful 8-bit: the kernel's integer table (:func:`hard_swish_table`)."""
    x = ctx.input(0)
    y = _UNARY["HARD_SWISH"](x)
    exact = _exact_hard_swish(ctx, x, y)
    return [exact if exact is not None else y]


# -- RELU / RELU6 requantizing (in/out scales differ): TFLite's ReluQuantized as a per-code table -----


def _xnn_lrelu_ok(pos: float, neg: float) -> bool:
    """XNNPACK's 8-bit leaky ReLU accepts scale ratios in [2**-8, 2**7] (negative: by magnitude)."""
    return 2.0 ** -8 <= pos <= 2.0 ** 7 and 2.0 ** -8 <= abs(neg) <= 2.0 ** 7


def leaky_relu_table(in_t: Any, out_t: Any, alpha: float) -> np.ndarray:
    """The builtin int16 LeakyRelu (reference_ops ``QuantizeLeakyRelu``) for every input code:
    ``zp_out + MultiplyByQuantizedMultiplier(q - zp_in, m)`` with ``m = s_in / s_out`` for
    ``q >= zp_in``, else ``m = s_in * alpha / s_out`` (LeakyReluPrepare: float products), clamped."""
    s_in, s_out = np.float32(in_t.quantization.scale[0]), np.float32(out_t.quantization.scale[0])
    zp_in, zp_out = int(in_t.quantization.zero_point[0]), int(out_t.quantization.zero_point[0])
    lo, hi = integer_range(in_t.type_name)
    v = np.arange(int(lo), int(hi) + 1, dtype=np.int64) - zp_in
    pos, neg = s_in / s_out, s_in / s_out * np.float32(alpha)
    if in_t.type_name in ("INT8", "UINT8") and _xnn_lrelu_ok(float(pos), float(neg)):
        # XNNPACK qs8/qu8-vlrelu: multipliers rounded to 1/256 (lrintf), bias zp_out*256 + 128, >> 8.
        m = np.where(v >= 0, np.rint(np.float32(256) * pos), np.rint(np.float32(256) * neg)).astype(np.int64)
        r = zp_out + ((v * m + 128) >> 8)
    else:
        r = np.where(v >= 0, mbqm_np(v, float(s_in / s_out)),
                     mbqm_np(v, float(s_in * np.float32(alpha) / s_out))) + zp_out
    return np.clip(r, *integer_range(out_t.type_name)).astype(np.float32)


def relu_table(in_t: Any, out_t: Any, lo_real: float | None, hi_real: float | None,
               magnitude: bool = False) -> np.ndarray:
    """``clamp(zp_out + MultiplyByQuantizedMultiplier(q - zp_in, s_in / s_out))`` for every input code
    (``|q - zp_in|`` with ``magnitude``: the builtin ABS kernel, same multiplier and rounding),
    the double-rounding form (a rounding doubling high-mul, then a rounding shift): measured, the
    builtin ReluX rounds 0.4 LSB up where single rounding would not. Clamped to the range
    ``CalculateActivationRangeQuantized`` gives."""
    s_in, s_out = float(in_t.quantization.scale[0]), float(out_t.quantization.scale[0])
    zp_in, zp_out = int(in_t.quantization.zero_point[0]), int(out_t.quantization.zero_point[0])
    # ReluPrepare divides the two float scales in float (then widens to double).
    lo, hi = integer_range(in_t.type_name)
    v = np.arange(int(lo), int(hi) + 1, dtype=np.int64) - zp_in
    if magnitude:
        v = np.abs(v)
    r = mbqm_np(v, float(np.float32(s_in) / np.float32(s_out))) + zp_out
    olo, ohi = integer_range(out_t.type_name)
    qs = np.float32(s_out)
    amin = olo if lo_real is None else max(olo, zp_out + int(np.round(np.float32(lo_real) / qs)))
    amax = ohi if hi_real is None else min(ohi, zp_out + int(np.round(np.float32(hi_real) / qs)))
    return np.clip(r, amin, amax).astype(np.float32)


def _exact_relu(ctx: OpContext, x: Any, y_float: Any, lo_real: float | None, hi_real: float | None,
                magnitude: bool = False) -> Any | None:
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    ok = integer_kernels.is_q8(in_t, True) or integer_kernels.is_q16(in_t)
    if not (ctx.builder.options.fake_quant and ok and in_t.type_name == out_t.type_name
            and out_t.quantization.scale.size == 1):
        return None
    lo, _ = integer_range(in_t.type_name)
    codes = tf.clip_by_value(_to_codes(x, in_t), lo, integer_range(in_t.type_name)[1])
    r = tf.gather(tf.constant(relu_table(in_t, out_t, lo_real, hi_real, magnitude)), tf.cast(codes - lo, tf.int32))
    return integer_kernels.ste(y_float, _from_codes(r, out_t))


@register("ABS")
def abs_(ctx: OpContext) -> list[Any]:
    """``|x|``; faithful int8/int16: the builtin AbsEval's ``zp_out + MultiplyByQuantizedMultiplier(|q -
    zp_in|, s_in / s_out)`` (:func:`relu_table` with ``magnitude``; XNNPACK takes ABS for float only)."""
    x = ctx.input(0)
    y = _UNARY["ABS"](x)
    exact = _exact_relu(ctx, x, y, None, None, magnitude=True)
    return [exact if exact is not None else y]


def _make_relu(name: str, lo_real: float | None, hi_real: float | None) -> None:
    def rebuild(ctx: OpContext) -> list[Any]:
        x = ctx.input(0)
        y = _UNARY[name](x)
        exact = _exact_relu(ctx, x, y, lo_real, hi_real)
        return [exact if exact is not None else y]

    register(name)(rebuild)


_make_relu("RELU", 0.0, None)
_make_relu("RELU6", 0.0, 6.0)
_make_relu("RELU_N1_TO_1", -1.0, 1.0)  # Relu1Eval: the same ReluX kernel, clamped to [-1, 1]
