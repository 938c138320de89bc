"""Test helpers: build a .tflite from TensorFlow code, run it in the interpreter and rebuilt, compare.

Op tests use these so that each one is: a tiny model, its inputs, and an assertion with a tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

from tflite_inverter.model.reader import read_model  # noqa: E402
from tflite_inverter.rebuild import RebuildOptions, make_module  # noqa: E402


def to_tflite(fn: Callable[..., Any], specs: Sequence[tf.TensorSpec], mode: str = "float",
              calibration: Sequence[Sequence[np.ndarray]] | None = None, seed: int = 0,
              flex: bool = False) -> bytes:
    """Convert ``fn`` (a Python function of tensors) with the TFLite converter.

    mode: ``float``, ``fp16`` (float16 weights), ``dynamic`` (dynamic-range int8 weights), ``int8``
    (full integer, int8 I/O), ``uint8`` (full integer, uint8 I/O), ``int8_float_io`` (full integer
    kernels, float I/O), ``int8_per_tensor``, ``int16x8``.
    """
    f = tf.function(fn, input_signature=list(specs), autograph=False)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    if flex:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    if mode == "float":
        pass
    elif mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    else:
        rng = np.random.default_rng(seed)

        def rep():
            if calibration is not None:
                for sample in calibration:
                    yield [np.asarray(s, dtype=np.float32) for s in sample]
                return
            for _ in range(32):
                yield [rng.uniform(-1, 1, size=[d or 1 for d in s.shape]).astype(np.float32) for s in specs]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        if mode == "int16x8":
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        else:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode in ("int8", "int8_per_tensor"):
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        elif mode == "uint8":
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.uint8
        if mode == "int8_per_tensor":
            conv._experimental_disable_per_channel = True
    return conv.convert()


def run_interpreter(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run subgraph 0 of ``model`` in the TFLite interpreter (in-process: test models are trusted)."""
    it = Interpreter(model_content=model)
    details = it.get_input_details()
    for d, a in zip(details, inputs):
        if tuple(d["shape"]) != a.shape:
            it.resize_tensor_input(d["index"], a.shape)
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], np.asarray(a, dtype=d["dtype"]))
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def run_builtin(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """As :func:`run_interpreter`, with the built-in kernels only (no default XNNPACK delegate): shows
    which kernel the default interpreter ran where the two differ."""
    it = Interpreter(model_content=model,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], np.asarray(a, dtype=d["dtype"]))
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def run_rebuilt(model: bytes, inputs: Sequence[np.ndarray], **options: Any) -> list[np.ndarray]:
    """Rebuild ``model`` (no SavedModel round trip) and run its first signature."""
    ir_model = read_model(model)
    module = make_module(ir_model, RebuildOptions(**options))
    plan = module.plans[0]
    fn = module.concrete[plan.key]
    # Inputs and outputs in subgraph order, as run_interpreter uses them (a signature may order them
    # differently: a converted tf.cond has subgraph inputs (y, x) and signature inputs (x, y)).
    sg = ir_model.subgraphs[plan.subgraph_index]
    by_tensor = dict(zip(sg.inputs, inputs))
    feed = {s.name: tf.constant(np.asarray(by_tensor[s.tensor.index], dtype=s.dtype.as_numpy_dtype))
            for s in plan.inputs}
    out = fn(**feed)
    names = {s.tensor.index: s.name for s in plan.outputs}
    return [out[names[ti]].numpy() for ti in sg.outputs]


def random_like(specs: Sequence[tf.TensorSpec], seed: int = 0, low: float = -1.0, high: float = 1.0
                ) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        shape = [d or 1 for d in s.shape]
        if s.dtype.is_floating:
            out.append(rng.uniform(low, high, size=shape).astype(s.dtype.as_numpy_dtype))
        elif s.dtype == tf.bool:
            out.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            out.append(rng.integers(0, 4, size=shape).astype(s.dtype.as_numpy_dtype))
    return out


def quantized_inputs(model: bytes, float_inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Quantize float inputs with the model's input parameters (for int8/uint8-I/O models)."""
    it = Interpreter(model_content=model)
    out = []
    for d, a in zip(it.get_input_details(), float_inputs):
        scale, zp = d["quantization"]
        if scale:
            info = np.iinfo(d["dtype"])
            a = np.clip(np.round(a / scale) + zp, info.min, info.max).astype(d["dtype"])
        out.append(a)
    return out


def assert_float_close(model: bytes, inputs: Sequence[np.ndarray], rtol: float = 1e-5, atol: float = 1e-5
                       ) -> float:
    """Rebuilt outputs equal the interpreter's within ``atol + rtol * max|ref|``; returns max error."""
    ref = run_interpreter(model, inputs)
    got = run_rebuilt(model, inputs)
    assert len(ref) == len(got)
    worst = 0.0
    for r, g in zip(ref, got):
        assert r.shape == g.shape, (r.shape, g.shape)
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r)
            continue
        err = float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
        bound = atol + rtol * float(np.max(np.abs(r))) if r.size else atol
        assert err <= bound, f"max abs err {err:.3g} > {bound:.3g}"
        worst = max(worst, err)
    return worst


def assert_quantized_close(model: bytes, inputs: Sequence[np.ndarray], max_lsb: int = 2,
                           min_within_1: float = 0.99) -> tuple[float, float]:
    """Integer outputs: >= ``min_within_1`` of elements within 1 LSB, none beyond ``max_lsb``."""
    ref = run_interpreter(model, inputs)
    got = run_rebuilt(model, inputs)
    worst, frac = 0.0, 1.0
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype, (r.shape, g.shape, r.dtype, g.dtype)
        d = np.abs(r.astype(np.int64) - g.astype(np.int64))
        worst = max(worst, float(d.max()) if d.size else 0.0)
        frac = min(frac, float(np.mean(d <= 1)) if d.size else 1.0)
    assert worst <= max_lsb, f"max error {worst} LSB > {max_lsb}"
    assert frac >= min_within_1, f"only {frac:.2%} within 1 LSB"
    return worst, frac


def op_names(model: bytes) -> list[str]:
    """Builtin op names (``CUSTOM`` for custom ops) of subgraph 0, in execution order."""
    return [op.name for op in read_model(model).main.operators]


_INTEGER_MODES = {"int8": ("INT8",), "int8_per_tensor": ("INT8",), "uint8": ("INT8", "UINT8"),
                  "int16x8": ("INT16",)}


def converted(fn: Callable[..., Any], specs: Sequence[tf.TensorSpec], op: str, mode: str = "float",
              calibration: Sequence[Sequence[np.ndarray]] | None = None) -> bytes:
    """Convert ``fn`` and assert the model really contains ``op`` in the form ``mode`` asks for.

    The converter folds, fuses and keeps ops in float at will; without this check a test could end
    up testing nothing. Integer modes: some instance of ``op`` has an integer output. ``dynamic``:
    some instance has int8 constant weights (a hybrid op).
    """
    model = to_tflite(fn, specs, mode, calibration=calibration)
    m = read_model(model).main
    ops = [o for o in m.operators if o.name == op]
    assert ops, f"converter emitted {[o.name for o in m.operators]}, not {op}"
    if mode in _INTEGER_MODES:
        assert any(m.tensors[o.outputs[0]].type_name in _INTEGER_MODES[mode] for o in ops), f"{op} is not quantized"
    if mode == "dynamic":
        assert any(len(o.inputs) > 1 and o.inputs[1] >= 0 and m.tensors[o.inputs[1]].type_name == "INT8"
                   for o in ops), f"{op} has no int8 weights (not hybrid)"
    return model


def saved_model_outputs(saved_dir: str, key: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run signature ``key`` of a SavedModel (meant for a :class:`tflite_inverter.isolation.Worker`
    child, so that a test chooses the TensorFlow settings, e.g. ``TF_ENABLE_ONEDNN_OPTS``, and
    survives a crash)."""
    fn = tf.saved_model.load(saved_dir).signatures[key]
    return {k: v.numpy() for k, v in fn(**{n: tf.constant(a) for n, a in feeds.items()}).items()}


def onednn_enabled() -> bool:
    """Whether TensorFlow in THIS process runs its oneDNN graph rewrites (the CPU's default or the env)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled()) and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "") != "0"


def uint8_io_in_front_of_int8_model() -> bytes:
    """What a third-party tool writes when it adds uint8 I/O around an int8 graph after quantization:
    uint8 input -> QUANTIZE -> int8 (the old input) -> ADD -> int8 (the old output) -> QUANTIZE ->
    uint8 output, with the SignatureDef still naming the old int8 tensors ('x' -> tensor 1, 'y' ->
    tensor 3) rather than the subgraph's inputs/outputs (tensors 0 and 4)."""
    from .tflite_builder import build_model

    def q(s: float, z: int) -> dict[str, list[Any]]:
        return {"scale": [s], "zero_point": [z]}

    tensors = [("input_u8", [1, 4], "UINT8", None, q(0.05, 128)),
               ("serving_default_x:0", [1, 4], "INT8", None, q(0.05, 0)),
               ("c", [1, 4], "INT8", np.array([[10, -20, 30, 5]], np.int8), q(0.05, 0)),
               ("StatefulPartitionedCall:0", [1, 4], "INT8", None, q(0.1, -3)),
               ("output_u8", [1, 4], "UINT8", None, q(0.1, 125))]
    ops = [("QUANTIZE", [0], [1]), ("ADD", [1, 2], [3], "AddOptions", {}), ("QUANTIZE", [3], [4])]
    sig = [{"signature_key": "serving_default", "subgraph_index": 0,
            "inputs": [{"name": "x", "tensor_index": 1}], "outputs": [{"name": "y", "tensor_index": 3}]}]
    return build_model(tensors=tensors, ops=ops, inputs=[0], outputs=[4], signature_defs=sig)


# -- shared by the op-family tests -----------------------------------------------------------------
def reference_activation(y: np.ndarray, act: str) -> np.ndarray:
    """TFLite's definition of each fused activation (kTfLiteAct*; common.apply_activation)."""
    return {"NONE": lambda v: v, "RELU": lambda v: np.maximum(v, 0), "RELU_N1_TO_1": lambda v: np.clip(v, -1, 1),
            "RELU6": lambda v: np.clip(v, 0, 6), "TANH": np.tanh,
            "SIGN_BIT": lambda v: (v < 0).astype(v.dtype)}[act](y)


def round_trip_ops(model: bytes, via_saved_model: bool = False) -> list[str]:
    """The ops a plain TFLiteConverter makes of the rebuilt float graph (from its concrete function,
    or ``via_saved_model``: saved as a SavedModel first, as a user would)."""
    import tempfile

    module = make_module(read_model(model))
    if not via_saved_model:
        fn = module.concrete[module.plans[0].key]
        return op_names(tf.lite.TFLiteConverter.from_concrete_functions([fn], module).convert())
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
        back = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(module.concrete)).convert()
    return op_names(back)


def check_quantized(model: bytes, specs: Sequence[tf.TensorSpec], exact: bool = True, low: float = -1.0,
                    high: float = 1.0) -> tuple[float, float]:
    """Random inputs in [low, high] through the interpreter and the faithful rebuild: (worst LSB,
    fraction within 1 LSB); ``exact`` asserts 0 LSB."""
    worst, within = assert_quantized_close(model, quantized_inputs(model, random_like(specs, low=low, high=high)))
    if exact:
        assert worst == 0, f"faithful integer emulation is off by {worst} LSB"
    return worst, within


def check_int16(model: bytes, specs: Sequence[tf.TensorSpec], op: str, max_lsb: float = 0.0) -> None:
    """16x8 models have float I/O around QUANTIZE/DEQUANTIZE: compare in LSBs of ``op``'s int16 output."""
    sg = read_model(model).main
    o = next(o for o in sg.operators if o.name == op)
    out = sg.tensors[o.outputs[0]]
    assert out.type_name == "INT16", f"{op} is not 16x8"
    x = random_like(specs)
    lsb = np.abs(run_interpreter(model, x)[0] - run_rebuilt(model, x)[0]).max() / out.quantization.scale[0]
    assert lsb <= max_lsb + 0.01, f"off by {lsb:.2f} LSB"


def convert_single(fn: Callable[..., Any], specs: Sequence[tf.TensorSpec], expect: str, mode: str = "float",
                   calibration: Sequence[Sequence[np.ndarray]] | None = None) -> bytes:
    """Convert and check that the model is exactly the op under test (on int8 tensors in integer
    modes), so a test can never silently exercise something else."""
    model = to_tflite(fn, specs, mode, calibration=calibration)
    m = read_model(model)
    names = [op.name for op in m.main.operators]
    if mode == "float":
        assert names == [expect], names
    else:
        ops = [op for op in m.main.operators if op.name == expect]
        assert ops, names
        assert m.main.tensors[ops[0].inputs[0]].type_name == "INT8", "the op under test is not int8"
    return model


def uniform_calibration(specs: Sequence[tf.TensorSpec], lo: float, hi: float, n: int = 16, seed: int = 7
                        ) -> list[list[np.ndarray]]:
    """``n`` seeded calibration samples, uniform in [lo, hi], one array per spec."""
    rng = np.random.default_rng(seed)
    return [[rng.uniform(lo, hi, size=[d or 1 for d in s.shape]).astype(np.float32) for s in specs]
            for _ in range(n)]


def accumulator_model(init_ops: list, init_tensors: list) -> bytes:
    """A stateful float model: ``y = v + x; v = y`` on a [3] resource variable ``v`` that a CALL_ONCE
    subgraph of the given ops (over tensors ``[handle, *init_tensors]``) initialises."""
    from .tflite_builder import build_model, subgraph

    res = ("h", [], "RESOURCE")
    var = {"container": "", "shared_name": "acc"}
    init = subgraph(tensors=[res, *init_tensors],
                    ops=[("VAR_HANDLE", [], [0], "VarHandleOptions", var), *init_ops],
                    inputs=[], outputs=[], name="init")
    return build_model(
        tensors=[("x", [3], "FLOAT32"), res, ("v", [3], "FLOAT32"), ("y", [3], "FLOAT32")],
        ops=[("CALL_ONCE", [], [], "CallOnceOptions", {"init_subgraph_index": 1}),
             ("VAR_HANDLE", [], [1], "VarHandleOptions", var),
             ("READ_VARIABLE", [1], [2], None, None),
             ("ADD", [2, 0], [3], "AddOptions", {}),
             ("ASSIGN_VARIABLE", [1, 3], [], None, None)],
        inputs=[0], outputs=[3], subgraphs=[init],
        signature_defs=[{"signature_key": "serving_default", "subgraph_index": 0,
                         "inputs": [{"name": "x", "tensor_index": 0}], "outputs": [{"name": "y", "tensor_index": 3}]}])


def assert_corpus_file_verifies(path: Any, out_dir: Any) -> None:
    """``convert`` of a corpus file verifies it: something compared, and every output within its rule."""
    from tflite_inverter.conversion.pipeline import convert

    result = convert(str(path), str(out_dir))
    assert result.verified and result.checks
    assert all(c.passed for c in result.checks), [c.to_json() for c in result.checks]
