"""Verification inputs: integer inputs derived from the graph, the weak status, stateful models on
three calls, and ``--inputs`` values that do not fit their input.

Each derivation rule is checked on a model the test builds, run in the TFLite interpreter with the
derived values: the interpreter itself bounds-checks indices (GATHER, SCATTER_ND, ...), so a wrong
rule fails here. The stateful check is shown to fail on a rebuild whose state update is broken.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_inverter.conversion.plan import IOPlan, fit_input, invocations, is_stateful, random_inputs
from tflite_inverter.conversion.reference import reference_outputs, run_tflite
from tflite_inverter.conversion.verify_inputs import derive_rules
from tflite_inverter.errors import UsageError, VerificationError
from tflite_inverter.model import ir
from tflite_inverter.model.reader import read_model

from .helpers import accumulator_model
from .tflite_builder import build_model, single_op_model


def _write(tmp_path, model: bytes, name: str = "m.tflite") -> str:
    path = tmp_path / name
    path.write_bytes(model)
    return str(path)


def _plan(model: ir.Model) -> IOPlan:
    """Subgraph 0's inputs/outputs as the verifier sees them, with the derived integer rules."""
    sg = model.subgraphs[0]
    ins = [sg.tensors[i] for i in sg.inputs]
    outs = [sg.tensors[i] for i in sg.outputs]
    return IOPlan(signature=None, key="serving_default", tflite_inputs=[t.name for t in ins],
                  tflite_outputs=[t.name for t in outs], saved_inputs=[t.name for t in ins],
                  saved_outputs=[t.name for t in outs], input_tensors=ins, output_tensors=outs,
                  input_dtypes=[t.dtype for t in ins], int_rules=derive_rules(model, 0, ins))


def _derived(tmp_path, model: bytes, k: int = 0, seed: int = 0):
    """(rule, values fed) of input ``k``; the interpreter must accept the values."""
    path = _write(tmp_path, model)
    m = read_model(path)
    plan = _plan(m)
    feeds = random_inputs(plan, seed)
    run_tflite(path, [(None, [], [], feeds)])  # raises if the interpreter rejects them
    return plan.int_rules[k], feeds[k]


# -- one test per derivation rule ----------------------------------------------------------------
@pytest.mark.parametrize("axis, dim", [(0, 7), (1, 5), (-1, 5)])
def test_gather_indices_stay_within_the_indexed_dim(tmp_path, axis, dim):
    model = single_op_model("GATHER", [([7, 5], "FLOAT32", np.ones([7, 5], np.float32)), ([40], "INT32", None)],
                            [([40, 5] if axis == 0 else [7, 40], "FLOAT32")], {"axis": axis})
    rule, x = _derived(tmp_path, model)
    assert rule.derived and (int(rule.low), int(rule.high)) == (0, dim - 1)
    assert x.min() >= 0 and x.max() == dim - 1  # 40 draws over the whole range, not only 0


def test_gather_indices_through_a_reshape_and_a_cast(tmp_path):
    model = build_model(
        tensors=[("i", [6], "INT64"), ("shape", [2], "INT32", np.array([2, 3], np.int32)), ("r", [2, 3], "INT64"),
                 ("c", [2, 3], "INT32"), ("p", [9, 2], "FLOAT32", np.ones([9, 2], np.float32)),
                 ("y", [2, 3, 2], "FLOAT32")],
        ops=[("RESHAPE", [0, 1], [2], None, None), ("CAST", [2], [3], None, None),
             ("GATHER", [4, 3], [5], "GatherOptions", {"axis": 0})],
        inputs=[0], outputs=[5])
    rule, x = _derived(tmp_path, model)
    assert (int(rule.low), int(rule.high)) == (0, 8) and x.max() <= 8


def test_gather_nd_and_scatter_nd_indices_per_column(tmp_path):
    gnd = single_op_model("GATHER_ND", [([4, 6], "FLOAT32", np.ones([4, 6], np.float32)), ([30, 2], "INT32", None)],
                          [([30], "FLOAT32")])
    rule, x = _derived(tmp_path, gnd)
    assert rule.high.tolist() == [3, 5] and x[:, 0].max() == 3 and x[:, 1].max() == 5
    snd = single_op_model("SCATTER_ND", [([30, 2], "INT32", None), ([30], "FLOAT32", np.ones(30, np.float32)),
                                         ([2], "INT32", np.array([4, 6], np.int32))], [([4, 6], "FLOAT32")])
    rule, x = _derived(tmp_path, snd)
    assert rule.high.tolist() == [3, 5] and x[:, 0].max() == 3 and x[:, 1].max() == 5 and x.min() == 0


def test_embedding_lookup_one_hot_topk_and_dynamic_update_slice(tmp_path):
    emb = single_op_model("EMBEDDING_LOOKUP", [([20], "INT32", None), ([6, 3], "FLOAT32", np.ones([6, 3], np.float32))],
                          [([20, 3], "FLOAT32")])
    rule, x = _derived(tmp_path, emb)
    assert int(rule.high) == 5 and x.max() == 5
    oh = single_op_model("ONE_HOT", [([20], "INT32", None), ([], "INT32", np.array(3, np.int32)),
                                     ([], "FLOAT32", np.array(1, np.float32)), ([], "FLOAT32", np.array(0, np.float32))],
                         [([20, 3], "FLOAT32")], {"axis": -1})
    rule, x = _derived(tmp_path, oh)
    assert int(rule.high) == 2 and x.max() == 2
    topk = single_op_model("TOPK_V2", [([2, 6], "FLOAT32", np.arange(12, dtype=np.float32).reshape(2, 6)),
                                       ([], "INT32", None)], [([2, 1], "FLOAT32"), ([2, 1], "INT32")])
    for seed in range(4):
        rule, k = _derived(tmp_path, topk, seed=seed)
        assert (int(rule.low), int(rule.high)) == (1, 6) and 1 <= int(k) <= 6
    dus = single_op_model("DYNAMIC_UPDATE_SLICE", [([8, 4], "FLOAT32", np.zeros([8, 4], np.float32)),
                                                   ([3, 4], "FLOAT32", np.ones([3, 4], np.float32)),
                                                   ([2], "INT32", None)], [([8, 4], "FLOAT32")])
    rule, _ = _derived(tmp_path, dus)
    assert rule.high.tolist() == [5, 0]


def test_segment_ids_are_sorted_and_reshape_shapes_exact(tmp_path):
    seg = single_op_model("SEGMENT_SUM", [([12, 2], "FLOAT32", np.ones([12, 2], np.float32)), ([12], "INT32", None)],
                          [([4, 2], "FLOAT32")])
    rule, ids = _derived(tmp_path, seg)
    assert rule.sorted and np.all(np.diff(ids) >= 0) and ids.max() > ids.min()
    rs = single_op_model("RESHAPE", [([2, 6], "FLOAT32", np.ones([2, 6], np.float32)), ([3], "INT32", None)],
                         [([3, 2, 2], "FLOAT32")])
    rule, shape = _derived(tmp_path, rs)
    assert shape.tolist() == [3, 2, 2]


def test_an_integer_input_no_rule_covers_is_random_in_a_small_range(tmp_path):
    model = single_op_model("ADD", [([50], "INT32", None), ([50], "INT32", np.ones(50, np.int32))],
                            [([50], "INT32")], {})
    rule, x = _derived(tmp_path, model)
    assert not rule.derived and "ADD input 0" in rule.why
    assert set(np.unique(x)) == {0, 1, 2, 3}


class _Counter:
    """y = x * 2**n by a WHILE loop: i < n."""

    @staticmethod
    def model() -> bytes:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([3], tf.float32)])
        def f(n, x):
            return tf.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, y * 2.0), [tf.constant(0), x])[1]

        return tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()]).convert()


def test_while_loop_bounds_are_at_least_one_and_small(tmp_path):
    model = _Counter.model()
    path = _write(tmp_path, model)
    m = read_model(path)
    plan = _plan(m)
    n_index = next(k for k, t in enumerate(plan.input_tensors) if t.dtype.kind == "i")
    rule = plan.int_rules[n_index]
    assert "WHILE loop bound" in rule.why and (int(rule.low), int(rule.high)) == (1, 4)
    seen = set()
    for seed in range(6):
        feeds = random_inputs(plan, seed)
        (ref,) = run_tflite(path, [(None, [], [], feeds)])
        n, x = int(feeds[n_index]), feeds[1 - n_index]
        np.testing.assert_allclose(ref[0], x * 2.0 ** n, rtol=1e-6)  # the loop really ran n >= 1 times
        seen.add(n)
    assert min(seen) >= 1 and len(seen) > 1


# -- weak: inputs the tool could not make meaningful ---------------------------------------------
def _weak_model() -> bytes:
    """GATHER(params[2], idx + 0): the ADD hides the index from the rules; random [0, 3] is out of range."""
    return build_model(
        tensors=[("idx", [16], "INT32"), ("zero", [16], "INT32", np.zeros(16, np.int32)), ("i2", [16], "INT32"),
                 ("p", [2], "FLOAT32", np.array([1.5, -2.0], np.float32)), ("y", [16], "FLOAT32")],
        ops=[("ADD", [0, 1], [2], "AddOptions", {}), ("GATHER", [3, 2], [4], "GatherOptions", {"axis": 0})],
        inputs=[0], outputs=[4])


def test_rejected_integer_inputs_make_a_weak_verification_never_silent_zeros(tmp_path):
    path = _write(tmp_path, _weak_model())
    plan = _plan(read_model(path))
    weak: list[str] = []
    feeds, refs, notes = reference_outputs(path, [plan], None, weak=weak)
    assert np.all(feeds[0][0] == 0)  # the only values the interpreter took ...
    assert "'idx'" in weak[0] and "--inputs" in weak[0] and "ADD input 0" in weak[0]  # ... named as weak
    assert any(n.startswith("WEAK verification") for n in notes)
    np.testing.assert_array_equal(refs[0][0], np.full(16, 1.5, np.float32))


def test_a_weak_convert_exits_0_says_weak_and_is_not_a_match(tmp_path, capsys):
    from benchmarks.corpus import convert_one
    from tflite_inverter.cli.main import main

    path = _write(tmp_path, _weak_model())
    report = tmp_path / "r.json"
    assert main(["convert", path, "-o", str(tmp_path / "sm"), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "WEAK verification (not a verified match)" in out and "verification WEAK" in out
    assert " WEAK" in out.splitlines()[1]  # the table row's status
    data = json.loads(report.read_text())
    assert data["verified"] == "weak" and data["status"] == "weak" and "'idx'" in data["weak"]
    assert all(o["weak"] for o in data["outputs"])
    from pathlib import Path

    row = convert_one(Path(path))
    assert row.status == "weak", (row.status, row.detail)


def test_meaningful_inputs_are_not_weak(tmp_path):
    from tflite_inverter.conversion.pipeline import convert

    model = single_op_model("GATHER", [([7, 5], "FLOAT32", np.ones([7, 5], np.float32)), ([40], "INT32", None)],
                            [([40, 5], "FLOAT32")], {"axis": 0})
    result = convert(_write(tmp_path, model), str(tmp_path / "sm"))
    assert result.status == "ok" and not result.weak and result.to_json()["verified"] is True


# -- stateful models: three calls, state carried --------------------------------------------------
def _accumulator() -> bytes:
    """y = v + x; v = y, v starting at c (a CALL_ONCE initialiser)."""
    return accumulator_model([("ASSIGN_VARIABLE", [0, 1], [], None, None)],
                             [("c", [3], "FLOAT32", np.array([1.0, -2.0, 0.5], np.float32))])


def test_the_interpreter_reference_carries_state_over_three_calls(tmp_path):
    path = _write(tmp_path, _accumulator())
    m = read_model(path)
    assert is_stateful(m)
    plan = _plan(m)
    plan.signature, plan.tflite_inputs, plan.tflite_outputs = "serving_default", ["x"], ["y"]
    runs = invocations(m, [plan])
    assert [p.call for p in runs] == [0, 1, 2]
    x = np.array([0.25, 1.0, -1.0], np.float32)
    _, refs, _ = reference_outputs(path, runs, [[x]] * 3)
    for k, ref in enumerate(refs):  # c + (k + 1) x, computed here
        np.testing.assert_allclose(ref[0], np.array([1.0, -2.0, 0.5]) + (k + 1) * x, rtol=1e-6)
    fresh = random_inputs(runs[1])[0]
    assert not np.array_equal(fresh, random_inputs(runs[0])[0])  # every call gets its own inputs


def test_stateful_convert_checks_every_call(tmp_path):
    from tflite_inverter.conversion.pipeline import convert

    result = convert(_write(tmp_path, _accumulator()), str(tmp_path / "sm"))
    assert result.status == "ok"
    assert sorted(c.call for c in result.checks) == [0, 1, 2]
    assert "3 consecutive calls" in result.note


def test_a_rebuild_that_does_not_carry_state_fails(tmp_path, monkeypatch):
    """ASSIGN_VARIABLE made a no-op: the first call still matches, the next two must not."""
    from tflite_inverter.conversion.pipeline import convert
    from tflite_inverter.ops import registry

    spec = registry.find("ASSIGN_VARIABLE")
    monkeypatch.setitem(registry._REGISTRY, "ASSIGN_VARIABLE",
                        registry.OpSpec("ASSIGN_VARIABLE", lambda ctx: [], spec.family, spec.check, spec.model_check))
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patched rebuilder lives in this process
    report = tmp_path / "r.json"
    with pytest.raises(VerificationError, match="2 output"):
        convert(_write(tmp_path, _accumulator()), str(tmp_path / "sm"), report=str(report))
    outs = json.loads(report.read_text())["outputs"]
    assert [(o["call"], o["passed"]) for o in outs] == [(0, True), (1, False), (2, False)]


# -- --inputs values that do not fit ----------------------------------------------------------------
def _tensor(type_name: str, dtype, scale: float | None = None, zp: int = 0) -> ir.Tensor:
    q = None if scale is None else ir.Quantization(np.array([scale], np.float32), np.array([zp], np.int64))
    return ir.Tensor(0, "x", (4,), (4,), type_name, np.dtype(dtype), 0, quantization=q)


def test_out_of_range_or_fractional_inputs_are_a_usage_error():
    u8 = _tensor("UINT8", np.uint8)
    with pytest.raises(UsageError, match=r"input 'x' \(UINT8\) holds 0.4, which is not an integer"):
        fit_input("in.npz", np.array([0.4, -0.5, 1.7, 300.2]), u8, np.dtype(np.uint8))
    with pytest.raises(UsageError, match=r"holds 300, outside the uint8 range \[0, 255\]"):
        fit_input("in.npz", np.array([0, 5, 1, 300]), u8, np.dtype(np.uint8))
    with pytest.raises(UsageError, match="holds -1"):
        fit_input("in.npz", np.array([0, -1, 1, 3], np.int64), u8, np.dtype(np.uint8))
    with pytest.raises(UsageError, match="nan"):
        fit_input("in.npz", np.array([0, np.nan, 1, 3]), _tensor("INT32", np.int32), np.dtype(np.int32))
    ok = fit_input("in.npz", np.array([0.0, 7.0, 255.0, 1.0]), u8, np.dtype(np.uint8))
    assert ok.dtype == np.uint8 and ok.tolist() == [0, 7, 255, 1]


def test_float_io_takes_real_values_for_quantized_inputs():
    q = _tensor("INT8", np.int8, scale=0.5, zp=10)
    got = fit_input("in.npz", np.array([1.2, -1.25, 0.0, 58.5]), q, np.dtype(np.float32))
    assert got.dtype == np.int8 and got.tolist() == [12, 7, 10, 127]  # round half away: -2.5 -> -3
    with pytest.raises(UsageError, match=r"holds 59.0, outside the real range \[-69, 58.5\]"):
        fit_input("in.npz", np.array([0.0, 59.0, 0.0, 0.0]), q, np.dtype(np.float32))
    # without --float-io the same input takes its integers
    assert fit_input("in.npz", np.array([1, 2, 3, 4]), q, np.dtype(np.int8)).tolist() == [1, 2, 3, 4]


def test_convert_with_out_of_range_inputs_exits_2_and_writes_nothing(tmp_path, capsys):
    from tflite_inverter.cli.main import main

    model = single_op_model("ADD", [([4], "UINT8", None), ([4], "UINT8", np.ones(4, np.uint8))], [([4], "UINT8")], {})
    path = _write(tmp_path, model)
    np.savez(tmp_path / "in.npz", in0=np.array([0.4, -0.5, 1.7, 300.2]))
    out = tmp_path / "sm"
    assert main(["convert", path, "-o", str(out), "--inputs", str(tmp_path / "in.npz")]) == 2
    assert "'in0' (UINT8) holds 0.4" in capsys.readouterr().err
    assert not out.exists()


def test_float_io_inputs_are_real_values_end_to_end(tmp_path):
    """uint8 (scale 0.5, zero point 128) -> DEQUANTIZE: with --float-io the .npz holds real values;
    the interpreter is fed their quantized values, which this test computes itself."""
    from tflite_inverter.conversion.pipeline import convert

    q = {"scale": [0.5], "zero_point": [128]}
    model = single_op_model("DEQUANTIZE", [([4], "UINT8", None, q)], [([4], "FLOAT32")])
    path = _write(tmp_path, model)
    real = np.array([1.2, -3.0, 0.0, 20.0], np.float32)
    np.savez(tmp_path / "in.npz", in0=real)
    (ref,) = run_tflite(path, [(None, [], [], [np.array([130, 122, 128, 168], np.uint8)])])
    np.testing.assert_array_equal(ref[0], [1.0, -3.0, 0.0, 20.0])
    result = convert(path, str(tmp_path / "sm"), float_io=True, inputs=str(tmp_path / "in.npz"))
    assert result.status == "ok" and result.checks[0].max_abs_err == 0.0
    assert result.checks[0].ref_max_abs == 20.0  # the reference ran on the quantized real values
    np.savez(tmp_path / "bad.npz", in0=np.array([0.0, 64.0, 0.0, 0.0], np.float32))
    with pytest.raises(UsageError, match=r"'in0' \(UINT8\) holds 64.0, outside the real range \[-64, 63.5\]"):
        convert(path, str(tmp_path / "sm2"), float_io=True, inputs=str(tmp_path / "bad.npz"))
    assert not (tmp_path / "sm2").exists()


def test_when_the_lowest_values_fail_too_the_interpreters_failure_stands(tmp_path):
    """GATHER(params[2], idx + 5): out of range for every input value, so nothing is verified."""
    from tflite_inverter.errors import InterpreterError

    model = build_model(
        tensors=[("idx", [4], "INT32"), ("five", [4], "INT32", np.full(4, 5, np.int32)), ("i2", [4], "INT32"),
                 ("p", [2], "FLOAT32", np.array([1.5, -2.0], np.float32)), ("y", [4], "FLOAT32")],
        ops=[("ADD", [0, 1], [2], "AddOptions", {}), ("GATHER", [3, 2], [4], "GatherOptions", {"axis": 0})],
        inputs=[0], outputs=[4])
    path = _write(tmp_path, model)
    weak: list[str] = []
    with pytest.raises(InterpreterError, match="out of bounds|index"):
        reference_outputs(path, [_plan(read_model(path))], None, weak=weak)
    assert weak == []
