"""The verifier's rules, each at its boundary, on synthetic arrays (``verify.compare_output``).

Every rule the README states is tested here just inside (passes) and just outside (fails) its
threshold, and every failure path of ``compare_output`` (shape, dtype, NaN/inf, LSB counts, exact
equality) is taken once. The numbers are made by the test, so each verdict is known in advance.
"""

from __future__ import annotations

import numpy as np
import pytest

from tflite_inverter.conversion.rules import (
    FLOAT_TOL,
    LSB_FLOAT_SLACK,
    REF_MAX_FLOOR,
    compare_output,
    format_checks,
)
from tflite_inverter.model import ir


def _tensor(type_name: str = "FLOAT32", scale: float | None = None) -> ir.Tensor:
    q = None
    if scale is not None:
        q = ir.Quantization(np.array([scale], np.float32), np.array([0], np.int64))
    dtype = {"FLOAT32": np.float32, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_, "STRING": object}[type_name]
    return ir.Tensor(0, "y", (4,), (4,), type_name, np.dtype(dtype), 0, quantization=q)


FLOAT = _tensor()


def check(ref, got, t=FLOAT, lsb=None, tolerance=None, alt=None):
    return compare_output("s", "y", np.asarray(ref), np.asarray(got), t, lsb, tolerance,
                          None if alt is None else np.asarray(alt))


# -- float: max abs err <= max(1e-4 x max|ref|, spread) --------------------------------------------
REF = np.array([1.0, -2.0, 0.5, 0.0], np.float64)  # max|ref| = 2 -> bound 2e-4


@pytest.mark.parametrize("err, ok", [(0.99 * 2 * FLOAT_TOL, True), (1.01 * 2 * FLOAT_TOL, False)])
def test_float_rule_is_1e4_of_the_reference_maximum(err, ok):
    c = check(REF, REF + np.array([0, err, 0, 0]))
    assert c.rule == "float" and c.passed is ok
    assert c.threshold["max_abs_err"] == pytest.approx(2e-4)
    assert c.measured["max_abs_err"] == pytest.approx(err)


@pytest.mark.parametrize("err, ok", [(4.9e-3, True), (5.1e-3, False)])
def test_float_rule_widens_to_the_measured_reference_spread_only(err, ok):
    alt = REF + np.array([0, 0, 5e-3, 0])  # the built-in kernels differ by 5e-3 on one element
    c = check(REF, REF + np.array([err, 0, 0, 0]), alt=alt)
    assert c.passed is ok
    assert c.reference_spread == pytest.approx(5e-3)
    assert c.threshold["max_abs_err"] == pytest.approx(5e-3)
    assert "spread governs" in c.tolerance
    assert c.measured["max_abs_err_vs_builtin_kernels"] == pytest.approx(max(err, 5e-3))


def test_a_spread_below_the_relative_term_changes_nothing():
    c = check(REF, REF + np.array([0, 3e-4, 0, 0]), alt=REF + 1e-6)
    assert not c.passed and c.threshold["max_abs_err"] == pytest.approx(2e-4)


@pytest.mark.parametrize("err, ok", [(0.99e-2 * 2, True), (1.01e-2 * 2, False)])
def test_an_explicit_tolerance_replaces_1e4(err, ok):
    c = check(REF, REF + np.array([0, 0, err, 0]), tolerance=1e-2)
    assert c.passed is ok and "--tolerance" in c.tolerance


def test_an_all_zero_reference_has_the_floored_bound():
    bound = FLOAT_TOL * REF_MAX_FLOOR
    assert check(np.zeros(4), np.full(4, 0.9 * bound)).passed
    assert not check(np.zeros(4), np.full(4, 1.1 * bound)).passed


# -- NaN / inf ---------------------------------------------------------------------------------------
def test_identical_nan_and_inf_match():
    ref = np.array([np.nan, np.inf, -np.inf, 1.0])
    c = check(ref, ref.copy())
    assert c.passed and c.nonfinite_mismatches == 0 and c.max_abs_err == 0.0


@pytest.mark.parametrize("got", [[1.0, np.inf, -np.inf, 1.0], [np.nan, -np.inf, -np.inf, 1.0],
                                 [np.nan, np.inf, -np.inf, np.nan]])
def test_nan_or_inf_against_anything_else_is_a_mismatch(got):
    c = check(np.array([np.nan, np.inf, -np.inf, 1.0]), np.array(got))
    assert not c.passed and c.nonfinite_mismatches == 1


def test_nan_against_a_number_fails_the_lsb_rule_too():
    c = check([0.0, 0.5, np.nan, 1.0], [0.0, 0.5, 0.0, 1.0], lsb=0.5)
    assert c.rule == "lsb" and not c.passed and c.nonfinite_mismatches == 1


# -- lsb: >= 99 % within 1 LSB, none beyond 2 -------------------------------------------------------
INT8_Q = _tensor("INT8", scale=0.1)


def _int8_pair(n_one: int, extra: int = 0):
    ref = np.zeros(1000, np.int8)
    got = ref.copy()
    got[:n_one] = 1
    if extra:
        got[-1] = extra
    return ref, got


@pytest.mark.parametrize("n_two, ok", [(10, True), (11, False)])  # 99.0 % within 1 passes, 98.9 % fails
def test_lsb_rule_needs_99_percent_within_one_lsb(n_two, ok):
    ref = np.zeros(1000, np.int8)
    got = ref.copy()
    got[:n_two] = 2
    c = check(ref, got, t=INT8_Q, lsb=0.1)
    assert c.rule == "lsb" and c.passed is ok
    assert c.measured["within_1_lsb"] == pytest.approx(1 - n_two / 1000)


@pytest.mark.parametrize("worst, ok", [(2, True), (3, False)])
def test_lsb_rule_allows_nothing_beyond_two(worst, ok):
    ref, got = _int8_pair(5, extra=worst)
    c = check(ref, got, t=INT8_Q, lsb=0.1)
    assert c.passed is ok and c.measured["max_lsb"] == worst


@pytest.mark.parametrize("k, ok", [(1.0, True), (1.0 + 2 * LSB_FLOAT_SLACK, False)])
def test_dequantized_float_outputs_count_lsbs_of_their_scale(k, ok):
    """One element off by k LSB of a scale 0.5 out of 200: within 1 LSB means <= (1 + 1e-3) x scale."""
    ref = np.zeros(200, np.float32)
    got = ref.copy()
    got[:1] = k * 0.5
    c = check(ref, got, lsb=0.5)
    assert c.rule == "lsb"
    assert (c.measured["within_1_lsb"] == 1.0) is ok
    got[:1] = (2.0 + (0.0 if ok else 4 * LSB_FLOAT_SLACK)) * 0.5
    assert check(ref, got, lsb=0.5).passed is ok


def test_an_explicit_tolerance_governs_dequantized_float_outputs():
    c = check(np.zeros(4), np.full(4, 0.4), lsb=0.5, tolerance=1e-2)
    assert c.rule == "float" and not c.passed


# -- exact: integers without a scale, bools, strings -------------------------------------------------
INT32 = _tensor("INT32")


def test_integer_outputs_without_a_scale_must_be_equal_everywhere():
    ref = np.arange(1000, dtype=np.int32)
    assert check(ref, ref.copy(), t=INT32).passed
    got = ref.copy()
    got[7] += 1  # 99.9 % equal is not a match
    c = check(ref, got, t=INT32)
    assert c.rule == "exact" and not c.passed and c.measured["equal_fraction"] == pytest.approx(0.999)
    assert "99.90% equal" in format_checks([c])


def test_where_the_kernel_sets_disagree_either_value_is_exact():
    ref = np.array([3, 1, 2, 0], np.int32)
    alt = np.array([3, 2, 2, 0], np.int32)  # built-in kernels: another argmax at element 1
    assert check(ref, alt, t=INT32, alt=alt).passed
    assert not check(ref, np.array([3, 3, 2, 0], np.int32), t=INT32, alt=alt).passed


def test_bools_and_strings_are_compared_exactly():
    b = _tensor("BOOL")
    assert check(np.array([True, False]), np.array([True, False]), t=b).passed
    assert not check(np.array([True, False]), np.array([True, True]), t=b).passed
    s = _tensor("STRING")
    ref = np.array([b"a", b"bc"])
    assert check(ref, np.array([b"a", b"bc"], dtype=object), t=s).passed
    assert not check(ref, np.array([b"a", b"bd"], dtype=object), t=s).passed


def test_strings_against_numbers_fail():
    c = check(np.array([b"1", b"2"]), np.array([1.0, 2.0]), t=_tensor("STRING"))
    assert not c.passed and c.rule == "exact"


def test_a_shape_different_from_the_reference_fails():
    c = check(np.zeros((2, 2)), np.zeros(4))
    assert not c.passed and c.rule == "shape" and "shape [4]" in c.tolerance


def test_the_table_prints_rule_threshold_and_measured_value():
    rows = [check(REF, REF + np.array([0, 1e-3, 0, 0])),
            check(*_int8_pair(3), t=INT8_Q, lsb=0.1)]
    table = format_checks(rows)
    head, float_row, lsb_row = table.splitlines()
    assert head.split()[3:6] == ["rule", "threshold", "measured"]
    assert "float" in float_row and "max abs <= 0.0002" in float_row and "max abs 0.001" in float_row
    assert float_row.endswith("FAIL")
    assert ">= 99% <= 1 LSB, max <= 2 LSB" in lsb_row and "100% <= 1 LSB, max 1 LSB" in lsb_row
    assert lsb_row.endswith("ok")
    assert rows[0].to_json()["threshold"]["max_abs_err"] == pytest.approx(2e-4)
