"""--input-shape: models with dynamic input dims are verified, calibrated and evaluated at a given
shape; without it, a model that rejects the default shape (each dynamic dim 1) is a usage error
that names the inputs, not an interpreter failure."""

from __future__ import annotations

import os
import re
import tempfile

import numpy as np
import pytest

from tests.helpers import run_interpreter, tf, to_tflite
from tflite_inverter import convert
from tflite_inverter.cli.main import build_parser, main
from tflite_inverter.errors import UsageError
from tflite_inverter.model.input_shapes import InputRef, parse_input_shapes, resolve_input_shapes
from tflite_inverter.model.reader import read_model
from tflite_inverter.quantization.pipeline import quantize

FRAME = 160
W = np.random.default_rng(5).normal(size=(16, 8)).astype(np.float32)
K = (np.random.default_rng(6).normal(size=(3, 3, 3, 4)) * 0.3).astype(np.float32)


def _frames(x):
    """Audio front-end stand-in: cuts [1, ?] samples into frames of 160 (needs a multiple of 160)."""
    f = tf.reshape(x, [-1, FRAME])
    return tf.reduce_sum(f * f, axis=1) / FRAME + tf.reduce_mean(x)


def _two_inputs(x, y):
    return tf.matmul(x, W) + y  # x: [?, ?] (the inner dim must be 16), y: [?, 8]


def _conv(x):
    return tf.nn.relu(tf.nn.conv2d(x, K, [1, 1, 1, 1], "SAME"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("dyn")
    out = {}
    for name, fn, specs in (
            ("frames", _frames, [tf.TensorSpec([1, None], tf.float32, name="audio")]),
            ("two", _two_inputs, [tf.TensorSpec([None, None], tf.float32, name="x"),
                                  tf.TensorSpec([None, 8], tf.float32, name="y")]),
            ("conv", _conv, [tf.TensorSpec([1, None, None, 3], tf.float32, name="image")])):
        path = d / f"{name}.tflite"
        path.write_bytes(to_tflite(fn, specs, "float"))
        out[name] = str(path)
    return out


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Every temporary file or folder the tool makes lands in a folder of its own, to count leftovers
    (with a fresh TensorFlow child per call, as the CLI has: a reused child keeps its scratch folder)."""
    from tflite_inverter import isolation

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(isolation, "_reused", None)
    return scratch


def _ours(folder) -> list[str]:
    """Leftovers of the tool (TensorFlow's autograph writes its own files there too)."""
    return [p for p in os.listdir(folder) if "tflite-inverter" in p or "tflite_inverter" in p]


# -- parsing and checking (no TensorFlow) ----------------------------------------------------------
def test_the_cli_and_python_forms_parse_alike():
    assert parse_input_shapes(["audio=1x16000", "y=2x8"]) == {"audio": (1, 16000), "y": (2, 8)}
    assert parse_input_shapes(["1x16000"]) == {None: (1, 16000)}
    assert parse_input_shapes({"audio": (1, 16000)}) == {"audio": (1, 16000)}
    assert parse_input_shapes({"audio": "1x16000"}) == {"audio": (1, 16000)}
    assert parse_input_shapes((1, 16000)) == {None: (1, 16000)}
    assert parse_input_shapes("sig/x=3") == {"sig/x": (3,)}
    assert parse_input_shapes(None) == {}


@pytest.mark.parametrize("value, match", [
    (["audio=1x"], "expected NAME=D1xD2"),
    (["audio=1xN"], "expected NAME=D1xD2"),
    (["audio=1x0"], "positive"),
    (["audio=-1x5"], "positive"),
    ((1, -1), "positive"),
    (["=1x5"], "name before '=' is empty"),
    (["a=1", "a=2"], "given twice"),
    (["1x5", "a=1"], "single-input model"),
    ([1.5, 2], "expected a mapping"),
])
def test_bad_values_are_usage_errors(value, match):
    with pytest.raises(UsageError, match=match):
        parse_input_shapes(value)


REFS = [InputRef(None, ("x", "serving_default_x:0"), (None, None)), InputRef(None, ("y",), (None, 8))]


def test_shapes_are_checked_against_the_inputs():
    assert resolve_input_shapes({"x": (2, 16)}, REFS) == [(2, 16), None]
    assert resolve_input_shapes({"serving_default_x:0": (2, 16), "y": (2, 8)}, REFS) == [(2, 16), (2, 8)]
    with pytest.raises(UsageError, match=r"no input 'z'; its inputs are 'x' \[\?, \?\], 'y' \[\?, 8\]"):
        resolve_input_shapes({"z": (1,)}, REFS)
    with pytest.raises(UsageError, match="rank 2, the shape given has rank 3"):
        resolve_input_shapes({"x": (1, 2, 3)}, REFS)
    with pytest.raises(UsageError, match="dim 1 is 8, not 9"):
        resolve_input_shapes({"y": (4, 9)}, REFS)
    with pytest.raises(UsageError, match="2 inputs .*NAME="):
        resolve_input_shapes({None: (2, 16)}, REFS)


def test_signature_scoped_names():
    refs = [InputRef("add", ("x",), (None,)), InputRef("sub", ("x",), (None,))]
    assert resolve_input_shapes({"x": (5,)}, refs) == [(5,), (5,)]
    assert resolve_input_shapes({"add/x": (5,)}, refs) == [(5,), None]
    assert resolve_input_shapes({None: (5,)}, refs) == [(5,), (5,)]  # each signature has one input
    with pytest.raises(UsageError, match=r"its inputs are 'add/x' \[\?\], 'sub/x' \[\?\]"):
        resolve_input_shapes({"y": (5,)}, refs)


def test_help_documents_the_flag(capsys):
    for command in ("convert", "quantize"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--input-shape [NAME=]D1xD2..." in text and "dynamic dims" in text, command


# -- convert --------------------------------------------------------------------------------------
def test_without_the_flag_a_rejected_default_shape_is_a_usage_error_naming_the_input(models, tmp_path,
                                                                                       private_tmp, capsys):
    out = tmp_path / "sm"
    assert main(["convert", models["frames"], "-o", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "input 'audio' [1, ?] (dynamic dim 1, fed as 1x1)" in err
    assert "--input-shape audio=1xN" in err and "RESHAPE" in err
    assert "cannot serve as the reference" not in err  # the interpreter is not to blame
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tflite-inverter-")]
    assert _ours(private_tmp) == []


def test_every_dynamic_input_is_named(models, tmp_path):
    with pytest.raises(UsageError) as err:
        convert(models["two"], str(tmp_path / "sm"))
    msg = str(err.value)
    assert "input 'x' [?, ?] (dynamic dims 0, 1" in msg and "input 'y' [?, 8] (dynamic dim 0" in msg
    assert "--input-shape x=NxN --input-shape y=Nx8" in msg
    with pytest.raises(UsageError) as err:  # y given, x still open: only x is named
        convert(models["two"], str(tmp_path / "sm"), input_shapes={"y": (1, 8)})
    assert "'x'" in str(err.value) and "'y'" not in str(err.value)
    assert not (tmp_path / "sm").exists()


def test_with_the_flag_convert_verifies_at_that_shape_and_keeps_the_dims_dynamic(models, tmp_path):
    out = tmp_path / "sm"
    result = convert(models["frames"], str(out), input_shapes=(1, 3 * FRAME))
    assert result.verified and result.passed
    assert [c.shape for c in result.checks] == [[3]]
    loaded = tf.saved_model.load(str(out))
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]["audio"]
    assert spec.shape.as_list() == [1, None]  # the .tflite's [1, -1]
    # the numbers, against the interpreter, at two lengths the model accepts
    model = read_model(models["frames"])
    assert list(model.main.tensors[model.main.inputs[0]].shape_signature) == [1, -1]
    for n in (3, 7):
        x = np.random.default_rng(n).uniform(-1, 1, (1, n * FRAME)).astype(np.float32)
        want = run_interpreter(open(models["frames"], "rb").read(), [x])[0]
        got = list(fn(tf.constant(x)).values())[0].numpy()
        assert got.shape == (n,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_two_dynamic_inputs_by_name(models, tmp_path):
    result = convert(models["two"], str(tmp_path / "sm"), input_shapes={"x": (3, 16), "y": (3, 8)})
    assert result.passed and [c.shape for c in result.checks] == [[3, 8]]
    spec = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"].structured_input_signature[1]
    assert spec["x"].shape.as_list() == [None, None] and spec["y"].shape.as_list() == [None, 8]


def test_inputs_file_conflicting_with_the_flag_is_a_usage_error(models, tmp_path):
    npz = tmp_path / "x.npz"
    np.savez(npz, audio=np.zeros((1, 2 * FRAME), np.float32))
    with pytest.raises(UsageError, match=r"shape \[1, 320\], --input-shape says 1x480"):
        convert(models["frames"], str(tmp_path / "sm"), inputs=str(npz), input_shapes={"audio": (1, 3 * FRAME)})
    assert not (tmp_path / "sm").exists()
    ok = convert(models["frames"], str(tmp_path / "sm2"), inputs=str(npz))  # real inputs need no flag
    assert ok.passed and [c.shape for c in ok.checks] == [[2]]


@pytest.mark.parametrize("flag, match", [
    (["--input-shape", "nosuch=1x480"], r"no input 'nosuch'; its inputs are 'audio' \[1, \?\]"),
    (["--input-shape", "audio=2x480"], "dim 0 is 1, not 2"),
    (["--input-shape", "audio=480"], "rank 2"),
    (["--input-shape", "audio=1x0"], "positive"),
    (["--input-shape", "audio=1x480", "--no-verify"], "--input-shape only applies to verification"),
])
def test_bad_flag_values_exit_2_and_write_nothing(models, tmp_path, capsys, flag, match):
    out = tmp_path / "sm"
    assert main(["convert", models["frames"], "-o", str(out), *flag]) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists()


# -- quantize -------------------------------------------------------------------------------------
def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - got) ** 2), 1e-30)))


def _run_quantized(path: str, x: np.ndarray) -> np.ndarray:
    """Float input -> the quantized model (an int8 input quantized with its parameters; float I/O
    as the source's is fed as is) -> dequantized output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    q = x
    if i["dtype"] == np.int8:
        s, z = i["quantization"]
        q = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
    it.resize_tensor_input(i["index"], q.shape)
    it.allocate_tensors()
    it.set_tensor(i["index"], q)
    it.invoke()
    out = it.get_tensor(o["index"])
    if out.dtype.kind == "f":
        return out.astype(np.float64)
    s, z = o["quantization"]
    return (out.astype(np.float64) - z) * s


def test_quantize_random_calibration_at_the_given_shape(models, tmp_path, private_tmp):
    out = tmp_path / "q.tflite"
    with pytest.raises(UsageError, match=r"input 'audio' \[1, \?\].*--input-shape audio=1xN.*multiple of 160"):
        quantize(models["frames"], str(out), calib="random", samples=8)
    assert not out.exists() and _ours(private_tmp) == []
    result = quantize(models["frames"], str(out), calib="random", samples=8, input_shapes={"audio": "1x480"})
    assert result.accuracy and result.accuracy[0]["sqnr_db"] > 20
    q = read_model(str(out))
    assert list(q.main.tensors[q.main.inputs[0]].shape_signature) == [1, -1]  # still dynamic
    x = np.random.default_rng(1).uniform(-1, 1, (1, 5 * FRAME)).astype(np.float32)
    want = run_interpreter(open(models["frames"], "rb").read(), [x])[0]
    assert _sqnr(want, _run_quantized(str(out), x)) > 20


def test_quantize_calibration_file_shapes_are_checked_against_the_flag(models, tmp_path):
    npz = tmp_path / "c.npz"
    np.savez(npz, audio=np.random.default_rng(0).uniform(-1, 1, (8, 1, 2 * FRAME)).astype(np.float32))
    with pytest.raises(UsageError, match=r"expects samples of shape \[1, 480\]"):
        quantize(models["frames"], str(tmp_path / "q.tflite"), calib=str(npz), input_shapes=(1, 3 * FRAME))
    with pytest.raises(UsageError, match="no input 'nosuch'"):
        quantize(models["frames"], str(tmp_path / "q.tflite"), calib=str(npz), input_shapes={"nosuch": (1, 480)})
    assert not (tmp_path / "q.tflite").exists()
    # samples of a length the model accepts need no flag
    result = quantize(models["frames"], str(tmp_path / "q.tflite"), calib=str(npz), dtype="float16")
    assert result.accuracy[0]["sqnr_db"] > 40


def test_quantize_image_folder_with_dynamic_height_and_width(models, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "img"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for k in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "q.tflite"
    base = ["quantize", models["conv"], "-o", str(out), "--calib", str(folder), "--mean", "127.5", "--std", "127.5"]
    assert main(base) == 2
    assert "--input-shape" in capsys.readouterr().err
    assert main([*base, "--input-shape", "image=1x16x12x3"]) == 0
    q = read_model(str(out))
    assert list(q.main.tensors[q.main.inputs[0]].shape_signature) == [1, -1, -1, 3]
    with Image.open(folder / "0.png") as im:  # a calibration image as the tool feeds it: resized to 12x16
        x = ((np.asarray(im.resize((12, 16), Image.BILINEAR), np.float32) - 127.5) / 127.5)[None]
    want = run_interpreter(open(models["conv"], "rb").read(), [x])[0]
    assert _sqnr(want, _run_quantized(str(out), x)) > 20


# -- a real model with a dynamic batch ------------------------------------------------------------
def test_corpus_model_with_dynamic_batch_verifies_at_batch_3(corpus_dir, tmp_path):
    path = corpus_dir / "ai-edge-quantizer-git__conv_fc_mnist.tflite"
    if not path.exists():
        pytest.skip(f"{path.name} is not in the corpus")
    out = tmp_path / "sm"
    result = convert(str(path), str(out), input_shapes=["conv2d_input=3x28x28x1"])
    assert result.passed and all(c.shape[0] == 3 for c in result.checks)
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert fn.structured_input_signature[1]["conv2d_input"].shape.as_list() == [None, 28, 28, 1]
    x = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    want = run_interpreter(path.read_bytes(), [x])[0]
    got = list(fn(tf.constant(x)).values())[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-4 * float(np.abs(want).max()))
