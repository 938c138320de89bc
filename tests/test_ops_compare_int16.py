"""Quantized int16 comparisons code for code against the TFLite interpreter: EQUAL / NOT_EQUAL
rescale both inputs (``ComparisonWithScaling``, left shift 8, per-input multiplier), the ordering
comparisons compare the stored codes (``Comparison<int16_t>``), see ``ops/elementwise.py``."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import run_interpreter, run_rebuilt
from .tflite_builder import single_op_model

_OPS = ("EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL")
_QUANT = [((0.001, 0.0015), (0, 0)), ((0.001, 0.001), (0, 0)), ((3e-4, 1e-3), (7, -300)),
          ((0.002, 0.001), (-20000, 20000))]


@pytest.mark.parametrize("scales,zps", _QUANT, ids=[f"q{i}" for i in range(len(_QUANT))])
@pytest.mark.parametrize("op", _OPS)
def test_int16_comparison_is_exact(op, scales, zps):
    q = [{"scale": [s], "zero_point": [z]} for s, z in zip(scales, zps)]
    model = single_op_model(op, [([64, 64], "INT16", None, q[0]), ([1, 64], "INT16", None, q[1])],
                            [([64, 64], "BOOL")])
    rng = np.random.default_rng(0)
    b = rng.integers(-2000, 2000, size=[1, 64])
    # near-equal real values: a's code within 2 of b's value on a's grid
    a = np.round((b - zps[1]) * scales[1] / scales[0] + zps[0] + rng.integers(-2, 3, size=[64, 64]))
    a = np.where(rng.random([64, 64]) < 0.5, a, rng.integers(-32768, 32768, size=[64, 64]))  # and far ones
    a, b = a.clip(-32768, 32767).astype(np.int16), b.astype(np.int16)
    ref = run_interpreter(model, [a, b])[0]
    assert 0 < ref.mean() < 1  # both outcomes occur
    np.testing.assert_array_equal(run_rebuilt(model, [a, b])[0], ref)
