"""``quantize`` report extras: the layers that lose the most precision, ops without a uint8 kernel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import tf
from tflite_inverter.quantize import quantize
from tflite_inverter.reader import read_model

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
    from tflite_inverter import uint8_rewrite

    monkeypatch.setattr(uint8_rewrite, "uint8_kernel_ops", lambda: frozenset(
        {"CONV_2D", "RESHAPE", "QUANTIZE", "DEQUANTIZE"}))
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patch lives in this process
    model, calib = narrow_then_wide
    out, rep = tmp_path / "u8.tflite", tmp_path / "u8.json"
    r = quantize(str(model), str(out), calib=str(calib), dtype="uint8", report=str(rep))
    q = read_model(str(out))
    fcs = [op.index for op in q.main.operators if op.name == "FULLY_CONNECTED"]
    assert len(fcs) == 2
    missing = json.loads(rep.read_text())["ops_without_uint8_kernel"]
    assert [(m["op"], m["index"]) for m in missing] == [("FULLY_CONNECTED", i) for i in fcs]
    text = r.format_text()
    assert "UINT8: 2 op(s) have NO uint8 kernel in TFLite: FULLY_CONNECTED (operator" in text
    assert any("no uint8 kernel" in w and "FULLY_CONNECTED" in w for w in r.warnings)


def test_uint8_kernel_list_names_the_common_ops():
    from tflite_inverter.uint8_rewrite import uint8_kernel_ops

    ops = uint8_kernel_ops()
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE", "DEQUANTIZE"} <= ops
    assert "BATCH_MATMUL" not in ops and "SQUARED_DIFFERENCE" not in ops


def test_worst_layers_pairs_tensors_by_data_flow_when_names_differ(narrow_then_wide, tmp_path):
    """The float model with every tensor renamed: the pairing falls back to the graph match and
    finds the same worst layer with the same SQNR."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    from tflite_inverter.accuracy import worst_layers

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
