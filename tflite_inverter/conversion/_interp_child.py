"""Child process that runs the original model in the TFLite interpreter.

Run as ``python -m tflite_inverter.conversion._interp_child MODEL RUNS.json IN.npz OUT.npz
[--builtin | --all-tensors]``. It lives
in its own process because the interpreter can crash (segfault) on real files; the parent turns a
crash into a clear message instead of dying with it. It imports only the interpreter, not TensorFlow,
when ``ai_edge_litert`` is installed.

Each run names a signature (or ``None``: subgraph 0's inputs/outputs), its input and output names,
and optionally ``extra``: tensor indices of subgraph ``subgraph`` read after the invocation (subgraph
outputs that the SignatureDef does not name, which the signature runner does not return). The runs
share one Interpreter object and run in the order given, so a stateful model's variable tensors and
resource variables carry from run to run (the parent lists a stateful model's consecutive calls as
consecutive runs); ``allocate_tensors`` between runs at unchanged shapes keeps that state.

The reference comes from the default kernels (XNNPACK where it applies); when they fail, from the
built-in kernels (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``). ``--builtin`` runs the
built-in kernels only: the parent runs that as a second child to measure the reference's own spread
(the two kernel sets' disagreement), so a crash there cannot cost the reference itself.

``--all-tensors`` is ``quantize``'s per-layer comparison: the interpreter keeps every intermediate
(``experimental_preserve_all_tensors``), each run sets subgraph 0's tensors ``tensor_inputs`` (by
index, resizing where the shape differs), invokes, and returns the tensors ``extra``; one the
interpreter freed or never allocated comes back as ``rR_oK_absent``.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # fall back to TensorFlow's (deprecated in TF 2.21)
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def _reference_name(Interpreter) -> str:
    """The runtime and its version, e.g. ``ai-edge-litert 2.3.0``."""
    from importlib import metadata

    if Interpreter.__module__.startswith("ai_edge_litert"):
        try:
            return f"ai-edge-litert {metadata.version('ai-edge-litert')}"
        except metadata.PackageNotFoundError:
            return "ai-edge-litert"
    import tensorflow as tf

    return f"tf.lite.Interpreter (TensorFlow {tf.__version__})"


def _builtin(Interpreter, model_path: str):
    from ai_edge_litert.interpreter import OpResolverType

    return Interpreter(model_path=model_path,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def main(argv: list[str]) -> int:
    builtin_only = "--builtin" in argv
    model_path, runs_path, in_path, out_path = [a for a in argv if a not in ("--builtin", "--all-tensors")]
    with open(runs_path) as fh:
        runs = json.load(fh)
    inputs = np.load(in_path, allow_pickle=False)
    Interpreter = _interpreter_class()
    if "--all-tensors" in argv:
        import warnings

        with warnings.catch_warnings():  # "for debugging purposes only": that is what this is
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
            interp = Interpreter(model_path=model_path, experimental_preserve_all_tensors=True)
        np.savez(out_path, **_run_all_tensors(interp, runs, inputs))
        return 0
    if builtin_only:
        results = _run(_builtin(Interpreter, model_path), runs, inputs)
        kernels = "built-in kernels"
    else:
        try:
            results = _run(Interpreter(model_path=model_path), runs, inputs)
            kernels = "default (XNNPACK delegate where it applies)"
        except (RuntimeError, ValueError) as first:
            # XNNPACK cannot run some models (e.g. it fails to reshape dynamic shapes); the built-in
            # kernels are the same interpreter's own implementation of the same ops.
            try:
                results = _run(_builtin(Interpreter, model_path), runs, inputs)
            except Exception as second:
                if str(second) == str(first):
                    raise first from None
                # Both messages, on one line (the parent reports the last line): the built-in kernels
                # usually say what is wrong (e.g. a shape), XNNPACK only that it failed to reshape.
                kind = RuntimeError if isinstance(first, RuntimeError) else ValueError
                raise kind(f"{_one_line(second)} [with the default delegate: {_one_line(first)}]") from None
            kernels = f"built-in kernels (the default delegate failed: {str(first).splitlines()[0][:120]})"
    results["__kernels__"] = np.array(kernels)
    results["__reference__"] = np.array(_reference_name(Interpreter))
    np.savez(out_path, **results)
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _run(interp, runs, inputs) -> dict[str, np.ndarray]:
    results: dict[str, np.ndarray] = {}
    for r, run in enumerate(runs):
        arrays = []
        while f"r{r}_i{len(arrays)}" in inputs:
            arrays.append(inputs[f"r{r}_i{len(arrays)}"])
        if run["signature"] is not None:
            runner = interp.get_signature_runner(run["signature"])
            out = runner(**dict(zip(run["inputs"], arrays)))
            names = list(run["outputs"])
            outs = [out[n] for n in names]
            sg = int(run.get("subgraph", 0))
            outs += [interp.get_tensor(int(ti), sg) for ti in run.get("extra", [])]
        else:
            details = interp.get_input_details()
            if len(details) != len(arrays):
                raise ValueError(f"the model has {len(details)} inputs, {len(arrays)} arrays were given")
            for d, a in zip(details, arrays):
                if tuple(d["shape"]) != a.shape:
                    interp.resize_tensor_input(d["index"], a.shape)
            interp.allocate_tensors()
            for d, a in zip(interp.get_input_details(), arrays):
                interp.set_tensor(d["index"], a)
            interp.invoke()
            outs = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
        for k, o in enumerate(outs):
            o = np.asarray(o)
            if o.dtype == object:  # string tensors: npz without pickle needs fixed-width bytes
                o = o.astype(np.bytes_)
            results[f"r{r}_o{k}"] = o
    return results


def _run_all_tensors(interp, runs, inputs) -> dict[str, np.ndarray]:
    results: dict[str, np.ndarray] = {}
    allocated = None
    for r, run in enumerate(runs):
        arrays = [inputs[f"r{r}_i{k}"] for k in range(len(run["tensor_inputs"]))]
        shapes = [a.shape for a in arrays]
        if shapes != allocated:
            for i, a in zip(run["tensor_inputs"], arrays):
                interp.resize_tensor_input(int(i), a.shape)
            interp.allocate_tensors()
            allocated = shapes
        for i, a in zip(run["tensor_inputs"], arrays):
            interp.set_tensor(int(i), a)
        interp.invoke()
        for k, i in enumerate(run["extra"]):
            try:
                results[f"r{r}_o{k}"] = np.array(interp.get_tensor(int(i)))
            except ValueError:  # a tensor the interpreter freed or never allocated
                results[f"r{r}_o{k}_absent"] = np.array(True)
    return results


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (RuntimeError, ValueError) as exc:
        # One line: the parent reports the last line of stderr, and the interpreter's first line says
        # what is missing ("Encountered unresolved custom op: X."), its last only that a node failed.
        print(f"{type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        sys.exit(1)
