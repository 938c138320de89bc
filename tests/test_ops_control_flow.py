"""Control flow and resource variables: WHILE, IF, CALL, CALL_ONCE, STABLEHLO_COMPOSITE, VAR_HANDLE,
READ_VARIABLE, ASSIGN_VARIABLE — against the TFLite interpreter, over consecutive calls where state
persists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from flatbuffers import flexbuffers

from tflite_inverter.model.reader import read_model
from tflite_inverter.rebuild import make_module

from .conftest import corpus_file
from .helpers import accumulator_model, assert_corpus_file_verifies, assert_float_close
from .tflite_builder import build_model, subgraph


def convert_module(module: tf.Module, fn: Any, resource_variables: bool = False) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], module)
    conv.experimental_enable_resource_variables = resource_variables
    return conv.convert()


def op_names(model: bytes) -> list[list[str]]:
    return [[op.key for op in sg.operators] for sg in read_model(model).subgraphs]


class Calls:
    """One interpreter and one rebuilt module, called in turn with the same inputs (signature names)."""

    def __init__(self, model: bytes):
        self.interp = Interpreter(model_content=model)
        self.runner = self.interp.get_signature_runner("serving_default")
        mod = make_module(read_model(model))
        self.plan = mod.plans[0]
        self.fn = mod.concrete[self.plan.key]
        self.module = mod
        self.model = model

    def __call__(self, **inputs: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        ref = self.runner(**inputs)
        got = self.fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return ref, {k: v.numpy() for k, v in got.items()}


def assert_calls_close(calls: Calls, feeds: list[dict[str, np.ndarray]], atol: float = 1e-5) -> None:
    for k, feed in enumerate(feeds):
        ref, got = calls(**feed)
        assert set(ref) == set(got)
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=atol, err_msg=f"call {k}, {name}")


# -- WHILE ---------------------------------------------------------------------------------------------
class WhileModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
    def f(self, x):
        def cond(i, y):
            return tf.logical_and(i < 10, tf.reduce_sum(y) < 50.0)

        def body(i, y):
            return i + 1, y * 1.5 + 1.0

        i, y = tf.while_loop(cond, body, [tf.constant(0), x])
        return {"i": i, "y": y}


def test_while_loop_iterates_until_the_cond_subgraph_says_stop():
    m = WhileModule()
    model = convert_module(m, m.f)
    assert "WHILE" in op_names(model)[0]
    calls = Calls(model)
    feeds = [{"x": np.array(v, np.float32)} for v in ([0.5, -0.25], [30.0, 30.0], [-100.0, 1.0])]
    assert_calls_close(calls, feeds)
    _, got = calls(x=np.array([0.5, -0.25], np.float32))
    assert 0 < int(got["i"]) <= 10


def _round_trip(calls: Calls, tmp_path: Path) -> tuple[Counter, Counter]:
    """Op histograms of a model and of its rebuild converted back with a plain TFLiteConverter."""
    tf.saved_model.save(calls.module, str(tmp_path), signatures=dict(calls.module.concrete))
    back = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path)).convert()
    return Counter(n for names in op_names(calls.model) for n in names), Counter(
        n for names in op_names(back) for n in names)


def test_while_loop_round_trips_without_extra_ops(tmp_path):
    m = WhileModule()
    calls = Calls(convert_module(m, m.f))
    before, after = _round_trip(calls, tmp_path)
    assert after["WHILE"] == before["WHILE"] == 1
    assert all(after[k] <= before[k] for k in after), (before, after)  # no RESHAPE/STRIDED_SLICE on the cond


class GrowingWhile(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 3], tf.float32)])
    def f(self, x):
        def body(i, y):
            return i + 1, tf.concat([y, y[:, -1:] * 2.0], axis=1)

        _, y = tf.while_loop(lambda i, y: i < 4, body, [tf.constant(0), x],
                             shape_invariants=[tf.TensorShape([]), tf.TensorShape([1, None])])
        return y


def test_while_loop_variable_that_grows_gets_a_free_dimension():
    m = GrowingWhile()
    model = convert_module(m, m.f)
    assert "WHILE" in op_names(model)[0]
    calls = Calls(model)
    ref, got = calls(x=np.array([[1.0, 2.0, 3.0]], np.float32))
    assert ref["output_0"].shape == (1, 7) == got["output_0"].shape
    np.testing.assert_allclose(got["output_0"], ref["output_0"], rtol=1e-6)


# -- IF ------------------------------------------------------------------------------------------------
class CondModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32), tf.TensorSpec([3], tf.float32)])
    def f(self, x, y):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: x * y + 1.0, lambda: x - y * 3.0)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["then", "else"])
def test_if_runs_the_branch_the_predicate_selects(sign):
    m = CondModule()
    model = convert_module(m, m.f)
    assert "IF" in op_names(model)[0]
    x = sign * np.array([0.5, 1.0, 2.0], np.float32)
    y = np.array([3.0, -1.0, 0.25], np.float32)
    # signature-runner feeds: the subgraph's input order (y, x) differs from the signature's (x, y)
    assert_calls_close(Calls(model), [{"x": x, "y": y}], atol=1e-6)


# -- resource variables and CALL_ONCE ---------------------------------------------------------------
class Accumulator(tf.Module):
    def __init__(self):
        super().__init__()
        self.v = tf.Variable(np.full([3], 0.5, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([3], tf.float32)])
    def f(self, x):
        self.v.assign(self.v * 0.5 + x)
        return self.v * 2.0


def test_resource_variable_keeps_its_value_across_calls_and_initializes_once():
    m = Accumulator()
    model = convert_module(m, m.f, resource_variables=True)
    names = op_names(model)
    for op in ("CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"):
        assert op in names[0], names
    calls = Calls(model)
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.uniform(-1, 1, 3).astype(np.float32)} for _ in range(3)]
    assert_calls_close(calls, feeds, atol=1e-6)
    # a fourth call still differs from the first with the same input: the state moved on
    ref1, got1 = calls(**feeds[0])
    assert not np.allclose(got1["output_0"], (0.5 * 0.5 + feeds[0]["x"]) * 2.0)


def test_resource_variable_takes_dtype_and_shape_from_its_assignments():
    m = Accumulator()
    calls = Calls(convert_module(m, m.f, resource_variables=True))
    variables = [v for v in calls.module.tflite_state if v.dtype == tf.float32]
    assert any(v.shape == (3,) for v in variables)


def test_static_initializer_becomes_the_variables_initial_value_and_round_trips_without_an_if(tmp_path):
    """The converter's CALL_ONCE subgraph only assigns constants: the variable starts at them (no
    run-once flag), and converting the rebuild back gives CALL_ONCE again, not an extra IF."""
    m = Accumulator()
    model = convert_module(m, m.f, resource_variables=True)
    calls = Calls(model)
    assert not any(v.dtype == tf.bool for v in calls.module.tflite_state)
    (var,) = [v for v in calls.module.tflite_state if v.dtype == tf.float32]
    np.testing.assert_array_equal(var.numpy(), np.full([3], 0.5, np.float32))
    before, after = _round_trip(calls, tmp_path)
    assert "IF" not in after and after["CALL_ONCE"] == before["CALL_ONCE"] == 1, (before, after)
    assert all(after[k] <= before[k] for k in after), (before, after)


@pytest.mark.parametrize("static", [True, False], ids=["constant-init", "computed-init"])
def test_call_once_initializes_state_like_the_interpreter(static):
    c = np.array([1.0, -2.0, 0.5], np.float32)
    if static:
        model = accumulator_model([("ASSIGN_VARIABLE", [0, 1], [], None, None)], [("c", [3], "FLOAT32", c)])
    else:  # the init subgraph computes its value: run once behind a flag
        model = accumulator_model([("MUL", [1, 1], [2], "MulOptions", {}), ("ASSIGN_VARIABLE", [0, 2], [], None, None)],
                                [("c", [3], "FLOAT32", c), ("cc", [3], "FLOAT32")])
    calls = Calls(model)
    assert any(v.dtype == tf.bool for v in calls.module.tflite_state) is not static
    rng = np.random.default_rng(2)
    feeds = [{"x": rng.uniform(-1, 1, 3).astype(np.float32)} for _ in range(3)]
    ref, got = calls(**feeds[0])  # the first call reads the initial value
    start = c if static else c * c
    for out in (ref, got):
        np.testing.assert_allclose(next(iter(out.values())), start + feeds[0]["x"], rtol=1e-6)
    assert_calls_close(calls, feeds, atol=1e-6)  # and the state moves on alike


# -- STABLEHLO_COMPOSITE and CALL (built directly) --------------------------------------------------
def _decomposition() -> dict[str, Any]:
    """Subgraph 1: (a, b) -> a * b + a."""
    return subgraph(
        tensors=[("a", [2, 3], "FLOAT32"), ("b", [2, 3], "FLOAT32"), ("ab", [2, 3], "FLOAT32"),
                 ("out", [2, 3], "FLOAT32")],
        ops=[("MUL", [0, 1], [2], "MulOptions", {}), ("ADD", [2, 0], [3], "AddOptions", {})],
        inputs=[0, 1], outputs=[3], name="decomposition")


def test_stablehlo_composite_runs_its_decomposition_subgraph():
    model = build_model(
        tensors=[("x", [2, 3], "FLOAT32"), ("y", [2, 3], "FLOAT32"), ("z", [2, 3], "FLOAT32")],
        ops=[("STABLEHLO_COMPOSITE", [0, 1], [2], "StableHLOCompositeOptions",
              {"name": "test.mul_add", "decomposition_subgraph_index": 1, "version": 0,
               "composite_attributes": bytes(flexbuffers.Dumps({"scale": 0.5})),
               "composite_attributes_format": "FLEXBUFFERS"})],
        inputs=[0, 1], outputs=[2], subgraphs=[_decomposition()])
    rng = np.random.default_rng(1)
    inputs = [rng.uniform(-2, 2, (2, 3)).astype(np.float32) for _ in range(2)]
    assert_float_close(model, inputs, rtol=1e-6, atol=1e-6)


def test_call_runs_the_named_subgraph_inline():
    model = build_model(
        tensors=[("x", [2, 3], "FLOAT32"), ("y", [2, 3], "FLOAT32"), ("z", [2, 3], "FLOAT32")],
        ops=[("CALL", [0, 1], [2], "CallOptions", {"subgraph": 1})],
        inputs=[0, 1], outputs=[2], subgraphs=[_decomposition()])
    mod = make_module(read_model(model))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.full((2, 3), 0.5, np.float32)
    out = mod.concrete[mod.plans[0].key](x=tf.constant(x), y=tf.constant(y))
    np.testing.assert_allclose(next(iter(out.values())).numpy(), x * y + x)


# -- corpus ---------------------------------------------------------------------------------------------
CORPUS = [
    "litert-git__call_once_mul.tflite",
    "litert-git__multi_subgraphs_while.tflite",
    "litert-git__nested_while.tflite",
    "litert-git__resource_vars_calibrated.tflite",
    "ai-edge-quantizer-git__sdpa_composite.tflite",
    "litert-git__odml_sdpa_composite_mqa.tflite",
]


@pytest.mark.corpus
@pytest.mark.parametrize("name", CORPUS)
def test_corpus_control_flow_models_verify(name, tmp_path):
    assert_corpus_file_verifies(corpus_file(name), tmp_path / "sm")
