"""The rebuild core end to end on a small conv net: float, fp16 weights and full-integer forms."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from .helpers import assert_float_close, assert_quantized_close, quantized_inputs, random_like, to_tflite

_rng = np.random.default_rng(0)
W = (_rng.normal(size=(3, 3, 3, 8)) * 0.3).astype(np.float32)
B = _rng.normal(size=8).astype(np.float32)
DW = (_rng.normal(size=(3, 3, 8, 2)) * 0.3).astype(np.float32)
FC = (_rng.normal(size=(4 * 4 * 16, 10)) * 0.1).astype(np.float32)
SPECS = [tf.TensorSpec([1, 16, 16, 3], tf.float32)]


def small_net(x):
    y = tf.nn.relu6(tf.nn.conv2d(x, W, [1, 1, 1, 1], "SAME") + B)
    y = tf.nn.depthwise_conv2d(y, DW, [1, 2, 2, 1], "SAME")
    y = tf.nn.max_pool2d(y, 2, 2, "VALID")
    y = tf.reshape(y, [1, -1])
    return tf.nn.softmax(tf.matmul(y, FC))


@pytest.mark.parametrize("mode", ["float", "fp16"])
def test_float_forms_match_interpreter(mode):
    model = to_tflite(small_net, SPECS, mode)
    err = assert_float_close(model, random_like(SPECS), rtol=1e-5, atol=1e-6)
    assert err < 1e-5


@pytest.mark.parametrize("mode", ["int8", "uint8", "int8_per_tensor"])
def test_full_integer_forms_match_within_one_lsb(mode):
    model = to_tflite(small_net, SPECS, mode)
    worst, within1 = assert_quantized_close(model, quantized_inputs(model, random_like(SPECS)))
    assert worst <= 1 and within1 == 1.0


def test_signature_outputs_follow_signature_order_not_subgraph_order():
    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2], tf.float32), tf.TensorSpec([3], tf.float32)])
        def f(self, a, b):
            return {"z_first": b * 2.0, "a_second": a + 1.0}

    m = M()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m)
    model = conv.convert()
    from tflite_inverter.model.reader import read_model
    from tflite_inverter.rebuild import make_module

    mod = make_module(read_model(model))
    plan = mod.plans[0]
    feed = {s.name: tf.constant(np.arange(s.tensor.shape[0], dtype=np.float32)) for s in plan.inputs}
    out = mod.concrete[plan.key](**feed)
    got = {k: v.numpy().tolist() for k, v in out.items()}
    names = {s.name for s in plan.inputs}
    assert names == {"a", "b"}
    assert got["z_first"] == [0.0, 2.0, 4.0]
    assert got["a_second"] == [1.0, 2.0]


# -- hostile shapes: TensorFlow's shape inference names the operator --------------------------------


def _conv_with_input_narrower_than_its_kernel() -> bytes:
    from .tflite_builder import single_op_model

    w = np.zeros((1, 3, 3, 1), np.float32)
    return single_op_model("CONV_2D", [([1, 5, 2, 1], "FLOAT32", None), ([1, 3, 3, 1], "FLOAT32", w),
                                       ([1], "FLOAT32", np.zeros(1, np.float32))],
                           [([1, 3, 0, 1], "FLOAT32")], {"padding": "VALID", "stride_w": 1, "stride_h": 1})


def test_op_whose_shapes_tensorflow_rejects_is_an_invalid_model_naming_the_operator():
    """A mutated width (5 -> 0 in a fuzzed mixed16x8) made Conv2D's shape function raise a bare ValueError."""
    from tflite_inverter.errors import InvalidModelError
    from tflite_inverter.model.reader import read_model
    from tflite_inverter.rebuild import make_module

    with pytest.raises(InvalidModelError) as info:
        make_module(read_model(_conv_with_input_narrower_than_its_kernel()))
    msg = str(info.value)
    assert msg.startswith("subgraph 0, operator 0 (CONV_2D): TensorFlow rejects")
    assert "Negative dimension size" in msg and "[1,5,2,1]" in msg and "{{node" not in msg


def test_a_bug_in_a_rebuilder_stays_a_traceback(monkeypatch):
    """Only TensorFlow op errors become named errors; our own mistakes must stay visible."""
    from tflite_inverter.model.reader import read_model
    from tflite_inverter.ops import registry
    from tflite_inverter.rebuild import make_module

    spec = registry.find("CONV_2D")

    def broken(ctx):
        raise KeyError("a rebuilder bug")

    monkeypatch.setitem(registry._REGISTRY, "CONV_2D", registry.OpSpec("CONV_2D", broken, spec.family, spec.check))
    with pytest.raises(KeyError, match="a rebuilder bug"):
        make_module(read_model(_conv_with_input_narrower_than_its_kernel()))


@pytest.mark.parametrize("op", ["LESS", "ADD"])
@pytest.mark.parametrize("inputs", [[0, -1], [0]], ids=["absent", "missing"])
def test_required_input_marked_absent_or_missing_is_an_invalid_model_naming_the_input(op, inputs):
    """Flipped bits turned an operator's input into -1 (absent) or cut its inputs vector; tf.less(a, None)
    raised a bare ValueError."""
    from tflite_inverter.errors import InvalidModelError
    from tflite_inverter.model.reader import read_model
    from tflite_inverter.rebuild import make_module

    from .tflite_builder import build_model

    out = "BOOL" if op == "LESS" else "FLOAT32"
    model = build_model(tensors=[("a", [2], "FLOAT32"), ("y", [2], out)], ops=[(op, inputs, [1])],
                        inputs=[0], outputs=[1])
    with pytest.raises(InvalidModelError) as info:
        make_module(read_model(model))
    how = "absent (-1)" if len(inputs) == 2 else "missing (the operator has 1 inputs)"
    assert str(info.value) == f"subgraph 0, operator 0 ({op}): input(s) 1 {how}, but the op needs them"
