"""``quantize`` of a model with several signatures: each is calibrated on its own samples, kept in the
result, and measured on its own held-back samples."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import tf
from tflite_inverter.errors import UsageError
from tflite_inverter.model.reader import read_model
from tflite_inverter.quantization.metrics import float_ops
from tflite_inverter.quantization.pipeline import quantize

N = 32


class _TwoHeads(tf.Module):
    """``small``: a dense layer on inputs in [-1, 1]; ``large``: another on inputs in [-50, 50]. If the
    second signature were calibrated on the first one's data, its input scale would clip everything."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.w1 = tf.constant(rng.normal(0, 0.5, (8, 4)).astype(np.float32))
        self.w2 = tf.constant(rng.normal(0, 0.5, (8, 6)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def small(self, x):
        return {"y": tf.nn.relu(tf.matmul(x, self.w1))}

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x"),
                                  tf.TensorSpec([1, 6], tf.float32, name="bias")])
    def large(self, x, bias):
        return {"z": tf.matmul(x, self.w2) + bias}


@pytest.fixture(scope="module")
def two_signatures(tmp_path_factory):
    d = tmp_path_factory.mktemp("sigs")
    mod = _TwoHeads()
    tf.saved_model.save(mod, str(d / "sm"), signatures={"small": mod.small, "large": mod.large})
    conv = tf.lite.TFLiteConverter.from_saved_model(str(d / "sm"), signature_keys=["small", "large"])
    path = d / "two.tflite"
    path.write_bytes(conv.convert())
    assert sorted(s.key for s in read_model(str(path)).signatures) == ["large", "small"]
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", **{
        "small/x": rng.uniform(-1, 1, (N, 1, 8)).astype(np.float32),
        "large/x": rng.uniform(-50, 50, (N, 1, 8)).astype(np.float32),
        "bias": rng.uniform(-5, 5, (N, 1, 6)).astype(np.float32),  # a bare name: the one signature with it
    })
    return path


def _input_scales(path) -> dict[str, float]:
    m = read_model(str(path))
    out = {}
    for s in m.signatures:
        sg = m.subgraphs[s.subgraph_index]
        for name, i in s.inputs:
            out[f"{s.key}/{name}"] = float(sg.tensors[i].quantization.scale[0])
    return out


def test_each_signature_is_calibrated_on_its_own_samples(two_signatures, tmp_path):
    out = tmp_path / "q.tflite"
    r = quantize(str(two_signatures), str(out), calib=str(two_signatures.parent / "calib.npz"), io="int8")
    m = read_model(str(out))
    assert sorted(s.key for s in m.signatures) == ["large", "small"]
    assert float_ops(m) == [] and r.fully_integer
    scales = _input_scales(out)
    # int8 over [-1, 1] vs [-50, 50]: the scales differ by the ranges' ratio
    assert scales["small/x"] == pytest.approx(2 / 255, rel=0.05), scales
    assert scales["large/x"] == pytest.approx(100 / 255, rel=0.05), scales
    rows = {a["output"]: a for a in r.accuracy}
    assert sorted(rows) == ["large/z", "small/y"]
    for row in rows.values():
        assert row["samples"] >= 6 and row["sqnr_db"] > 30.0, row
    assert set(r.calibration["signatures"]) == {"large", "small"}
    assert "unavailable" in r.worst_layers


def test_per_tensor_report_compares_each_signature_with_per_channel(two_signatures, tmp_path):
    r = quantize(str(two_signatures), str(tmp_path / "q.tflite"), calib=str(two_signatures.parent / "calib.npz"),
                 granularity="per-tensor")
    assert sorted(m["output"] for m in r.per_channel) == ["large/z", "small/y"]
    assert all(m["sqnr_db"] > 30.0 for m in r.per_channel)


def test_missing_array_of_one_signature_names_it_and_writes_nothing(two_signatures, tmp_path):
    rng = np.random.default_rng(1)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"small/x": rng.uniform(-1, 1, (N, 1, 8)).astype(np.float32),
                     "bias": rng.uniform(-1, 1, (N, 1, 6)).astype(np.float32)})
    out = tmp_path / "q.tflite"
    with pytest.raises(UsageError, match=r"signature 'large': .*no array for input 'large/x' or 'x'"):
        quantize(str(two_signatures), str(out), calib=str(bad))
    assert sorted(os.listdir(tmp_path)) == ["bad.npz"]  # nothing written


def test_array_for_no_signature_is_an_error(two_signatures, tmp_path):
    rng = np.random.default_rng(1)
    bad = tmp_path / "extra.npz"
    np.savez(bad, **{"small/x": rng.uniform(-1, 1, (N, 1, 8)).astype(np.float32),
                     "large/x": rng.uniform(-1, 1, (N, 1, 8)).astype(np.float32),
                     "bias": rng.uniform(-1, 1, (N, 1, 6)).astype(np.float32),
                     "large/typo": rng.uniform(-1, 1, (N, 1, 6)).astype(np.float32)})
    with pytest.raises(UsageError, match=r"'large/typo' match no model input"):
        quantize(str(two_signatures), str(tmp_path / "q.tflite"), calib=str(bad))


def test_source_signature_naming_non_input_tensors_is_requantized_on_the_real_io(tmp_path):
    """A SignatureDef naming the int8 tensors behind added uint8 I/O (see rebuild.plan_signatures):
    the result's SignatureDef names its real uint8 I/O under the source's names, and the result runs
    like the source through plain invoke and through that signature."""
    from ai_edge_litert.interpreter import Interpreter

    from tests.helpers import uint8_io_in_front_of_int8_model

    src = tmp_path / "src.tflite"
    src.write_bytes(uint8_io_in_front_of_int8_model())
    out = tmp_path / "q.tflite"
    r = quantize(str(src), str(out))
    assert r.interface["signatures_repointed"] == ["serving_default"]
    assert "here they name the subgraph's real inputs and outputs" in r.format_text()
    res = Interpreter(model_path=str(out))
    runner = res.get_signature_runner("serving_default")
    assert runner.get_input_details()["x"]["index"] == res.get_input_details()[0]["index"]
    ref_it = Interpreter(model_path=str(src))
    ref_it.allocate_tensors()
    for x in (np.array([[168, 68, 228, 135]], np.uint8), np.array([[0, 255, 128, 1]], np.uint8)):
        ref_it.set_tensor(ref_it.get_input_details()[0]["index"], x)
        ref_it.invoke()
        ref = ref_it.get_tensor(ref_it.get_output_details()[0]["index"])
        np.testing.assert_array_equal(runner(x=x)["y"], ref)
