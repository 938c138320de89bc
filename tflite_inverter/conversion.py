"""``convert``: .tflite -> verified TF2 SavedModel, written atomically."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ir
from .errors import InterpreterError, NotVerifiedError, OutputExistsError, UsageError, VerificationError
from .reader import read_model
from .verify import (
    IOPlan,
    OutputCheck,
    compare_plan,
    format_checks,
    load_inputs,
    reference_outputs,
)


@dataclass
class ConvertResult:
    output_dir: str
    signatures: list[str]
    checks: list[OutputCheck] = field(default_factory=list)
    verified: bool = False
    passed: bool = True
    seconds: float = 0.0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"output_dir": self.output_dir, "signatures": self.signatures, "verified": self.verified,
                "passed": self.passed, "seconds": round(self.seconds, 3), "note": self.note,
                "outputs": [c.to_json() for c in self.checks]}


def _log(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def io_plans(model: ir.Model, module: Any) -> list[IOPlan]:
    plans = []
    for p in module.plans:
        plans.append(IOPlan(
            signature=p.key if model.signatures else None, key=p.key,
            tflite_inputs=list(p.tflite_input_names), tflite_outputs=list(p.tflite_output_names),
            saved_inputs=[s.name for s in p.inputs], saved_outputs=[s.name for s in p.outputs],
            input_tensors=[s.tensor for s in p.inputs], output_tensors=[s.tensor for s in p.outputs],
            input_dtypes=[np.dtype(s.dtype.as_numpy_dtype) for s in p.inputs],
            subgraph_index=p.subgraph_index, extra_outputs=[s.tensor.index for s in p.extra_outputs]))
    return plans


def verify_saved_model(model: ir.Model, model_path: str, saved_dir: str, plans: list[IOPlan],
                       inputs_path: str | None = None, tolerance: float | None = None, seed: int = 0,
                       note_sink: list[str] | None = None) -> list[OutputCheck]:
    """Run the original (interpreter, child process) and the saved SavedModel on the same inputs."""
    from ._tf import tf

    user_feeds = [load_inputs(inputs_path, p) for p in plans] if inputs_path else None
    spread: list[list[np.ndarray] | None] = []
    feeds, refs, notes = reference_outputs(model_path, plans, user_feeds, seed, spread=spread)
    if note_sink is not None:
        note_sink.extend(notes)
    loaded = tf.saved_model.load(saved_dir)
    checks = []
    for p, feed, ref, alt in zip(plans, feeds, refs, spread):
        fn = loaded.signatures[p.key]
        kwargs = {}
        for name, a, t, dt in zip(p.saved_inputs, feed, p.input_tensors, p.input_dtypes):
            if dt != a.dtype and t.is_quantized:  # --float-io: the rebuilt model takes real values
                from .ops.common import dequantize_array

                a = dequantize_array(a, t.quantization)
            kwargs[name] = tf.constant(a)
        checks.extend(compare_plan(model, p, ref, fn(**kwargs), alt, tolerance))
    return checks


def _replace_dir(tmp: str, out: str) -> None:
    """Move ``tmp`` into place as ``out``; an old ``out`` is removed only after the new one is there."""
    if os.path.exists(out):
        old = out.rstrip("/") + f".old-{os.getpid()}"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def convert(model_path: str, output_dir: str, *, force: bool = False, float_io: bool = False,
            fake_quant: bool = True, inputs: str | None = None, tolerance: float | None = None,
            verify: bool = True, report: str | None = None, progress: Callable[[str], None] | None = None
            ) -> ConvertResult:
    """Rebuild ``model_path`` as a TF2 SavedModel in ``output_dir`` and verify it.

    Raises :class:`UnsupportedOpError` (every unsupported op at once) before building anything,
    :class:`OutputExistsError` if ``output_dir`` exists without ``force``, and
    :class:`VerificationError` when an output is over its rule's threshold, :class:`InterpreterError`
    when the interpreter cannot run the original (a custom op it lacks), and
    :class:`NotVerifiedError` when there was no output to compare: in these cases the SavedModel is
    written and the error says so.
    """
    from .rebuild import RebuildOptions, check_supported, make_module

    start = time.time()
    if os.path.exists(output_dir) and not force:
        raise OutputExistsError(f"{output_dir} exists; pass --force to replace it")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"{output_dir} exists and is not a directory")
    for given, what in ((inputs, "--inputs"), (tolerance, "--tolerance")):
        if given is not None and not verify:
            raise UsageError(f"{what} only applies to verification, which --no-verify turns off; drop one of them")
    if inputs is not None and not os.path.isfile(inputs):
        raise UsageError(f"--inputs {inputs}: no such file")
    model = read_model(model_path)
    check_supported(model)
    _log(progress, f"read {os.path.basename(model_path)}: {sum(len(s.operators) for s in model.subgraphs)} ops in "
                   f"{len(model.subgraphs)} subgraph(s)")
    from ._tf import tf

    module = make_module(model, RebuildOptions(fake_quant=fake_quant, float_io=float_io))
    plans = io_plans(model, module)
    parent = os.path.dirname(os.path.abspath(output_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tflite-inverter-", dir=parent)
    try:
        _log(progress, "saving SavedModel")
        tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
        result = ConvertResult(output_dir=output_dir, signatures=[p.key for p in plans])
        unverified: InterpreterError | NotVerifiedError | None = None
        if verify:
            _log(progress, "verifying against the TFLite interpreter")
            notes: list[str] = []
            try:
                result.checks = verify_saved_model(model, model_path, tmp, plans, inputs, tolerance, note_sink=notes)
                result.verified = bool(result.checks)
                result.passed = result.verified and all(c.passed for c in result.checks)
                if not result.checks:  # nothing compared is not a pass
                    unverified = NotVerifiedError("the model has no output to compare with the interpreter's")
                    notes.append(f"NOT verified: {unverified}")
            except InterpreterError as exc:  # e.g. a custom op the stock interpreter lacks
                unverified = exc
                notes.append(f"NOT verified: {exc}")
            result.note = "; ".join(notes)
            for n in notes:
                _log(progress, n)
        _replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.seconds = time.time() - start
    if report:
        with open(report, "w") as fh:
            json.dump(result.to_json(), fh, indent=2, sort_keys=True)
    if unverified is not None:
        raise type(unverified)(f"SavedModel written to {output_dir}, but NOT verified: {unverified}")
    if result.verified and not result.passed:
        bad = [c for c in result.checks if not c.passed]
        raise VerificationError(f"{len(bad)} output(s) over tolerance (SavedModel written to {output_dir}):\n"
                                + format_checks(result.checks))
    return result


def _stderr(msg: str) -> None:
    print(f"tflite-inverter: {msg}", file=sys.stderr, flush=True)
