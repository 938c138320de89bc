"""Quantized DIV (int8, uint8, int16) code for code against the TFLite interpreter: the builtin
``DivElementwise`` / ``BroadcastDivSlowQuantized`` fixed point (``GetReciprocal``, headroom shift,
the x86 rounding shift past 31 bits), see ``ops/elementwise.py:_integer_div``."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_inverter.model.reader import read_model
from tflite_inverter.ops import elementwise

from .helpers import run_builtin, run_interpreter, run_rebuilt
from .tflite_builder import single_op_model

_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}
_NP = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16}


def _model(dtype: str, scales: tuple[float, float, float], zps: tuple[int, int, int], shapes: list[list[int]],
           act: str = "NONE") -> bytes:
    qs = [{"scale": [s], "zero_point": [z]} for s, z in zip(scales, zps)]
    out_shape = list(np.broadcast_shapes(*shapes))
    return single_op_model("DIV", [(shapes[0], dtype, None, qs[0]), (shapes[1], dtype, None, qs[1])],
                           [(out_shape, dtype, qs[2])], {"fused_activation_function": act}, "DivOptions")


def _inputs(dtype: str, zps: tuple[int, int, int], shapes: list[list[int]], seed: int) -> list[np.ndarray]:
    """Dividends over the whole range (their zero point included: 0 / v2 takes the kernel's exponent
    of 32 and more); divisors biased to codes next to their zero point (|v2| = 1, 2, ...) plus random
    ones. The kernel refuses a stored 0 (CheckNonZero on the raw data) and leaves v2 = 0 undefined."""
    rng = np.random.default_rng(seed)
    lo, hi = _RANGE[dtype]
    a = rng.integers(lo, hi + 1, size=shapes[0])
    a.flat[: min(a.size, 8)] = np.clip(zps[0] + np.array([0, 1, -1, 2, -2, 0, hi, lo])[: min(a.size, 8)], lo, hi)
    near = zps[1] + rng.choice([-3, -2, -1, 1, 2, 3], size=shapes[1])
    b = np.where(rng.random(shapes[1]) < 0.5, near, rng.integers(lo, hi + 1, size=shapes[1]))
    b = np.clip(b, lo, hi)
    fill = next(c for c in (zps[1] + 1, zps[1] - 1, zps[1] + 2, zps[1] - 2) if lo <= c <= hi and c != 0)
    b = np.where((b == zps[1]) | (b == 0), fill, b)
    assert not np.any((b == 0) | (b == zps[1]))
    return [a.astype(_NP[dtype]), b.astype(_NP[dtype])]


_CASES = [  # dtype, (s1, s2, s_out), zero points, shapes, activation
    ("INT8", (0.05, 0.04, 0.05), (0, 0, 0), [[16, 64], [16, 64]], "NONE"),
    ("INT8", (0.05, 0.04, 0.15), (3, -7, -128), [[16, 64], [16, 64]], "NONE"),  # output scale x3
    ("INT8", (0.05, 0.04, 0.015), (-128, 127, 5), [[16, 64], [16, 64]], "NONE"),  # x0.3, extreme zps
    ("INT8", (0.02, 0.1, 0.4), (10, -3, 0), [[8, 4, 16], [1, 1, 16]], "RELU"),  # broadcast
    ("UINT8", (0.05, 0.04, 0.15), (128, 128, 0), [[16, 64], [16, 64]], "NONE"),
    ("UINT8", (0.03, 0.05, 0.01), (0, 255, 255), [[16, 64], [16, 64]], "NONE"),
    ("UINT8", (0.05, 0.04, 0.2), (40, 200, 128), [[1, 64], [16, 1]], "RELU6"),  # broadcast both ways
    ("INT16", (1e-3, 2e-3, 1e-3), (0, 0, 0), [[16, 64], [16, 64]], "NONE"),
    ("INT16", (1e-3, 2e-3, 3e-3), (0, 0, 0), [[16, 64], [16, 64]], "NONE"),  # output scale x3
    ("INT16", (4e-4, 1e-4, 2e-2), (0, 0, 0), [[8, 4, 16], [1, 1, 16]], "NONE"),  # broadcast
]


@pytest.mark.parametrize("dtype,scales,zps,shapes,act", _CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(_CASES)])
def test_quantized_div_is_bit_exact(dtype, scales, zps, shapes, act):
    model = _model(dtype, scales, zps, shapes, act)
    inputs = _inputs(dtype, zps, shapes, seed=len(shapes[0]) + int(scales[2] * 1e4))
    ref = run_interpreter(model, inputs)[0].astype(int)
    np.testing.assert_array_equal(run_builtin(model, inputs)[0].astype(int), ref)
    np.testing.assert_array_equal(run_rebuilt(model, inputs)[0].astype(int), ref)


def test_zero_dividend_takes_the_x86_shift_past_31_bits():
    """0 / v2 with exponent 32 (output shift 5, divisor with recip_shift 6): the kernel returns
    z_out + 1, not z_out (64-bit mask, modulo-32 arithmetic shift); the rebuild does the same."""
    model = _model("INT8", (0.05, 0.04, 0.15), (0, 0, -128), [[1, 4], [1, 4]])
    inputs = [np.zeros([1, 4], np.int8), np.array([[97, 100, 1, -5]], np.int8)]
    ref = run_interpreter(model, inputs)[0].astype(int)
    assert ref[0, 0] == -127  # the quirk is the interpreter's
    np.testing.assert_array_equal(run_rebuilt(model, inputs)[0].astype(int), ref)


@pytest.mark.parametrize("scales", [(1.0, 1e-3, 1e-2), (0.05, 1e-4, 1e-3)])
def test_int16_div_with_a_negative_rounding_exponent_follows_x86(scales):
    """s1 / (s2 s_out) >= 2**15 on int16: the kernel's rounding exponent goes negative for large
    |v1| (undefined in C++; x86 takes the counts modulo 64 / 32). Divisors |v2| small and large."""
    model = _model("INT16", scales, (0, 0, 0), [[64, 64], [64, 64]])
    rng = np.random.default_rng(0)
    a = rng.integers(-32768, 32768, size=[64, 64]).astype(np.int16)
    b = rng.choice([-3, -2, -1, 1, 2, 3, 5, 100, -7000, 30000], size=[64, 64]).astype(np.int16)
    ref = run_interpreter(model, [a, b])[0].astype(int)
    assert 0.05 < np.mean(np.abs(ref) < 32767)  # not all saturated
    np.testing.assert_array_equal(run_rebuilt(model, [a, b])[0].astype(int), ref)


def test_per_channel_quantized_div_is_refused():
    q = {"scale": [0.05], "zero_point": [0]}
    qc = {"scale": [0.04, 0.05, 0.06, 0.07], "zero_point": [0] * 4, "quantized_dimension": 1}
    model = single_op_model("DIV", [([2, 4], "INT8", None, q), ([2, 4], "INT8", None, qc)], [([2, 4], "INT8", q)],
                            {"fused_activation_function": "NONE"}, "DivOptions")
    m = read_model(model)
    problems = elementwise._div_check(m.main.operators[0], m.main)
    assert any("per-channel" in p for p in problems)
