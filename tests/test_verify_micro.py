"""TFLite Micro as the second verification reference (verify.select_reference / run_micro / _micro_child).

The stock interpreter (ai_edge_litert) lacks tflite-micro's Signal* audio ops and misreads an int8
SVDF with int8 time weights and state; for those models the original runs in TFLite Micro's Python
interpreter (the ``tflite-micro`` package) instead, and the report names the reference. The
end-to-end test builds a one-op SignalWindow model and checks three independent computations
against each other: TFLite Micro run here directly, a literal transcription of the kernel, and the
rebuilt SavedModel.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from flatbuffers import flexbuffers

from tflite_inverter import read_model
from tflite_inverter.conversion.reference import (
    int8_svdf_narrow_inputs,
    micro_positions,
    select_reference,
    stock_misreads,
)
from tflite_inverter.errors import InterpreterError

from .conftest import CORPUS_DIR
from .tflite_builder import build_model, patch_model

HAS_MICRO = importlib.util.find_spec("tflite_micro") is not None
needs_micro = pytest.mark.skipif(not HAS_MICRO, reason="tflite-micro is not installed (pip install tflite-micro)")

SIGNAL_MISSING = ("RuntimeError: Encountered unresolved custom op: SignalWindow. See instructions: "
                  "https://www.tensorflow.org/lite/guide/ops_custom Node number 0 (SignalWindow) failed to prepare.")


# -- reference selection (no runtime needed) ------------------------------------------------------
def test_the_stock_interpreter_stays_the_reference_when_it_runs_the_model():
    assert select_reference(None, []) is None


def test_a_missing_op_hands_over_to_tflite_micro_and_says_which_op():
    why = select_reference(SIGNAL_MISSING, [])
    assert why is not None and "lacks an op" in why and "SignalWindow" in why
    assert "See instructions" not in why  # the link is noise in a one-line note


@pytest.mark.parametrize("error", [
    "ValueError: Cannot set tensor: Dimension mismatch. Got 3 but expected 4 for input 0.",
    "crashed with signal 11",
    "tflite/kernels/svdf.cc:125 SizeOfDimension(state, 1) != memory_size * num_filters (9 != 42)",
])
def test_other_stock_failures_are_not_handed_over(error):
    """A shape the model rejects, a crash or an invalid model stays the stock interpreter's verdict."""
    assert select_reference(error, []) is None


def test_a_known_misread_hands_over_even_without_a_stock_failure():
    assert select_reference(None, ["SVDF (op 0 of subgraph 0) ..."]) == "SVDF (op 0 of subgraph 0) ..."


def _svdf_int8(state_type: str, time_type: str) -> bytes:
    """An int8 SVDF (rank 1, 2 units, memory 3, 4 inputs) with the given state/time-weights types."""
    q = {"scale": [0.05], "zero_point": [0]}
    tensors = [("x", [1, 4], "INT8", None, q),
               ("wf", [2, 4], "INT8", np.ones((2, 4), np.int8), q),
               ("wt", [2, 3], time_type, np.ones((2, 3), np.dtype(time_type.lower())), q),
               ("b", [2], "INT32", np.zeros(2, np.int32), {"scale": [0.0025], "zero_point": [0]}),
               ("state", [1, 6], state_type, None, q, {"is_variable": True}),
               ("y", [1, 2], "INT8", None, q)]
    return build_model(tensors=tensors, ops=[("SVDF", [0, 1, 2, 3, 4], [5], "SVDFOptions",
                                              {"rank": 1, "fused_activation_function": "RELU"})],
                       inputs=[0], outputs=[5])


@pytest.mark.parametrize("state,time,want", [
    ("INT16", "INT16", []),
    ("INT8", "INT16", [4]),
    ("INT8", "INT8", [2, 4]),
])
def test_the_int8_svdf_misread_is_detected_from_the_ir(tmp_path, state, time, want):
    path = tmp_path / "svdf.tflite"
    path.write_bytes(_svdf_int8(state, time))
    model = read_model(str(path))
    assert int8_svdf_narrow_inputs(model.main.operators[0], model.main) == want
    found = stock_misreads(model)
    assert len(found) == (1 if want else 0)
    if want:
        assert "1 int8 SVDF op(s) (op 0 of subgraph 0)" in found[0] and "int16" in found[0]


def test_a_float_svdf_with_int8_weights_is_not_a_misread(tmp_path):
    """Hybrid SVDF (float input): the int8 constants are weights the kernel reads as int8."""
    def to_float(tree: dict[str, Any]) -> None:
        for t in tree["subgraphs"][0]["tensors"]:
            if t["name"] in ("x", "y", "state", "b"):
                t["type"] = "FLOAT32"
                t.pop("quantization", None)
    path = tmp_path / "svdf_hybrid.tflite"
    path.write_bytes(patch_model(_svdf_int8("INT8", "INT8"), to_float))
    assert stock_misreads(read_model(str(path))) == []


@pytest.mark.corpus
def test_the_corpus_keyword_model_is_a_known_misread():
    path = CORPUS_DIR / "tflite-micro__keyword_scrambled_8bit.tflite"
    if not path.exists():
        pytest.skip("../shared/models is absent")
    (found,) = stock_misreads(read_model(str(path)))  # by the IR, not the file name
    assert found.startswith("7 int8 SVDF op(s) (op 1 of subgraph 0, op 3 of subgraph 0,")


# -- TFLite Micro runs -----------------------------------------------------------------------------
WINDOW_SHIFT = 12


def _window_model(n: int = 64) -> tuple[bytes, np.ndarray]:
    w = np.random.default_rng(1).integers(-32768, 32768, n).astype(np.int16)
    model = build_model(tensors=[("x", [1, n], "INT16"), ("w", [n], "INT16", w), ("y", [1, n], "INT16")],
                        ops=[{"op": "CUSTOM:SignalWindow", "inputs": [0, 1], "outputs": [2],
                              "custom_options": flexbuffers.Dumps({"shift": WINDOW_SHIFT})}],
                        inputs=[0], outputs=[2])
    return model, w


def _ref_window(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """signal/src/window.cc: (x * w) >> shift, saturated to int16 (a transcription, not the product)."""
    return np.clip((x.astype(np.int64) * w.astype(np.int64)) >> WINDOW_SHIFT, -32768, 32767).astype(np.int16)


def test_micro_positions_map_a_plan_onto_subgraph_0(tmp_path):
    from tflite_inverter.conversion.plan import IOPlan

    path = tmp_path / "w.tflite"
    path.write_bytes(_window_model()[0])
    model = read_model(str(path))
    sg = model.main
    plan = IOPlan(None, "serving_default", ["x"], ["y"], ["x"], ["y"], [sg.tensors[0]], [sg.tensors[2]],
                  [np.dtype(np.int16)])
    assert micro_positions(model, plan) == ([0], [0])
    plan.subgraph_index = 1
    assert "subgraph 0 only" in micro_positions(model, plan)


def test_the_arena_message_classification():
    from tflite_inverter.conversion._micro_child import arena_too_small

    assert arena_too_small("Failed to allocate tail memory. Requested: 1032, available 320, missing: 712")
    assert arena_too_small("Failed to allocate variable tensor of size 1024")
    assert not arena_too_small("Failed to get registration from op code CUSTOM")
    assert not arena_too_small("Didn't find op for builtin opcode 'TILE'")


@needs_micro
def test_the_arena_grows_from_a_too_small_start_and_is_bounded(monkeypatch):
    from tflite_micro import runtime

    from tflite_inverter.conversion import _micro_child

    model, _ = _window_model()  # needs 2 KiB (TFLite Micro crashes below ~512 bytes: start above that)
    interp, arena = _micro_child.make_interpreter(runtime, model, 1024)
    assert arena == 2048 and interp is not None
    monkeypatch.setattr(_micro_child, "ARENA_MAX", 1024)
    with pytest.raises(RuntimeError, match="arena is too small even at 1 KiB"):
        _micro_child.make_interpreter(runtime, model, 1024)


@needs_micro
def test_a_signal_op_model_is_verified_against_tflite_micro(tmp_path):
    """The stock interpreter lacks SignalWindow: convert verifies against TFLite Micro and says so.
    Full-range int16 inputs (the default random ones are 0..3, all but silence for a window)."""
    import tensorflow as tf
    from tflite_micro import runtime

    from tflite_inverter.conversion.pipeline import convert

    model, w = _window_model()
    path = tmp_path / "window.tflite"
    path.write_bytes(model)
    x = np.random.default_rng(2).integers(-32768, 32768, (1, 64)).astype(np.int16)
    np.savez(tmp_path / "x.npz", x=x)
    result = convert(str(path), str(tmp_path / "sm"), inputs=str(tmp_path / "x.npz"),
                     report=str(tmp_path / "r.json"))
    assert result.verified and result.passed
    assert result.reference["reference"].startswith("tflite-micro ")
    assert "SignalWindow" in result.reference["reference_why"]
    assert "reference: tflite-micro" in result.note
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reference"].startswith("tflite-micro ") and "lacks an op" in report["reference_why"]
    assert [o["rule"] for o in report["outputs"]] == ["exact"]

    # three independent computations agree: TFLite Micro here, the transcription, the SavedModel
    interp = runtime.Interpreter.from_bytes(model, arena_size=1 << 20)
    interp.set_input(x, 0)
    interp.invoke()
    micro = interp.get_output(0)
    want = _ref_window(x, w)
    np.testing.assert_array_equal(micro, want)
    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    (got,) = fn(**{next(iter(fn.structured_input_signature[1])): tf.constant(x)}).values()
    np.testing.assert_array_equal(got.numpy(), want)
    assert np.count_nonzero(want) > 32  # the inputs exercise the op (not all zeros)


def test_without_tflite_micro_the_missing_reference_is_named(tmp_path, monkeypatch):
    """A machine without the package: the error names both references and how to get the second."""
    from tflite_inverter.conversion import reference
    from tflite_inverter.conversion.plan import IOPlan

    fake = tmp_path / "fake" / "tflite_micro"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    monkeypatch.setenv("PYTHONPATH", f"{fake.parent}:{__import__('os').environ.get('PYTHONPATH', '')}")
    path = tmp_path / "window.tflite"
    path.write_bytes(_window_model()[0])
    model = read_model(str(path))
    sg = model.main
    plan = IOPlan(None, "serving_default", ["x"], ["y"], ["x"], ["y"], [sg.tensors[0]], [sg.tensors[2]],
                         [np.dtype(np.int16)])
    with pytest.raises(InterpreterError) as err:
        reference.reference_outputs(str(path), [plan], None, model=model)
    msg = str(err.value)
    assert "lacks an op" in msg and "SignalWindow" in msg
    assert "TFLite Micro, is not installed (pip install tflite-micro)" in msg

