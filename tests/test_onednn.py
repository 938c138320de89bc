"""The rebuilt SavedModel computes the same with TensorFlow's oneDNN graph rewrites on and off.

TensorFlow turns the rewrites on by default on CPUs with AVX512_VNNI/BF16, AVX-VNNI or AMX, and
``TF_ENABLE_ONEDNN_OPTS=1``/``0`` forces them; it reads the variable at import, so each setting
runs in its own child process here (:class:`tflite_inverter.isolation.Worker`). With them on, the
layout pass folds a ``Pad`` that feeds a ``Conv2D`` into the convolution: channel and batch padding
are dropped (an error or wrong values) and a ``Pad`` feeding the residual operand of a
Conv2D+BiasAdd+Add fusion crashes the process (BlazeFace, MediaPipe hand landmarks). The rebuild
pads with ``PadV2`` (ops/common.constant_pad), which the rewrite leaves alone.

Every model is built here with the TFLite converter, converted by the tool in each setting, and the
SavedModel is run again in a child of that setting and compared with the interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.conversion.pipeline import convert
from tflite_inverter.isolation import Worker
from tflite_inverter.model.reader import read_model
from tflite_inverter.quantization.converter_fixups import padv2_to_pad

from .helpers import op_names, run_interpreter, saved_model_outputs, to_tflite

RNG = np.random.default_rng(0)
W24 = RNG.normal(size=[1, 1, 24, 28]).astype(np.float32)
B28 = RNG.normal(size=[28]).astype(np.float32)
W16 = RNG.normal(size=[3, 3, 16, 4]).astype(np.float32)
W8 = RNG.normal(size=[3, 3, 8, 4]).astype(np.float32)
B4 = RNG.normal(size=[4]).astype(np.float32)


def _residual_channel_pad(x):  # BlazeFace's block: conv + bias + (input padded on channels) -> relu
    return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, W24, 1, "VALID"), B28) + tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, 4]]))


def _channel_pad_conv(x):
    return tf.nn.bias_add(tf.nn.conv2d(tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, 8]]), W16, 1, "VALID"), B4)


def _batch_pad_conv(x):
    return tf.nn.bias_add(tf.nn.conv2d(tf.pad(x, [[1, 0], [0, 0], [0, 0], [0, 0]]), W8, 1, "VALID"), B4)


def _spatial_pad_conv(x):
    return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]), W8, 2, "VALID"), B4))


MODELS = {
    "residual_channel_pad": (_residual_channel_pad, [1, 16, 16, 24]),
    "channel_pad_conv": (_channel_pad_conv, [1, 16, 16, 8]),
    "batch_pad_conv": (_batch_pad_conv, [1, 16, 16, 8]),
    "spatial_pad_conv": (_spatial_pad_conv, [1, 17, 15, 8]),
}


@pytest.fixture(scope="module", params=["1", "0"], ids=["onednn-on", "onednn-off"])
def worker(request):
    with Worker(env={"TF_ENABLE_ONEDNN_OPTS": request.param}) as w:
        w.setting = request.param
        yield w


@pytest.mark.parametrize("name", sorted(MODELS))
def test_rebuilt_pad_and_conv_match_the_interpreter_with_rewrites_on_and_off(name, worker, tmp_path, monkeypatch):
    fn, shape = MODELS[name]
    blob = to_tflite(fn, [tf.TensorSpec(shape, tf.float32)])
    assert "PAD" in op_names(blob)
    path = tmp_path / "m.tflite"
    path.write_bytes(blob)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", worker.setting)  # the tool's own TensorFlow child too
    result = convert(str(path), str(tmp_path / "sm"))
    assert result.verified and result.passed
    x = RNG.uniform(-1, 1, size=shape).astype(np.float32)
    want = run_interpreter(blob, [x])[0]
    model = read_model(blob)
    sig_in = result.checks[0]  # one output; the SavedModel's input is named after the TFLite input
    feeds = {model.main.tensors[model.main.inputs[0]].name: x}
    got = worker.call(saved_model_outputs, dict(saved_dir=str(tmp_path / "sm"), key=sig_in.signature, feeds=feeds),
                      model=name)
    (out,) = got.values()
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4 * float(np.abs(want).max()))


def test_plain_pad_is_what_the_rewrite_breaks():
    """The control: the same graph with TensorFlow's ``Pad`` crashes or errs with the rewrites on.
    Without this, the test above would not show that PadV2 is what keeps it working."""
    with Worker(env={"TF_ENABLE_ONEDNN_OPTS": "1"}) as w:
        try:
            enabled = w.call(_onednn_enabled_here, {}, model="probe")
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"probe failed: {exc}")
        if not enabled:
            pytest.skip("this TensorFlow build has no oneDNN graph rewrites")
        from tflite_inverter.errors import TensorFlowCrashError

        with pytest.raises(TensorFlowCrashError, match="SIGSEGV"):
            w.call(_run_plain_pad_residual, {}, model="plain Pad residual")
        assert w.call(_run_plain_pad_channel_conv, {}, model="plain Pad into conv") == "error"


def _onednn_enabled_here() -> bool:
    from .helpers import onednn_enabled

    return onednn_enabled()


def _run_plain_pad_residual() -> None:
    tf.function(_residual_channel_pad)(tf.constant(RNG.normal(size=[1, 16, 16, 24]).astype(np.float32)))


def _run_plain_pad_channel_conv() -> str:
    try:
        tf.function(_channel_pad_conv)(tf.constant(RNG.normal(size=[1, 16, 16, 8]).astype(np.float32)))
        return "ok"
    except tf.errors.InvalidArgumentError:
        return "error"


@pytest.mark.parametrize("mode", ["float", "int8"])
def test_padv2_with_a_zero_value_becomes_pad_and_computes_the_same(mode):
    def fn(x):
        return tf.raw_ops.PadV2(input=x, paddings=[[0, 0], [1, 2], [0, 0], [0, 3]], constant_values=tf.constant(0.0)) * 2.0

    blob = to_tflite(fn, [tf.TensorSpec([1, 4, 5, 3], tf.float32)], mode=mode)
    assert "PADV2" in op_names(blob)
    fixed = padv2_to_pad(blob)
    assert "PADV2" not in op_names(fixed) and "PAD" in op_names(fixed)
    x = RNG.uniform(-1, 1, size=[1, 4, 5, 3]).astype(np.float32)
    if mode == "int8":
        t = read_model(blob).main.tensors[read_model(blob).main.inputs[0]]
        x = np.clip(np.round(x / t.quantization.scale[0]) + t.quantization.zero_point[0], -128, 127).astype(np.int8)
    for a, b in zip(run_interpreter(blob, [x]), run_interpreter(fixed, [x])):
        np.testing.assert_array_equal(a, b)


def test_padv2_with_another_value_stays_padv2():
    def fn(x):
        return tf.pad(x, [[0, 0], [1, 1]], constant_values=0.5)

    blob = to_tflite(fn, [tf.TensorSpec([2, 3], tf.float32)])
    assert padv2_to_pad(blob) == blob
