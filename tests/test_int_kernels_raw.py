"""Quantized kernels that compute on the stored codes and ignore the scales, code for code.

FLOOR_DIV / FLOOR_MOD int8 and int16 (``kernels/floor_div.cc`` / ``floor_mod.cc``: ``floor(double(a)
/ double(b))`` and the floored ``%`` on the raw codes, stored unchanged) and int16 RESIZE_BILINEAR
with output parameters other than the input's (``reference_ops::ResizeBilinearInteger`` on raw
int16 codes, no requantization). Single-op models from ``tests/tflite_builder.py``; the faithful
rebuild's output codes are compared element by element with the default interpreter's. Refusals
(uint8, mixed input types, per-channel parameters, a constant zero divisor) and the run-time
"division by 0" assertion are asserted by name.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.errors import UnsupportedOpError
from tflite_inverter.model.reader import read_model
from tflite_inverter.ops.elementwise import _floor_check

from .helpers import round_trip_ops, run_interpreter, run_rebuilt
from .tflite_builder import single_op_model

_rng = np.random.default_rng(99)


def q(scale: float, zp: int = 0) -> dict:
    return {"scale": [float(scale)], "zero_point": [int(zp)], "quantized_dimension": 0}


def codes(shape, dtype: str, nonzero: bool = False) -> np.ndarray:
    lo, hi = (-128, 128) if dtype == "INT8" else (-32768, 32768)
    x = _rng.integers(lo, hi, list(shape)).astype(np.int8 if dtype == "INT8" else np.int16)
    if nonzero:
        x[x == 0] = 3
        x[x == -1] = 5  # INT_MIN / -1 has no defined result
    return x


def assert_exact(model: bytes, inputs: list[np.ndarray]) -> None:
    ref = run_interpreter(model, inputs)[0].astype(np.int64)
    got = run_rebuilt(model, inputs)[0]
    assert got.shape == ref.shape and got.dtype == inputs[0].dtype
    diff = np.abs(got.astype(np.int64) - ref)
    assert diff.max() == 0, f"off by up to {diff.max()} LSB on {np.mean(diff > 0):.1%} of the elements"


FLOOR_CASES = [  # (dtype, qa, qb, qo, broadcast)
    ("INT8", q(0.05), q(0.05), q(0.05), False),
    ("INT8", q(0.05, -120), q(0.2, 127), q(0.01, -128), False),  # zero points at the extremes
    ("INT8", q(0.05, 3), q(0.02, -7), q(0.3, 10), True),
    ("INT16", q(1e-3), q(1e-3), q(1e-3), False),
    ("INT16", q(1e-3), q(2e-4), q(3e-4), False),  # scales differ (the kernel ignores them)
    ("INT16", q(1e-3), q(1e-3), q(3e-3), True),
]


@pytest.mark.parametrize("op", ["FLOOR_DIV", "FLOOR_MOD"])
@pytest.mark.parametrize("dtype,qa,qb,qo,broadcast", FLOOR_CASES)
def test_floor_div_mod_on_codes_is_exact(op, dtype, qa, qb, qo, broadcast):
    shape, bshape = [2, 3, 4, 5], ([1, 1, 1, 5] if broadcast else [2, 3, 4, 5])
    a, b = codes(shape, dtype), codes(bshape, dtype, nonzero=True)
    assert (a < 0).any() and (b < 0).any()  # floor semantics differ from truncation on negatives
    model = single_op_model(op, [(shape, dtype, None, qa), (bshape, dtype, None, qb)], [(shape, dtype, qo)])
    assert_exact(model, [a, b])


def test_floor_div_small_divisors_and_constant_divisor():
    # Small codes of both signs: quotients far from zero, exact floors (-7 // 2 = -4, not -3).
    a = codes([4, 32], "INT8")
    b = np.array([-3, -2, 1, 2, 3, 4, -4, 7] * 4, np.int8).reshape(1, 32)
    for op in ("FLOOR_DIV", "FLOOR_MOD"):
        model = single_op_model(op, [([4, 32], "INT8", None, q(0.1, 5)), ([1, 32], "INT8", b, q(0.5, -2))],
                                [([4, 32], "INT8", q(0.7, 1))])
        assert_exact(model, [a])


def _refusal(model: bytes) -> list[str]:
    m = read_model(model)
    sg = m.subgraphs[0]
    return _floor_check(sg.operators[0], sg)


@pytest.mark.parametrize("op", ["FLOOR_DIV", "FLOOR_MOD"])
def test_floor_refusals_match_the_kernel(op):
    s = [2, 3]
    uint8 = single_op_model(op, [(s, "UINT8", None, q(0.1, 128)), (s, "UINT8", None, q(0.1, 128))],
                            [(s, "UINT8", q(0.1, 128))])
    with pytest.raises(Exception, match="not supported"):
        run_interpreter(uint8, [np.ones(s, np.uint8)] * 2)
    assert any("Type 'UINT8' is not supported" in r for r in _refusal(uint8))
    mixed = single_op_model(op, [(s, "INT8", None, q(0.1)), (s, "INT16", None, q(0.1))], [(s, "INT8", q(0.1))])
    assert any("input types differ" in r for r in _refusal(mixed))
    zero = single_op_model(op, [(s, "INT8", None, q(0.1)), (s, "INT8", np.array([[1, 0, 2], [3, 4, 5]], np.int8),
                                                           q(0.1))], [(s, "INT8", q(0.1))])
    with pytest.raises(Exception, match="Division by 0"):
        run_interpreter(zero, [np.ones(s, np.int8)])
    assert any("Division by 0" in r for r in _refusal(zero))
    with pytest.raises(UnsupportedOpError, match="Division by 0"):
        run_rebuilt(zero, [np.ones(s, np.int8)])
    pc = {"scale": [0.1, 0.2, 0.3], "zero_point": [0, 0, 0], "quantized_dimension": 1}
    per_channel = single_op_model(op, [(s, "INT8", None, pc), (s, "INT8", None, q(0.1))], [(s, "INT8", q(0.1))])
    assert any("per-tensor" in r for r in _refusal(per_channel))


@pytest.mark.parametrize("op", ["FLOOR_DIV", "FLOOR_MOD"])
@pytest.mark.parametrize("dtype", ["INT8", "INT16"])
def test_runtime_zero_divisor_fails_by_name(op, dtype):
    s, npt = [1, 4], (np.int8 if dtype == "INT8" else np.int16)
    model = single_op_model(op, [(s, dtype, None, q(0.1)), (s, dtype, None, q(0.1))], [(s, dtype, q(0.1))])
    a, b = np.array([[5, -5, 7, 1]], npt), np.array([[1, 0, 2, 3]], npt)
    with pytest.raises(Exception, match="Division by 0"):
        run_interpreter(model, [a, b])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{op} division by 0"):
        run_rebuilt(model, [a, b])


def test_floor_div_overflow_fails_by_name():
    s = [1, 4]
    model = single_op_model("FLOOR_DIV", [(s, "INT8", None, q(0.1)), (s, "INT8", None, q(0.1))],
                            [(s, "INT8", q(0.1))])
    with pytest.raises(tf.errors.InvalidArgumentError, match="FLOOR_DIV overflow"):
        run_rebuilt(model, [np.array([[-128, 1, 2, 3]], np.int8), np.array([[-1, 1, 1, 1]], np.int8)])


def test_the_code_rebuild_converts_back_to_builtins():
    """The code arithmetic is int32 (TFLite has no int64 FLOOR_DIV/FLOOR_MOD builtin)."""
    s = [1, 4]
    for op in ("FLOOR_DIV", "FLOOR_MOD"):
        model = single_op_model(op, [(s, "INT16", None, q(1e-3)), (s, "INT16", None, q(2e-3))],
                                [(s, "INT16", q(1e-3))])
        assert op in round_trip_ops(model)


@pytest.mark.parametrize("out_q,flags,size", [
    (q(3e-4, 0), (False, False), [7, 9]),
    (q(3e-3, 5), (False, True), [7, 9]),
    (q(1e-3, -100), (True, False), [5, 11]),
    (q(1e-3, 0), (False, False), [5, 6]),  # same parameters (the already-exact path)
])
def test_resize_bilinear_int16_reads_codes_with_output_parameters(out_q, flags, size):
    x = codes([2, 4, 5, 3], "INT16")
    model = single_op_model("RESIZE_BILINEAR", [([2, 4, 5, 3], "INT16", None, q(1e-3)),
                                                ([2], "INT32", np.array(size, np.int32))],
                            [([2, *size, 3], "INT16", out_q)],
                            {"align_corners": flags[0], "half_pixel_centers": flags[1]})
    assert_exact(model, [x])
