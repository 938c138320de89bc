"""Mixed float / integer islands (issue 10): an int8 graph whose converter left some ops in float
(DEQUANTIZE -> float ops -> QUANTIZE inside the graph), as style-transfer and normalization nets have.
The faithful rebuild must never produce a NaN or inf the interpreter does not, also on inputs that
saturate the integer grids and on constant inputs (zero variance), and must match it. The same for a float
resource variable read into, and written back from, an int8 graph over several calls.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.model.reader import read_model

from .helpers import run_interpreter, run_rebuilt

SHAPE = [1, 8, 8, 4]


def _instance_norm_with_islands() -> bytes:
    w = tf.constant(np.random.default_rng(0).uniform(-1, 1, size=[3, 3, 4, 4]).astype(np.float32))

    def fn(x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        mean = tf.reduce_mean(y, axis=[1, 2], keepdims=True)
        var = tf.reduce_mean(tf.math.squared_difference(y, mean), axis=[1, 2], keepdims=True)
        z = (y - mean) * tf.math.rsqrt(var + 1e-3)
        z = tf.floor(z * 4.0) / 4.0  # FLOOR has no int8 kernel: a float island between integer ops
        return tf.sigmoid(z) * y

    f = tf.function(fn, input_signature=[tf.TensorSpec(SHAPE, tf.float32)], autograph=False)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, size=SHAPE).astype(np.float32)] for _ in range(32))
    return conv.convert()  # TFLITE_BUILTINS: ops without an int8 kernel stay float


@pytest.fixture(scope="module")
def model() -> bytes:
    return _instance_norm_with_islands()


def test_the_model_has_float_islands_between_integer_ops(model):
    sg = read_model(model).main
    names = [op.name for op in sg.operators]
    assert "FLOOR" in names and names.count("DEQUANTIZE") >= 1 and names.count("QUANTIZE") >= 2, names
    floor = next(op for op in sg.operators if op.name == "FLOOR")
    assert sg.tensors[floor.inputs[0]].type_name == "FLOAT32"
    assert any(sg.tensors[op.inputs[0]].type_name == "INT8" for op in sg.operators if op.name == "MEAN")


@pytest.mark.parametrize("kind", ["random", "saturating", "constant", "zeros"])
def test_no_nan_the_interpreter_does_not_produce(model, kind):
    rng = np.random.default_rng(3)
    x = {"random": rng.uniform(-1, 1, size=SHAPE), "saturating": rng.choice([-50.0, 50.0], size=SHAPE),
         "constant": np.full(SHAPE, 0.7), "zeros": np.zeros(SHAPE)}[kind].astype(np.float32)
    ref = run_interpreter(model, [x])[0]
    got = run_rebuilt(model, [x])[0]
    assert np.isfinite(ref).all()  # the interpreter's output is finite on every kind
    assert np.isfinite(got).all(), f"{np.isnan(got).sum()} NaN / {np.isinf(got).sum()} inf in the rebuild ({kind})"
    out = read_model(model).main
    q = next(op for op in out.operators if op.name == "DEQUANTIZE" and op.outputs[0] in out.outputs)
    scale = float(out.tensors[q.inputs[0]].quantization.scale[0])
    lsb = np.abs(got - ref) / scale
    # the verifier's lsb rule; measured: random, constant and zero inputs within 1 LSB, saturating inputs
    # one of 256 elements 2 LSB off (26 more 1 LSB; likely an upstream 1-LSB difference crossing a FLOOR step
    # of the float island: not located yet)
    assert lsb.max() <= 2.0 + 1e-3 and np.mean(lsb <= 1.0 + 1e-3) >= 0.99, (kind, lsb.max())


# --- resource-variable state next to quantized tensors -------------------------------------------------------


class _StatefulInt8(tf.Module):
    """A float resource variable read into an int8 graph and written back from it every call (the converter
    quantizes the state on read and dequantizes it before ASSIGN_VARIABLE): READ_VARIABLE -> QUANTIZE -> int8
    CONV_2D/MEAN/ADD/SUB/LOGISTIC/MUL -> DEQUANTIZE -> ASSIGN_VARIABLE."""

    def __init__(self) -> None:
        self.w = tf.constant(np.random.default_rng(0).uniform(-1, 1, size=[3, 3, 4, 4]).astype(np.float32))
        self.state = tf.Variable(tf.zeros([1, 1, 1, 4]))

    @tf.function(input_signature=[tf.TensorSpec(SHAPE, tf.float32)], autograph=False)
    def __call__(self, x):
        y = tf.nn.relu(tf.nn.conv2d(x, self.w, 1, "SAME"))
        s = self.state * 0.5 + tf.reduce_mean(y, axis=[1, 2], keepdims=True)
        self.state.assign(s)
        return tf.sigmoid(y - s) * y


@pytest.fixture(scope="module")
def stateful_model() -> bytes:
    m = _StatefulInt8()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.experimental_enable_resource_variables = True
    rng = np.random.default_rng(1)
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, size=SHAPE).astype(np.float32)] for _ in range(32))
    return conv.convert()


def test_the_stateful_model_keeps_float_state_next_to_int8_ops(stateful_model):
    sg = read_model(stateful_model).main
    names = [op.name for op in sg.operators]
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CONV_2D", "LOGISTIC"} <= set(names), names
    read = next(op for op in sg.operators if op.name == "READ_VARIABLE")
    assert sg.tensors[read.outputs[0]].type_name == "FLOAT32"
    assert sg.tensors[next(op for op in sg.operators if op.name == "LOGISTIC").outputs[0]].type_name == "INT8"


@pytest.mark.parametrize("kind", ["random", "saturating", "zeros"])
def test_state_carried_next_to_int8_ops_stays_finite_and_matches(stateful_model, kind):
    from ai_edge_litert.interpreter import Interpreter

    from tflite_inverter.ops.context import RebuildOptions
    from tflite_inverter.rebuild import make_module

    rng = np.random.default_rng(5)
    calls = [{"random": rng.uniform(-1, 1, size=SHAPE), "saturating": rng.choice([-50.0, 50.0], size=SHAPE),
              "zeros": np.zeros(SHAPE)}[kind].astype(np.float32) for _ in range(4)]
    it = Interpreter(model_content=stateful_model)
    it.allocate_tensors()
    module = make_module(read_model(stateful_model), RebuildOptions())
    fn = module.concrete[module.plans[0].key]
    name = module.plans[0].inputs[0].name
    sg = read_model(stateful_model).main
    q = next(op for op in sg.operators if op.name == "DEQUANTIZE" and op.outputs[0] in sg.outputs)
    scale = float(sg.tensors[q.inputs[0]].quantization.scale[0])
    for k, x in enumerate(calls):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        ref = it.get_tensor(it.get_output_details()[0]["index"])
        got = next(iter(fn(**{name: tf.constant(x)}).values())).numpy()
        assert np.isfinite(ref).all()
        assert np.isfinite(got).all(), f"call {k}: {np.isnan(got).sum()} NaN / {np.isinf(got).sum()} inf ({kind})"
        lsb = np.abs(got - ref) / scale
        # the state is carried in float and quantized on each read: the integer arithmetic tracks it call by call
        assert lsb.max() == 0.0, (kind, k, lsb.max())  # measured: every call code for code
