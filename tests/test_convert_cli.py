"""convert end to end: SavedModel written atomically, verified, refused loudly and completely."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter import convert
from tflite_inverter.cli.main import main
from tflite_inverter.errors import (
    InterpreterError,
    NotVerifiedError,
    OutputExistsError,
    UnsupportedOpError,
    VerificationError,
)
from tflite_inverter.model.reader import read_model
from tflite_inverter.rebuild import check_supported

from .helpers import to_tflite

_rng = np.random.default_rng(3)
W = (_rng.normal(size=(3, 3, 2, 4)) * 0.5).astype(np.float32)
SPECS = [tf.TensorSpec([1, 8, 8, 2], tf.float32, name="image")]


def _net(x):
    return tf.nn.relu(tf.nn.conv2d(x, W, [1, 1, 1, 1], "SAME"))


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("m") / "float.tflite"
    path.write_bytes(to_tflite(_net, SPECS, "float"))
    return str(path)


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("m") / "int8.tflite"
    path.write_bytes(to_tflite(_net, SPECS, "uint8"))
    return str(path)


def test_convert_writes_a_verified_trainable_savedmodel(float_model, tmp_path):
    out = tmp_path / "sm"
    result = convert(float_model, str(out))
    assert result.verified and result.passed
    assert all(c.max_abs_err <= 1e-5 for c in result.checks)
    loaded = tf.saved_model.load(str(out))
    assert list(loaded.signatures) == ["serving_default"]
    x = np.ones([1, 8, 8, 2], np.float32)
    y = list(loaded.signatures["serving_default"](tf.constant(x)).values())[0].numpy()
    np.testing.assert_allclose(y, _net(tf.constant(x)).numpy(), atol=1e-5)
    # weights are trainable variables with gradients: the model can be fine-tuned
    weights = [v for v in loaded.tflite_weights if v.trainable]
    assert sorted(tuple(v.shape) for v in weights) == [(3, 3, 2, 4), (4,)]  # kernel, converter-made bias
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(loaded.sig_serving_default(tf.constant(x))["Identity"])
    grads = tape.gradient(loss, weights)
    assert grads[0] is not None and float(tf.reduce_sum(tf.abs(grads[0]))) > 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tflite-inverter-")]  # no temp dir left


def test_integer_io_is_kept_unless_float_io(int8_model, tmp_path):
    convert(int8_model, str(tmp_path / "a"))
    sig = tf.saved_model.load(str(tmp_path / "a")).signatures["serving_default"]
    assert sig.structured_input_signature[1]["image"].dtype == tf.uint8
    convert(int8_model, str(tmp_path / "b"), float_io=True)
    sig = tf.saved_model.load(str(tmp_path / "b")).signatures["serving_default"]
    assert sig.structured_input_signature[1]["image"].dtype == tf.float32


def test_existing_output_is_never_replaced_without_force(float_model, tmp_path):
    out = tmp_path / "sm"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        convert(float_model, str(out))
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["convert", float_model, "-o", str(out)]) == 8
    convert(float_model, str(out), force=True)
    assert not (out / "keep.txt").exists() and (out / "saved_model.pb").exists()


def test_cli_convert_prints_the_error_table_and_writes_a_report(float_model, tmp_path, capsys):
    report = tmp_path / "r.json"
    code = main(["convert", float_model, "-o", str(tmp_path / "sm"), "--report", str(report)])
    assert code == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0].split()
    assert head[3:6] == ["rule", "threshold", "measured"] and "float" in out and "ok" in out
    data = json.loads(report.read_text())
    row = data["outputs"][0]
    assert data["passed"] is True and row["max_abs_err"] <= 1e-5
    assert row["rule"] == "float" and row["measured"]["max_abs_err"] == row["max_abs_err"]
    assert row["threshold"]["max_abs_err"] == pytest.approx(max(1e-4 * row["ref_max_abs"], row["reference_spread"]))


def _builtin_kernels(model: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output 0 of ``model`` from the interpreter's default kernels and from its built-in ones."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    outs = []
    for kind in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
        it = Interpreter(model_path=model, experimental_op_resolver_type=kind)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    return outs[0], outs[1]


def test_the_reference_spread_is_the_gap_between_the_interpreters_two_kernel_sets(float_model, tmp_path):
    from tflite_inverter.conversion.plan import random_inputs

    result = convert(float_model, str(tmp_path / "sm"))
    plan = io_plans_of(float_model)[0]
    x = random_inputs(plan, 0)[0]
    default, builtin = _builtin_kernels(float_model, x)
    (row,) = result.checks
    assert row.reference_spread == pytest.approx(float(np.max(np.abs(default.astype(np.float64) - builtin))), abs=1e-12)
    assert row.threshold["spread_term"] == row.reference_spread


def io_plans_of(model_path: str):
    from tflite_inverter.conversion.pipeline import io_plans
    from tflite_inverter.rebuild import make_module

    m = read_model(model_path)
    return io_plans(m, make_module(m))


def _add_model(outputs: list[int]) -> bytes:
    """y = x + [0, 1, 2, 3] whose SignatureDef names no output; subgraph 0 has ``outputs``."""
    from .tflite_builder import build_model

    return build_model(
        tensors=[("x", [4], "FLOAT32"), ("c", [4], "FLOAT32", np.arange(4, dtype=np.float32)),
                 ("y", [4], "FLOAT32")],
        ops=[("ADD", [0, 1], [2], "AddOptions", {})], inputs=[0], outputs=outputs,
        signature_defs=[{"signature_key": "run", "subgraph_index": 0, "inputs": [{"name": "x", "tensor_index": 0}],
                         "outputs": []}])


def test_subgraph_outputs_a_signature_does_not_name_are_exposed_and_verified(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "m.tflite"
    path.write_bytes(_add_model([2]))
    result = convert(str(path), str(tmp_path / "sm"))
    assert [c.name for c in result.checks] == ["y"] and result.passed
    assert "names 0 of its subgraph's 1 outputs" in result.note
    x = np.array([0.5, -1.0, 2.0, 7.0], np.float32)
    it = Interpreter(model_path=str(path))
    it.get_signature_runner("run")(x=x)  # returns nothing: the SignatureDef names no output
    want = it.get_tensor(2)
    got = tf.saved_model.load(str(tmp_path / "sm")).signatures["run"](x=tf.constant(x))["y"].numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, x + np.arange(4))


def test_a_model_with_no_output_to_compare_is_not_verified(tmp_path, capsys):
    path = tmp_path / "m.tflite"
    path.write_bytes(_add_model([]))
    out = tmp_path / "sm"
    assert main(["convert", str(path), "-o", str(out)]) == NotVerifiedError.exit_code == 11
    assert "NOT verified" in capsys.readouterr().err
    assert (out / "saved_model.pb").exists()


def test_every_unsupported_op_is_listed_at_once_with_its_location():
    from .tflite_builder import build_model

    model = build_model(
        tensors=[("x", [2], "FLOAT32", None, None), ("y", [2], "FLOAT32", None, None),
                 ("z", [2], "FLOAT32", None, None)],
        ops=[("CUSTOM:NoSuchOpA", [0], [1], None, None, b""), ("CUSTOM:NoSuchOpB", [1], [2], None, None, b"")],
        inputs=[0], outputs=[2])
    with pytest.raises(UnsupportedOpError) as err:
        check_supported(read_model(model))
    msg = str(err.value)
    assert "2 unsupported" in msg
    assert "subgraph 0, operator 0 (CUSTOM:NoSuchOpA)" in msg and "subgraph 0, operator 1 (CUSTOM:NoSuchOpB)" in msg


def test_an_interpreter_failure_is_a_clear_error_not_a_crash(tmp_path, monkeypatch):
    from tflite_inverter.conversion import reference

    monkeypatch.setattr(reference, "sys", type("S", (), {"executable": "/bin/false"}))
    with pytest.raises(InterpreterError) as err:
        reference.run_tflite("/nonexistent.tflite", [(None, [], [], [])])
    assert "interpreter" in str(err.value)


def test_a_segfaulting_interpreter_is_reported_by_signal(tmp_path, monkeypatch):
    from tflite_inverter.conversion import reference

    script = tmp_path / "crash.sh"
    script.write_text("#!/bin/sh\nkill -SEGV $$\n")
    script.chmod(0o755)
    monkeypatch.setattr(reference, "sys", type("S", (), {"executable": str(script)}))
    with pytest.raises(InterpreterError) as err:
        reference.run_tflite("/x.tflite", [(None, [], [], [])])
    assert "crashed with signal 11" in str(err.value)


def test_an_original_the_interpreter_cannot_run_is_written_but_flagged_unverified(float_model, tmp_path,
                                                                                  monkeypatch):
    from tflite_inverter.conversion import reference

    def refuse(*args, **kwargs):
        raise InterpreterError("the TFLite interpreter failed: Node number 0 (SomeCustomOp) failed to prepare")

    monkeypatch.setattr(reference, "run_tflite", refuse)
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patch lives in this process
    out = tmp_path / "sm"
    with pytest.raises(InterpreterError, match="written to .* but NOT verified: .*SomeCustomOp"):
        convert(float_model, str(out))
    assert (out / "saved_model.pb").exists()


def test_an_explicit_tolerance_governs_float_outputs_of_quantized_models(int8_model, tmp_path):
    """--float-io --no-fake-quant: the clean float graph is judged by the user's tolerance, not in LSBs."""
    strict = convert(int8_model, str(tmp_path / "a"), float_io=True, fake_quant=False, tolerance=0.5)
    assert strict.passed and all(c.max_lsb is None for c in strict.checks)
    with pytest.raises(VerificationError):
        convert(int8_model, str(tmp_path / "b"), float_io=True, fake_quant=False, tolerance=1e-9)


@pytest.mark.parametrize("extra", [["--inputs", "x.npz"], ["--tolerance", "0.1"]])
def test_verification_options_with_no_verify_are_a_usage_error_and_write_nothing(float_model, tmp_path, extra):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 8), np.float32))
    extra = [str(tmp_path / a) if a.endswith(".npz") else a for a in extra]
    out = tmp_path / "sm"
    assert main(["convert", float_model, "-o", str(out), "--no-verify", *extra]) == 2
    assert not out.exists()


def test_tensorflow_failing_at_run_time_is_a_named_error_and_leaves_nothing(float_model, tmp_path, monkeypatch):
    """An op kernel error while verifying (GatherV2 index out of range in a fuzzed model) was a traceback;
    it is a TensorFlowCrashError (exit 9) naming the signature and node, and no SavedModel or temp dir remains."""
    from tflite_inverter.errors import TensorFlowCrashError
    from tflite_inverter.ops import registry

    spec = registry.find("CONV_2D")

    def gathers_out_of_range(ctx):
        x = ctx.input(0)
        index = tf.cast(tf.reduce_sum(x) * 0, tf.int32) + 7  # known only when the model runs
        return [tf.concat([x, x], -1) * tf.gather(tf.ones([2]), index)]

    monkeypatch.setitem(registry._REGISTRY, "CONV_2D",
                        registry.OpSpec("CONV_2D", gathers_out_of_range, spec.family, spec.check))
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")  # the patched rebuilder lives in this process
    out = tmp_path / "out"
    with pytest.raises(TensorFlowCrashError) as info:
        convert(float_model, str(out))
    msg = str(info.value)
    assert info.value.exit_code == 9
    assert msg.startswith("signature 'serving_default': TensorFlow failed") and "GatherV2" in msg and "7" in msg
    assert "\n" not in msg
    assert os.listdir(tmp_path) == []


# -- a SignatureDef naming tensors other than the subgraph's inputs ----------------------------------
def _uint8_io_in_front_of_int8(tmp_path) -> str:
    from .helpers import uint8_io_in_front_of_int8_model

    path = tmp_path / "uint8_io.tflite"
    path.write_bytes(uint8_io_in_front_of_int8_model())
    return str(path)


def test_signature_naming_non_input_tensors_is_rebuilt_on_the_subgraph_io(tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    path = _uint8_io_in_front_of_int8(tmp_path)
    # Why not through the signature: the runner writes 'x' into tensor 1, which the first QUANTIZE
    # overwrites, so its output does not follow the input at all.
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    a = runner(x=np.array([[40, -60, 100, 7]], np.int8))["y"]
    b = runner(x=np.array([[-90, 3, 0, 120]], np.int8))["y"]
    np.testing.assert_array_equal(a, b)

    out = tmp_path / "sm"
    assert main(["convert", path, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "signature 'serving_default' names as inputs 'x' -> tensor 1" in err and "subgraph's own inputs (x)" in err
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    assert list(spec) == ["x"] and spec["x"].dtype == tf.uint8  # the subgraph's uint8 input, the signature's name
    assert list(fn.structured_outputs) == ["y"] and fn.structured_outputs["y"].dtype == tf.uint8
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    for x in (np.array([[168, 68, 228, 135]], np.uint8), np.array([[0, 255, 128, 1]], np.uint8)):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        ref = it.get_tensor(it.get_output_details()[0]["index"])
        np.testing.assert_array_equal(fn(x=tf.constant(x))["y"].numpy(), ref)
    assert not np.all(ref == ref.flat[0])


def test_ordinary_signature_is_used_as_it_is_and_other_subgraphs_are_still_refused():
    """Only subgraph 0 can be run without its signature (plain invoke), so only there is the
    subgraph's own I/O used; a signature of another subgraph naming non-inputs is refused."""
    from tflite_inverter.errors import InvalidModelError
    from tflite_inverter.rebuild import RebuildOptions, make_module, plan_signatures

    from .tflite_builder import build_model, subgraph

    assert all(not p.subgraph_io_note for p in plan_signatures(read_model(to_tflite(_net, SPECS, "float")),
                                                               RebuildOptions()))
    body = subgraph([("a", [2], "FLOAT32"), ("b", [2], "FLOAT32"), ("c", [2], "FLOAT32")],
                    [("ABS", [0], [1]), ("NEG", [1], [2])], [0], [2], "other")
    sigs = [{"signature_key": "main", "subgraph_index": 0, "inputs": [{"name": "x", "tensor_index": 0}],
             "outputs": [{"name": "y", "tensor_index": 1}]},
            {"signature_key": "other", "subgraph_index": 1, "inputs": [{"name": "b", "tensor_index": 1}],
             "outputs": [{"name": "c", "tensor_index": 2}]}]
    model = read_model(build_model(tensors=[("x", [2], "FLOAT32"), ("y", [2], "FLOAT32")], ops=[("ABS", [0], [1])],
                                   inputs=[0], outputs=[1], subgraphs=[body], signature_defs=sigs))
    with pytest.raises(InvalidModelError, match="signature 'other' does not name exactly the inputs of subgraph 1"):
        make_module(model)
