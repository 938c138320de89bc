"""``quantize`` report extras: the layers that lose the most precision, ops without a uint8 kernel,
and the report's checks, each of which sets the exit code (6) when it fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SAMPLE_DIR
from tests.helpers import tf
from tflite_inverter.cli.main import main
from tflite_inverter.errors import InterpreterError, VerificationError
from tflite_inverter.model.reader import read_model
from tflite_inverter.quantization import evaluate as evaluate_mod
from tflite_inverter.quantization import pipeline as pipeline_mod
from tflite_inverter.quantization.pipeline import quantize
from tflite_inverter.quantization.result import QuantizeResult

H, W, C = 8, 8, 3


def _two_branch_model(path) -> None:
    """Output ``feat``: CONV_2D+RELU -> FULLY_CONNECTED (ordinary); output ``mean``: FULLY_CONNECTED
    averaging every input value: near zero on noise, large on coherent images (the layer the test
    makes lose precision)."""
    rng = np.random.default_rng(3)
    k = tf.constant(rng.normal(0, 0.3, (3, 3, C, 4)).astype(np.float32))
    wf = tf.constant(rng.normal(0, 0.1, (H * W * 4, 6)).astype(np.float32))
    wm = tf.constant(np.full((H * W * C, 4), 1.0 / (H * W * C), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, H, W, C], tf.float32, name="image")], autograph=False)
    def fn(x):
        y = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))
        feat = tf.matmul(tf.reshape(y, [1, -1]), wf)
        mean = tf.matmul(tf.reshape(x, [1, -1]), wm)
        return {"feat": feat, "mean": mean}

    blob = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    path.write_bytes(blob)


@pytest.fixture(scope="module")
def narrow_then_wide(tmp_path_factory):
    """The model and calibration data whose first 80 % (calibration) is zero-mean noise over [-1, 1]
    and last 20 % (held back) coherent images in [0.5, 1]: same input range, but the averaging
    layer's calibrated range is a small fraction of what it sees on the held-back samples."""
    d = tmp_path_factory.mktemp("worst")
    model = d / "two.tflite"
    _two_branch_model(model)
    rng = np.random.default_rng(0)
    calib = rng.uniform(-1, 1, (16, 1, H, W, C)).astype(np.float32)
    held = rng.uniform(0.5, 1, (4, 1, H, W, C)).astype(np.float32)
    np.save(d / "calib.npy", np.concatenate([calib, held])[:, 0])
    return model, d / "calib.npy"


def test_worst_layer_is_the_clipped_one_and_rows_are_sorted(narrow_then_wide, tmp_path):
    model, calib = narrow_then_wide
    out, rep = tmp_path / "q.tflite", tmp_path / "r.json"
    r = quantize(str(model), str(out), calib=str(calib), report=str(rep))
    rows = json.loads(rep.read_text())["worst_layers"]
    assert isinstance(rows, list) and 2 <= len(rows) <= 5, rows
    q = read_model(str(out))
    # the averaging layer: the FULLY_CONNECTED with 4 outputs (the other has 6)
    mean = [op.outputs[0] for op in q.main.operators
            if op.name == "FULLY_CONNECTED" and q.main.tensors[op.outputs[0]].shape == (1, 4)]
    assert len(mean) == 1
    worst = rows[0]
    assert worst["index"] == mean[0] and worst["op"] == "FULLY_CONNECTED", rows
    sqnrs = [row["sqnr_db"] for row in rows]
    assert sqnrs == sorted(sqnrs)
    # clipped: a poor SQNR; the layers that saw their calibrated range keep a good one
    assert worst["sqnr_db"] < 10 and sqnrs[1] > 25, rows
    assert worst["max_abs_err"] > 0.3 and worst["scale"] > 0
    text = r.format_text()
    assert "layers that lose the most precision" in text and worst["tensor"] in text


def test_uint8_result_of_a_conv_model_has_every_kernel_and_runs(narrow_then_wide, tmp_path):
    model, calib = narrow_then_wide
    out, rep = tmp_path / "u8.tflite", tmp_path / "u8.json"
    r = quantize(str(model), str(out), calib=str(calib), dtype="uint8", report=str(rep))
    data = json.loads(rep.read_text())
    names = {op.name for op in read_model(str(out)).main.operators}
    assert {"CONV_2D", "FULLY_CONNECTED", "RESHAPE"} <= names
    assert data["ops_without_uint8_kernel"] == [] and data["uint8_interpreter_run"] == {"ran": True, "error": None}
    assert "uint8: every op has a uint8 kernel" in r.format_text()
    assert isinstance(data["worst_layers"], list) and data["worst_layers"][0]["op"] == "FULLY_CONNECTED"


def test_uint8_op_outside_the_kernel_list_is_named(narrow_then_wide, tmp_path, monkeypatch):
    from tflite_inverter.quantization import uint8_rewrite

    monkeypatch.setattr(uint8_rewrite, "uint8_kernel_ops", lambda: frozenset(
        {"CONV_2D", "RESHAPE", "QUANTIZE", "DEQUANTIZE"}))
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patch lives in this process
    model, calib = narrow_then_wide
    out, rep = tmp_path / "u8.tflite", tmp_path / "u8.json"
    with pytest.raises(VerificationError, match="uint8_kernels") as err:
        quantize(str(model), str(out), calib=str(calib), dtype="uint8", report=str(rep))
    r = err.value.result
    q = read_model(str(out))
    fcs = [op.index for op in q.main.operators if op.name == "FULLY_CONNECTED"]
    assert len(fcs) == 2
    missing = json.loads(rep.read_text())["ops_without_uint8_kernel"]
    assert [(m["op"], m["index"]) for m in missing] == [("FULLY_CONNECTED", i) for i in fcs]
    text = r.format_text()
    assert "UINT8: 2 op(s) have NO uint8 kernel in TFLite: FULLY_CONNECTED (operator" in text
    assert any("no uint8 kernel" in w and "FULLY_CONNECTED" in w for w in r.warnings)


def test_uint8_kernel_list_names_the_common_ops():
    from tflite_inverter.quantization.uint8_rewrite import uint8_kernel_ops

    ops = uint8_kernel_ops()
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE", "DEQUANTIZE"} <= ops
    assert "BATCH_MATMUL" not in ops and "SQUARED_DIFFERENCE" not in ops


def test_worst_layers_pairs_tensors_by_data_flow_when_names_differ(narrow_then_wide, tmp_path):
    """The float model with every tensor renamed: the pairing falls back to the graph match and
    finds the same worst layer with the same SQNR."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    from tflite_inverter.quantization.layers import worst_layers

    model, calib = narrow_then_wide
    out, rep = tmp_path / "q.tflite", tmp_path / "r.json"
    quantize(str(model), str(out), calib=str(calib), report=str(rep))
    expected = json.loads(rep.read_text())["worst_layers"]
    fm = fu.convert_bytearray_to_object(bytearray(model.read_bytes()))
    for k, t in enumerate(fm.subgraphs[0].tensors):
        t.name = f"renamed_{k}".encode()
    renamed = bytes(fu.convert_object_to_bytearray(fm))
    held = np.load(calib)[-4:]
    rows = worst_layers(renamed, out.read_bytes(), [{"image": a[None]} for a in held])
    q_names = {t.name for t in read_model(str(out)).main.tensors}
    assert not q_names & {t.name for t in read_model(renamed).main.tensors}
    assert [r["index"] for r in rows] == [r["index"] for r in expected]
    np.testing.assert_allclose([r["sqnr_db"] for r in rows], [r["sqnr_db"] for r in expected], rtol=1e-3)


# -- every bound of the report sets the exit code ------------------------------------------------------
def _fail_first_run(monkeypatch):
    """The uint8 check's run (the first interpreter run of the written model) fails; later ones run."""
    real = evaluate_mod._run_quantized
    calls = []

    def run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise InterpreterError("the TFLite interpreter failed: Node number 3 (FULLY_CONNECTED) failed to prepare")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "_run_quantized", run)
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patch lives in this process


def test_a_uint8_result_that_does_not_run_exits_6_and_is_still_written(narrow_then_wide, tmp_path, monkeypatch,
                                                                         capsys):
    _fail_first_run(monkeypatch)
    model, calib = narrow_then_wide
    out, rep = tmp_path / "u8.tflite", tmp_path / "u8.json"
    code = main(["quantize", str(model), "-o", str(out), "--calib", str(calib), "--dtype", "uint8",
                 "--report", str(rep)])
    assert code == VerificationError.exit_code == 6
    err = capsys.readouterr().err
    assert "uint8_runs" in err and "still written" in err and "check uint8_runs: FAIL" in err
    assert out.exists() and read_model(str(out)).main.operators
    data = json.loads(rep.read_text())
    assert data["passed"] is False
    assert [c["check"] for c in data["checks"] if not c["passed"]] == ["uint8_runs"]


def test_a_float_op_left_in_an_int8_result_exits_6(narrow_then_wide, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_mod, "float_ops", lambda m: ["subgraph 0, operator 1 (MEAN): float tensor(s) 'x'"])
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patch lives in this process
    model, calib = narrow_then_wide
    out = tmp_path / "q.tflite"
    with pytest.raises(VerificationError, match=r"fully_integer.*still written") as err:
        quantize(str(model), str(out), calib=str(calib))
    assert out.exists() and not err.value.result.fully_integer
    assert "NOT fully integer" in str(err.value)


def test_a_reused_ranges_result_beyond_1_lsb_of_the_source_exits_6(tmp_path, monkeypatch):
    """The comparison with the source is real; one element of the result is moved by 2 LSB."""
    from tflite_inverter.quantization import reuse

    real = reuse.lsb_metrics

    def shifted(name, src, got, lsb):
        got = [np.array(g, dtype=np.float64) for g in got]
        got[0].flat[0] += 2 * lsb
        return real(name, src, got, lsb)

    monkeypatch.setattr(reuse, "lsb_metrics", shifted)
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patch lives in this process
    out = tmp_path / "q.tflite"
    with pytest.raises(VerificationError, match="outputs_within_1_lsb") as err:
        quantize(str(SAMPLE_DIR / "int8.tflite"), str(out))
    assert out.exists()
    (row,) = err.value.result.accuracy
    assert row["max_lsb"] == pytest.approx(2.0)


def test_a_reused_ranges_result_within_1_lsb_exits_0(tmp_path):
    out = tmp_path / "q.tflite"
    assert main(["quantize", str(SAMPLE_DIR / "int8.tflite"), "-o", str(out)]) == 0
    r = quantize(str(SAMPLE_DIR / "int8.tflite"), str(tmp_path / "q2.tflite"))
    assert {c["check"] for c in r.checks()} == {"fully_integer", "activations_match_source", "weights_match_source",
                                                "outputs_within_1_lsb"}


def _reuse_result(rows, evaluated_on="8 seeded inputs"):
    return QuantizeResult(source="s", output="o", dtype="int8", io={}, granularity="per-channel", reference="source",
                          lossless=True, accuracy=rows, evaluated_on=evaluated_on,
                          weights_check={"identical": True, "equivalent": True, "compared": 3, "differing": []},
                          activations_check={"identical": True, "equivalent": True, "compared": 3, "differing": []})


@pytest.mark.parametrize("max_lsb, within, ok", [(1.0, 1.0, True), (1.0, 0.9999, False), (2.0, 0.99, False)])
def test_the_1_lsb_bound_at_its_boundary(max_lsb, within, ok):
    """Every element within 1 LSB, as lsb_metrics counts it (1 + 1e-6); a rounded max of 1 is not enough."""
    r = _reuse_result([{"output": "y", "max_lsb": max_lsb, "within_1_lsb": within}])
    (check,) = [c for c in r.checks() if c["check"] == "outputs_within_1_lsb"]
    assert check["passed"] is ok


@pytest.mark.parametrize("rows, evaluated_on", [
    ([], "not evaluated: the TFLite interpreter failed"),  # the comparison could not run
    ([{"output": "y", "error": "shape [2] != source's [3]"}], "8 seeded inputs"),
    ([{"output": "y", "max_lsb": None, "lsb": None}], "8 seeded inputs"),
])
def test_a_comparison_that_did_not_compare_fails_the_1_lsb_check(rows, evaluated_on):
    r = _reuse_result(rows, evaluated_on)
    (bad,) = [c for c in r.checks() if not c["passed"]]
    assert bad["check"] == "outputs_within_1_lsb" and bad["compared"] is (rows != [])


def test_weights_or_activations_that_differ_from_the_source_fail():
    r = _reuse_result([{"output": "y", "max_lsb": 0.0, "within_1_lsb": 1.0}])
    r.weights_check = {"identical": False, "equivalent": False, "compared": 3, "differing": [{"name": "w"}]}
    r.activations_check = {"identical": False, "equivalent": False, "compared": 3, "differing": [{"name": "a"}]}
    assert {c["check"] for c in r.checks() if not c["passed"]} == {"weights_match_source", "activations_match_source"}
