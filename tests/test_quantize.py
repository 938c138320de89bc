"""``quantize`` end to end on a small conv net the test builds: recipes, accuracy, errors, CLI."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

from tests.helpers import run_interpreter, tf
from tflite_inverter.cli.quantize import add_quantize
from tflite_inverter.errors import OutputExistsError, UsageError
from tflite_inverter.model.reader import read_model
from tflite_inverter.quantization.calibration import RANDOM_WARNING
from tflite_inverter.quantization.metrics import float_ops, output_metrics
from tflite_inverter.quantization.pipeline import quantize

H, W, C, CLASSES = 16, 16, 3, 10
SPEC = tf.TensorSpec([1, H, W, C], tf.float32, name="image")


def _net():
    """CONV_2D+RELU -> DEPTHWISE_CONV_2D+RELU6 -> MAX_POOL_2D -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX."""
    rng = np.random.default_rng(1)
    k1 = tf.constant(rng.normal(0, 0.3, (3, 3, C, 8)).astype(np.float32))
    b1 = tf.constant(rng.normal(0, 0.1, 8).astype(np.float32))
    k2 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 1)).astype(np.float32))
    b2 = tf.constant(rng.normal(0, 0.1, 8).astype(np.float32))
    wf = tf.constant(rng.normal(0, 0.1, (8 * 8 * 8, CLASSES)).astype(np.float32))
    bf = tf.constant(rng.normal(0, 0.1, CLASSES).astype(np.float32))

    def fn(x):
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k1, 1, "SAME"), b1))
        y = tf.nn.relu6(tf.nn.bias_add(tf.nn.depthwise_conv2d(y, k2, [1, 1, 1, 1], "SAME"), b2))
        y = tf.nn.max_pool2d(y, 2, 2, "VALID")
        y = tf.reshape(y, [1, -1])
        return tf.nn.softmax(tf.matmul(y, wf) + bf)

    return fn


def _smooth_images(n: int, seed: int) -> np.ndarray:
    """Image-like samples in [-1, 1]: smooth gradients and blobs, not white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
    out = np.empty((n, H, W, C), np.float32)
    for i in range(n):
        for c in range(C):
            a, b, ph = rng.uniform(0.5, 4, 2).tolist() + [rng.uniform(0, 6.28)]
            out[i, :, :, c] = np.sin(a * 3 * xx + b * 2 * yy + ph) * rng.uniform(0.5, 1.0)
    return out


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    f = tf.function(_net(), input_signature=[SPEC], autograph=False)
    blob = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    d = tmp_path_factory.mktemp("qmodel")
    path = d / "net.tflite"
    path.write_bytes(blob)
    names = [op.name for op in read_model(blob).main.operators]
    assert names == ["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"], names
    np.save(d / "calib.npy", _smooth_images(40, 0))
    return path


@pytest.fixture(scope="module")
def calib(float_model):
    return str(float_model.parent / "calib.npy")


def _types(path) -> set[str]:
    m = read_model(str(path))
    return {t.type_name for t in m.main.tensors}


def _weight_scales(path, op_name: str) -> int:
    m = read_model(str(path))
    op = next(o for o in m.main.operators if o.name == op_name)
    return m.main.tensors[op.inputs[1]].quantization.scale.size


# -- int8 -----------------------------------------------------------------------------------------
def test_int8_is_fully_integer_runs_and_meets_sqnr(float_model, calib, tmp_path):
    out = tmp_path / "q.tflite"
    r = quantize(str(float_model), str(out), calib=calib, io="int8")
    m = read_model(str(out))
    assert float_ops(m) == [] and r.fully_integer
    assert _types(out) <= {"INT8", "INT32"}, _types(out)  # no float tensor anywhere, int8 I/O
    assert _weight_scales(out, "CONV_2D") == 8  # per-channel by default
    x = np.clip(np.round(_smooth_images(1, 99) / m.main.tensors[m.main.inputs[0]].quantization.scale[0])
                + m.main.tensors[m.main.inputs[0]].quantization.zero_point[0], -128, 127).astype(np.int8)
    (y,) = run_interpreter(out.read_bytes(), [x])  # it runs in the interpreter, outside our code
    assert y.shape == (1, CLASSES) and y.dtype == np.int8
    (acc,) = r.accuracy
    assert acc["samples"] == 8 and acc["sqnr_db"] > 20.0 and acc["cosine"] > 0.99, acc
    assert "top1_agreement" in acc
    assert 0 < r.size_after < r.size_before


def test_per_tensor_is_produced_and_compared_with_per_channel(float_model, calib, tmp_path):
    out, rep = tmp_path / "pt.tflite", tmp_path / "pt.json"
    r = quantize(str(float_model), str(out), calib=calib, granularity="per-tensor", report=str(rep))
    assert _weight_scales(out, "CONV_2D") == 1 and _weight_scales(out, "DEPTHWISE_CONV_2D") == 1
    assert r.per_channel is not None and r.per_channel[0]["sqnr_db"] > 20.0
    data = json.loads(rep.read_text())
    (cmp,) = data["per_tensor_vs_per_channel"]
    assert cmp["sqnr_db_per_tensor"] == pytest.approx(r.accuracy[0]["sqnr_db"])
    assert cmp["sqnr_db_difference"] == pytest.approx(cmp["sqnr_db_per_tensor"] - cmp["sqnr_db_per_channel"])
    assert data["fully_integer"] is True and data["size_bytes"]["after"] == os.path.getsize(out)


def test_float_io_keeps_only_quantize_and_dequantize_at_the_boundary(float_model, calib, tmp_path):
    out = tmp_path / "fio.tflite"
    r = quantize(str(float_model), str(out), calib=calib, io="float32")
    names = [op.name for op in read_model(str(out)).main.operators]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE", names
    assert r.float_ops == [] and r.accuracy[0]["sqnr_db"] > 20.0


def test_imx8mp_target_takes_uint8_camera_input(float_model, calib, tmp_path):
    out, rep = tmp_path / "imx.tflite", tmp_path / "imx.json"
    r = quantize(str(float_model), str(out), calib=calib, target="imx8mp", report=str(rep))
    m = read_model(str(out))
    assert m.main.tensors[m.main.inputs[0]].type_name == "UINT8"
    assert r.io == {"input": "uint8", "output": "uint8"} and r.float_ops == []
    target = json.loads(rep.read_text())["target_report"]
    if "unavailable" not in target:  # the inspect --target prediction is embedded
        assert target["name"] == "imx8mp" and target["summary"]["operators"] == len(m.main.operators)
        assert "ops on the NPU" in r.format_text()


@pytest.mark.parametrize("dtype,expect", [
    ("int16x8", {"INT16"}), ("float16", {"FLOAT16"}), ("dynamic", {"INT8", "FLOAT32"}), ("float32", {"FLOAT32"}),
])
def test_other_recipes(float_model, calib, tmp_path, dtype, expect):
    out = tmp_path / f"{dtype}.tflite"
    r = quantize(str(float_model), str(out), calib=calib if dtype == "int16x8" else None, dtype=dtype)
    assert expect <= _types(out)
    floor = {"int16x8": 40.0, "float16": 40.0, "dynamic": 25.0, "float32": 100.0}[dtype]
    assert r.accuracy[0]["sqnr_db"] > floor, r.accuracy


def test_saved_model_source_written_by_convert(float_model, calib, tmp_path):
    from tflite_inverter.conversion.pipeline import convert

    sm = tmp_path / "sm"
    convert(str(float_model), str(sm), float_io=True, fake_quant=False, verify=False)
    r = quantize(str(sm), str(tmp_path / "sm.tflite"), calib=calib)
    assert r.float_ops == [] and r.accuracy[0]["sqnr_db"] > 20.0


def test_quantized_sample_model_requantizes_with_data(tmp_path):
    src = os.path.join(os.path.dirname(__file__), "..", "models", "int8_uint8_io.tflite")
    if not os.path.exists(src):
        pytest.skip("models/int8_uint8_io.tflite is absent")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "c.npy", rng.integers(0, 256, (10, 1, 32, 32, 3), dtype=np.uint8))
    # uint8 data for a float (rebuilt) input: dequantized with the source's own input parameters
    r = quantize(src, str(tmp_path / "rq.tflite"), calib=str(tmp_path / "c.npy"))
    assert r.float_ops == [] and r.accuracy[0]["sqnr_db"] > 15.0
    # without data: requantized with its own ranges (tests/test_quantize_reuse.py covers it in depth)
    r = quantize(src, str(tmp_path / "x.tflite"))
    assert r.calibration["kind"] == "source ranges" and r.reference == "source"
    assert r.weights_check["identical"] and r.accuracy[0]["max_lsb"] <= 1


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["shape", "dtype", "npz-missing", "npz-extra", "too-few", "images-no-norm"])
def test_bad_calibration_data_is_refused_and_nothing_written(float_model, tmp_path, kind):
    from PIL import Image

    if kind == "shape":
        np.save(tmp_path / "c.npy", np.zeros((10, 8, 8, 3), np.float32))
        calib, match = "c.npy", r"input 'image' expects samples of shape \[1, 16, 16, 3\]"
    elif kind == "dtype":
        np.save(tmp_path / "c.npy", np.zeros((10, 16, 16, 3), np.complex64))
        calib, match = "c.npy", "input 'image' is float32, the data is complex64"
    elif kind == "npz-missing":
        np.savez(tmp_path / "c.npz", a=np.zeros((10, 16, 16, 3)), b=np.zeros((10, 16, 16, 3)))
        calib, match = "c.npz", "no array for input 'image'"
    elif kind == "npz-extra":
        np.savez(tmp_path / "c.npz", image=np.zeros((10, 16, 16, 3)), labels=np.zeros(10))
        calib, match = "c.npz", "'labels' match no model input"
    elif kind == "too-few":
        np.save(tmp_path / "c.npy", np.zeros((2, 16, 16, 3), np.float32))
        calib, match = "c.npy", "2 sample\\(s\\); at least 4"
    else:
        (tmp_path / "imgs").mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
        calib, match = "imgs", "pass --mean M --std S"
    out = tmp_path / "never.tflite"
    with pytest.raises(UsageError, match=match):
        quantize(str(float_model), str(out), calib=str(tmp_path / calib), report=str(tmp_path / "never.json"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".never", "never"))) == []


def test_image_folder_calibration(float_model, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, x in enumerate(_smooth_images(8, 5)):
        Image.fromarray(((x + 1) * 127.5).astype(np.uint8)).resize((24, 20)).save(folder / f"{i}.png")
    r = quantize(str(float_model), str(tmp_path / "img.tflite"), calib=str(folder), mean="127.5", std="127.5")
    assert r.calibration["kind"] == "images" and r.calibration["held_back_samples"] == 2
    assert r.accuracy[0]["sqnr_db"] > 20.0


def test_random_calibration_warns_in_result_and_report(float_model, tmp_path):
    rep = tmp_path / "r.json"
    r = quantize(str(float_model), str(tmp_path / "r.tflite"), calib="random", samples=8, report=str(rep))
    assert RANDOM_WARNING in r.warnings and r.format_text().startswith("WARNING: RANDOM CALIBRATION DATA")
    data = json.loads(rep.read_text())
    assert data["calibration"]["kind"] == "random" and RANDOM_WARNING in data["warnings"]


def test_calibrated_dtype_without_data_is_refused(float_model, tmp_path):
    with pytest.raises(UsageError, match="--dtype int8 needs calibration data: --calib DATA"):
        quantize(str(float_model), str(tmp_path / "x.tflite"))


def test_uint8_everywhere_is_a_lossless_rewrite_of_per_tensor_int8(float_model, calib, tmp_path):
    u8, i8 = tmp_path / "u8.tflite", tmp_path / "i8pt.tflite"
    r = quantize(str(float_model), str(u8), calib=calib, dtype="uint8", io="uint8")
    quantize(str(float_model), str(i8), calib=calib, granularity="per-tensor", io="int8")
    mu, mi = read_model(str(u8)), read_model(str(i8))
    assert {t.type_name for t in mu.main.tensors} == {"UINT8", "INT32"} and r.float_ops == []
    for tu, ti in zip(mu.main.tensors, mi.main.tensors):  # same graph: zero points +128, scales kept
        if ti.type_name == "INT8":
            assert tu.quantization.scale.tolist() == ti.quantization.scale.tolist()
            assert tu.quantization.zero_point.tolist() == [int(ti.quantization.zero_point[0]) + 128]
            if ti.is_constant:
                np.testing.assert_array_equal(tu.data().astype(np.int16), ti.data().astype(np.int16) + 128)
    x = _smooth_images(3, 7)
    tin = mi.main.tensors[mi.main.inputs[0]]
    xi = np.clip(np.round(x / tin.quantization.scale[0]) + tin.quantization.zero_point[0], -128, 127)
    for k in range(3):
        (yu,) = run_interpreter(u8.read_bytes(), [(xi[k:k + 1] + 128).astype(np.uint8)])
        (yi,) = run_interpreter(i8.read_bytes(), [xi[k:k + 1].astype(np.int8)])
        assert np.max(np.abs(yu.astype(np.int16) - 128 - yi.astype(np.int16))) <= 1
    assert r.accuracy[0]["sqnr_db"] > 20.0 and r.per_channel is not None
    with pytest.raises(UsageError, match="uint8 is per-tensor by definition"):
        quantize(str(float_model), str(tmp_path / "x.tflite"), calib=calib, dtype="uint8", granularity="per-channel")


def test_uint8_rewrite_refuses_per_channel_models(float_model, calib, tmp_path):
    from tflite_inverter.quantization.uint8_rewrite import int8_to_uint8

    quantize(str(float_model), str(tmp_path / "pc.tflite"), calib=calib)
    with pytest.raises(UsageError, match="quantized per channel .* uint8 needs one scale per tensor"):
        int8_to_uint8((tmp_path / "pc.tflite").read_bytes())


@pytest.mark.parametrize("kw,match", [
    (dict(dtype="float16", io="int8"), "only float32 I/O is possible"),
    (dict(dtype="float16", target="imx8mp"), "runs 8-bit integer models only"),
    (dict(dtype="dynamic", granularity="per-tensor"), "per-tensor applies to full-integer"),
    (dict(io="int16"), "--io int16 goes with --dtype int16x8"),
])
def test_incompatible_options_are_refused(float_model, tmp_path, kw, match):
    with pytest.raises(UsageError, match=match):
        quantize(str(float_model), str(tmp_path / "x.tflite"), **kw)


def test_existing_output_needs_force(float_model, tmp_path):
    out = tmp_path / "q.tflite"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="pass --force"):
        quantize(str(float_model), str(out), dtype="float32")
    assert out.read_bytes() == b"keep me"
    quantize(str(float_model), str(out), dtype="float32", force=True)
    assert read_model(str(out)).main.operators
    assert [p.name for p in tmp_path.iterdir()] == ["q.tflite"]  # no temp file left behind


# -- CLI ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tflite-inverter")
    add_quantize(p.add_subparsers(dest="command"))
    return p


def test_cli_end_to_end(float_model, calib, tmp_path, capsys):
    out, rep = tmp_path / "cli.tflite", tmp_path / "cli.json"
    args = _parser().parse_args(["quantize", str(float_model), "-o", str(out), "--calib", calib,
                                 "--granularity", "per-tensor", "--report", str(rep)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "SQNR" in text and "SQNR per-channel" in text and "fully integer" in text and "model written to" in text
    assert json.loads(rep.read_text())["granularity"] == "per-tensor"


def test_cli_random_warns_loudly(float_model, tmp_path, capsys):
    args = _parser().parse_args(["quantize", str(float_model), "-o", str(tmp_path / "r.tflite"), "--calib", "random",
                                 "--samples", "6"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "WARNING: RANDOM CALIBRATION DATA" in captured.out and "RANDOM CALIBRATION DATA" in captured.err


def test_cli_rejects_unknown_dtype():
    with pytest.raises(SystemExit):
        _parser().parse_args(["quantize", "m.tflite", "-o", "x.tflite", "--dtype", "int4"])


# -- metrics --------------------------------------------------------------------------------------
def test_output_metrics_values():
    ref = [np.array([[1.0, 2.0, 3.0]]), np.array([[3.0, 1.0, 0.0]])]
    got = [np.array([[1.0, 2.0, 3.1]]), np.array([[0.0, 1.0, 3.0]])]
    m = output_metrics("y", ref, got)
    noise = 0.1 ** 2 + 9 + 9
    assert m["sqnr_db"] == pytest.approx(10 * np.log10(24 / noise))
    assert m["max_abs_err"] == pytest.approx(3.0) and m["top1_agreement"] == 0.5
    assert output_metrics("y", ref, ref)["sqnr_db"] == float("inf")
    assert "top1_agreement" not in output_metrics("y", [np.zeros((1, 4, 4))], [np.zeros((1, 4, 4))])


def test_imx8mp_nnapi_target_writes_true_uint8_with_the_placement_report(tmp_path):
    from tflite_inverter.model.reader import read_model
    from tflite_inverter.quantization.pipeline import quantize

    from .conftest import SAMPLE_DIR

    rng = np.random.default_rng(5)
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.uniform(-1, 1, size=(12, 32, 32, 3)).astype(np.float32))
    out = tmp_path / "nnapi.tflite"
    result = quantize(str(SAMPLE_DIR / "float32.tflite"), str(out), calib=str(calib), target="imx8mp-nnapi")
    model = read_model(str(out))
    kinds = {t.type_name for t in model.main.tensors if not t.is_constant or t.is_quantized}
    assert kinds <= {"UINT8", "INT32"}, kinds
    assert result.target_report and "summary" in result.target_report



def test_calibrated_quantization_of_recurrent_ops_is_refused_before_the_calibrator_crashes(tmp_path):
    """TensorFlow's calibrator segfaults on rebuilt LSTM state loops: refuse by name, write nothing."""
    from tflite_inverter.errors import UnsupportedOpError
    from tflite_inverter.quantization.pipeline import quantize

    from .conftest import CORPUS_DIR

    path = CORPUS_DIR / "tflite-micro__trained_lstm.tflite"
    if not path.is_file():
        pytest.skip("../shared/models is absent")
    out = tmp_path / "q.tflite"
    with pytest.raises(UnsupportedOpError, match="operator 0 .UNIDIRECTIONAL_SEQUENCE_LSTM.*calibrator crashes"):
        quantize(str(path), str(out), calib="random")
    assert not out.exists()
    quantize(str(path), str(out), dtype="float16")  # the suggested alternative works
    assert out.exists()


@pytest.mark.corpus
@pytest.mark.parametrize("name,min_sqnr", [("ai-edge-quantizer-git__conv_fc_mnist.tflite", 25.0),
                                           ("mediapipe-git__face_detection_front_2019.tflite", 15.0)])
@pytest.mark.parametrize("onednn", ["1", "0"], ids=["onednn-on", "onednn-off"])
def test_corpus_float_models_quantize_to_int8_and_true_uint8(tmp_path, monkeypatch, name, min_sqnr, onednn):
    """Real float models: int8 and true uint8 are fully integer, run, meet an SQNR floor (measured with
    random calibration: the corpus ships no real inputs), and uint8 agrees with per-tensor int8; with
    TensorFlow's oneDNN graph rewrites on and off (the setting of quantize's TensorFlow child)."""
    from .conftest import CORPUS_DIR

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
    path = CORPUS_DIR / name
    if not path.is_file():
        pytest.skip("../shared/models is absent")
    i8, i8pt, u8 = tmp_path / "i8.tflite", tmp_path / "i8pt.tflite", tmp_path / "u8.tflite"
    r8 = quantize(str(path), str(i8), calib="random", samples=24)
    quantize(str(path), str(i8pt), calib="random", samples=24, granularity="per-tensor", io="int8")
    ru = quantize(str(path), str(u8), calib="random", samples=24, dtype="uint8", io="uint8")
    for r, kinds in ((r8, {"INT8", "INT32"}), (ru, {"UINT8", "INT32"})):
        model = read_model(r.output)
        inner = {t.type_name for t in model.main.tensors} - {"FLOAT32"}  # float only at declared float I/O
        assert inner <= kinds, inner
        assert r.float_ops == [] or all(op in ("QUANTIZE", "DEQUANTIZE") for op in r.float_ops)
        assert min(m["sqnr_db"] for m in r.accuracy) > min_sqnr
    mi = read_model(str(i8pt))
    tin = mi.main.tensors[mi.main.inputs[0]]
    assert tin.type_name == "INT8"
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=[max(d, 1) for d in tin.shape_signature]).astype(np.float32)
    xi = np.clip(np.round(x / tin.quantization.scale[0]) + tin.quantization.zero_point[0], -128, 127)
    outs_i = run_interpreter(i8pt.read_bytes(), [xi.astype(np.int8)])
    outs_u = run_interpreter(u8.read_bytes(), [(xi + 128).astype(np.uint8)])
    for a, b in zip(outs_i, outs_u):
        assert a.dtype == np.int8 and b.dtype == np.uint8
        assert np.max(np.abs(a.astype(np.int16) - (b.astype(np.int16) - 128))) <= 2
