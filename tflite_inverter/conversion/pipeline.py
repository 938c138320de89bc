"""``convert``: .tflite -> verified TF2 SavedModel, written atomically.

Dynamic input dims stay dynamic in the SavedModel (None in the signature's TensorSpec where the
.tflite has -1); ``input_shapes`` (``--input-shape``) only sets the shape verification feeds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _io
from ..errors import InterpreterError, NotVerifiedError, TensorFlowCrashError, UsageError, VerificationError
from ..model import ir
from ..model.input_shapes import InputShapesArg, parse_input_shapes, resolve_input_shapes
from ..model.reader import read_model
from .plan import IOPlan, invocations, load_inputs
from .reference import default_shape_error, reference_outputs
from .rules import OutputCheck, check_status, compare_plan, format_checks
from .verify_inputs import derive_rules


@dataclass
class ConvertResult:
    output_dir: str
    signatures: list[str]
    checks: list[OutputCheck] = field(default_factory=list)
    verified: bool = False
    passed: bool = True
    seconds: float = 0.0
    note: str = ""
    #: why the verification is weak (inputs the tool could not make meaningful), empty if it is not;
    #: a weak result is ``passed`` (exit 0) but never a match
    weak: str = ""
    #: the runtime the original ran in for the reference, with its version (``ai-edge-litert 2.3.0``,
    #: ``tflite-micro 0.dev...``), ``reference_why`` when it is not the stock interpreter, and the kernels
    reference: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"ok"``, ``"weak"``, ``"FAIL"`` or ``"not verified"`` (see :func:`.rules.check_status`)."""
        return check_status(self.checks) if self.verified else "not verified"

    def to_json(self) -> dict[str, Any]:
        verified: bool | str = "weak" if self.verified and self.weak else self.verified
        return {"output_dir": self.output_dir, "signatures": self.signatures, "verified": verified,
                "status": self.status, "weak": self.weak, "passed": self.passed, "seconds": round(self.seconds, 3),
                "note": self.note, "reference": self.reference.get("reference", ""),
                "reference_why": self.reference.get("reference_why", ""), "kernels": self.reference.get("kernels", ""),
                "outputs": [c.to_json() for c in self.checks]}


def io_plans(model: ir.Model, module: Any) -> list[IOPlan]:
    plans = []
    for p in module.plans:
        plans.append(IOPlan(
            signature=p.key if model.signatures and not p.subgraph_io_note else None, key=p.key,
            tflite_inputs=list(p.tflite_input_names), tflite_outputs=list(p.tflite_output_names),
            saved_inputs=[s.name for s in p.inputs], saved_outputs=[s.name for s in p.outputs],
            input_tensors=[s.tensor for s in p.inputs], output_tensors=[s.tensor for s in p.outputs],
            input_dtypes=[np.dtype(s.dtype.as_numpy_dtype) for s in p.inputs],
            subgraph_index=p.subgraph_index, extra_outputs=[s.tensor.index for s in p.extra_outputs],
            int_rules=derive_rules(model, p.subgraph_index, [s.tensor for s in p.inputs])))
    return plans


def verify_saved_model(model: ir.Model, model_path: str, saved_dir: str, plans: list[IOPlan],
                       inputs_path: str | None = None, tolerance: float | None = None, seed: int = 0,
                       note_sink: list[str] | None = None, info: dict[str, str] | None = None) -> list[OutputCheck]:
    """Run the original (interpreter, child process) and the saved SavedModel on the same inputs.

    A stateful model (:func:`.plan.is_stateful`) is invoked :data:`.plan.STATEFUL_CALLS` times
    per signature in a row on both sides (fresh random inputs each call, or the user's inputs each
    call), and every call's outputs are checked. Checks of a weak verification carry the reason.
    ``info`` (if given) receives which reference ran (see :func:`.reference.reference_outputs`)."""
    from .._tf import tensorflow_op_error, tf

    plans = invocations(model, plans)
    user_feeds = [load_inputs(inputs_path, p) for p in plans] if inputs_path else None
    spread: list[list[np.ndarray] | None] = []
    weak: list[str] = []
    feeds, refs, notes = reference_outputs(model_path, plans, user_feeds, seed, spread=spread, weak=weak,
                                         model=model, info=info)
    if any(p.call for p in plans):
        notes.append(f"stateful model: {max(p.call for p in plans) + 1} consecutive calls per signature verified, "
                     "state carried")
    if note_sink is not None:
        note_sink.extend(notes)
    loaded = tf.saved_model.load(saved_dir)
    checks = []
    for p, feed, ref, alt, why in zip(plans, feeds, refs, spread, weak):
        fn = loaded.signatures[p.key]
        kwargs = {}
        for name, a, t, dt in zip(p.saved_inputs, feed, p.input_tensors, p.input_dtypes):
            if dt != a.dtype and t.is_quantized:  # --float-io: the rebuilt model takes real values
                from ..ops.common import dequantize_array

                a = dequantize_array(a, t.quantization)
            kwargs[name] = tf.constant(a)
        try:
            out = fn(**kwargs)
        except Exception as exc:
            why = tensorflow_op_error(exc)
            if why is None:
                raise
            if isinstance(exc, tf.errors.InvalidArgumentError) and user_feeds is None:
                from .._tf import error_cause  # e.g. a shape the rebuilt graph rejects

                usage = default_shape_error(plans, error_cause(exc), "the rebuilt model rejects")
                if usage is not None:
                    raise usage from None
            raise TensorFlowCrashError(f"signature {p.key!r}: TensorFlow failed running the rebuilt model on "
                                       f"the verification inputs: {why}") from None
        checks.extend(compare_plan(model, p, ref, out, alt, tolerance, weak=why))
    return checks


def convert(model_path: str, output_dir: str, *, force: bool = False, float_io: bool = False,
            fake_quant: bool = True, inputs: str | None = None, tolerance: float | None = None,
            verify: bool = True, report: str | None = None, progress: Callable[[str], None] | None = None,
            input_shapes: InputShapesArg = None) -> ConvertResult:
    """Rebuild ``model_path`` as a TF2 SavedModel in ``output_dir`` and verify it.

    ``input_shapes``: the shape verification feeds an input with dynamic dims, by input name
    (``{"audio": (1, 16000)}``; a plain tuple for a single-input model; see :mod:`.input_shapes`).
    Without it dynamic dims are fed as 1; when the interpreter rejects that, :class:`UsageError`
    names the inputs and nothing is written.

    Raises :class:`UnsupportedOpError` (every unsupported op at once) before building anything,
    :class:`OutputExistsError` if ``output_dir`` exists (and is not an empty folder) without ``force``,
    :class:`VerificationError` when an output is over its rule's threshold, :class:`InterpreterError`
    when the interpreter cannot run the original (a custom op it lacks), and
    :class:`NotVerifiedError` when there was no output to compare: in these cases the SavedModel is
    written and the error says so. All TensorFlow work runs in a child process
    (:mod:`.isolation`): a TensorFlow crash raises :class:`TensorFlowCrashError`, an exceeded memory
    or time cap :class:`ResourceLimitError`; then nothing is written and no temp file is left.
    """
    from ..isolation import run_isolated
    from ..rebuild import check_supported

    start = time.time()
    _io.check_output_dir(output_dir, force)
    _io.check_output_file(report, force)
    shapes = parse_input_shapes(input_shapes)
    for given, what in ((inputs, "--inputs"), (tolerance, "--tolerance"), (shapes or None, "--input-shape")):
        if given is not None and not verify:
            raise UsageError(f"{what} only applies to verification, which --no-verify turns off; drop one of them")
    if inputs is not None and not os.path.isfile(inputs):
        raise UsageError(f"--inputs {inputs}: no such file")
    model = read_model(model_path)
    check_supported(model)
    _io.log(progress, f"read {os.path.basename(model_path)}: {sum(len(s.operators) for s in model.subgraphs)} ops in "
                   f"{len(model.subgraphs)} subgraph(s)")
    tmp = _io.temp_dir_for(output_dir)
    try:
        result, unverified = run_isolated(
            _build_and_verify, dict(model_path=os.path.abspath(model_path), saved_dir=tmp, float_io=float_io,
                                    fake_quant=fake_quant, inputs=inputs, tolerance=tolerance, verify=verify,
                                    shapes=shapes),
            model=model_path, what="rebuilding the graph", progress=progress)
        result.output_dir = output_dir
        _io.publish_dir(tmp, output_dir)
    except BaseException:
        _io.remove_quietly(tmp)
        raise
    result.seconds = time.time() - start
    if report:
        _io.write_json_atomic(report, result.to_json())
    if unverified is not None:
        raise type(unverified)(f"SavedModel written to {output_dir}, but NOT verified: {unverified}")
    if result.verified and not result.passed:
        bad = [c for c in result.checks if not c.passed]
        raise VerificationError(f"{len(bad)} output(s) over tolerance (SavedModel written to {output_dir}):\n"
                                + format_checks(result.checks))
    return result


def _build_and_verify(model_path: str, saved_dir: str, float_io: bool, fake_quant: bool, inputs: str | None,
                      tolerance: float | None, verify: bool, shapes: Any = None
                      ) -> tuple[ConvertResult, InterpreterError | NotVerifiedError | None]:
    """The TensorFlow part of :func:`convert`, run in the child process: rebuild, save into
    ``saved_dir``, verify. Returns the result and, when the interpreter could not run the original,
    why (the SavedModel is still complete)."""
    from .._tf import tf
    from ..isolation import fault_point
    from ..isolation import progress as report_progress
    from ..rebuild import RebuildOptions, make_module

    model = read_model(model_path)
    module = make_module(model, RebuildOptions(fake_quant=fake_quant, float_io=float_io))
    plans = io_plans(model, module)
    if shapes:
        resolved = iter(resolve_input_shapes(shapes, [r for p in plans for r in p.input_refs()]))
        for p in plans:
            p.input_shapes = [next(resolved) for _ in p.input_tensors]
    report_progress("saving SavedModel")
    fault_point("save")
    tf.saved_model.save(module, saved_dir, signatures=dict(module.concrete))
    result = ConvertResult(output_dir=saved_dir, signatures=[p.key for p in plans])
    unverified: InterpreterError | NotVerifiedError | None = None
    notes: list[str] = [p.subgraph_io_note for p in module.plans if p.subgraph_io_note]
    if fake_quant:
        from ..coverage.fidelity import unproven_kernels

        unproven = unproven_kernels(model)
        if unproven:
            notes.append("quantized kernels not proven exact (docs/int_kernel_fidelity.md): " + "; ".join(unproven))
    if not verify:
        result.note = "; ".join(notes)
        for n in notes:
            report_progress(n)
    if verify:
        report_progress("verifying against the TFLite interpreter")
        fault_point("verify")
        try:
            result.checks = verify_saved_model(model, model_path, saved_dir, plans, inputs, tolerance,
                                               note_sink=notes, info=result.reference)
            result.verified = bool(result.checks)
            result.passed = result.verified and all(c.passed for c in result.checks)
            result.weak = next((c.weak for c in result.checks if c.weak), "")
            if not result.checks:  # nothing compared is not a pass
                unverified = NotVerifiedError("the model has no output to compare with the interpreter's")
                notes.append(f"NOT verified: {unverified}")
        except InterpreterError as exc:  # e.g. a custom op the stock interpreter lacks
            unverified = exc
            notes.append(f"NOT verified: {exc}")
        result.note = "; ".join(notes)
        for n in notes:
            report_progress(n)
    return result, unverified
