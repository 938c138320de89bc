"""``quantize``: a .tflite (rebuilt on the fly) or a SavedModel -> a re-quantized .tflite + accuracy report.

The source is turned into a clean float SavedModel (a .tflite is rebuilt with ``fake_quant=False,
float_io=True``; a SavedModel written by ``convert --float-io --no-fake-quant`` is used as is) and
handed to the stock ``TFLiteConverter`` with the requested recipe:

* ``int8``: full integer (``TFLITE_BUILTINS_INT8`` only, so conversion fails rather than leave a
  float kernel), per-channel weights by default, I/O type per ``io``;
* ``int16x8``: int16 activations, int8 weights; ``float16``: float16 weights; ``dynamic``:
  dynamic-range int8 weights; ``float32``: plain float;
* ``uint8``: every tensor asymmetric uint8, per tensor: the per-tensor int8 model rewritten
  losslessly (:mod:`.uint8_rewrite`).

Calibration data comes from :mod:`.calibration`; the last 20 % of the samples are held back and the
quantized model (run in the TFLite interpreter, child process) is compared with the float model on
them (:mod:`.evaluate`, :mod:`.metrics`), and so is every quantized activation, to name the five layers
that lose the most precision (:func:`.layers.worst_layers`). A true-uint8 result is checked for ops
without a uint8 kernel (``targets/uint8_kernels.json``) and run once in the interpreter. The output is
written atomically and never replaces a file without ``force``.

"Reuse source ranges": an already-quantized .tflite given without data is rebuilt with
``RebuildOptions(range_ops=True)``, where every per-tensor int8/uint8 activation carries a
fake-quant op with its recorded range, so the converter adopts the source's scales and zero points
(a few synthetic samples over the input range only satisfy its calibrator). The converter then
quantizes the weights itself, always per channel on that path and with int32 bias scales recomputed
to within an ulp, so the weights of every op paired with a source op (by data flow) are given the
source's own scales, zero points and integers after checking that the converter's version agrees
with them. An all-uint8 source comes back as uint8 (the int8 result rewritten by
:mod:`.uint8_rewrite`, with the source's op versions). The report compares with the SOURCE in the
interpreter and checks every constant bit for bit.

The stages live in their own modules: :mod:`.recipe` (arguments and what the source asks for),
:mod:`.source` (loading, signatures, calibration per signature), :mod:`.converter` (the
``TFLiteConverter`` set-up), :mod:`.reuse` (the reuse-ranges path and its flatbuffer restores),
:mod:`.evaluate` (running and comparing the result), :mod:`.result` (what is returned and written).
This module runs them as a list of stages: :func:`quantize` (calling process) checks and resolves the
arguments into a :class:`_Plan`, runs :func:`_quantize_work` in the TensorFlow child, writes the report
and raises on a failed check; :func:`_quantize_work` loads the source, refuses what cannot be done,
gathers the samples, converts, restores the source's interface, writes, checks the written model, and
compares it with the source (reuse path) or evaluates it against the float model (calibrated path).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _io
from ..errors import (
    InterpreterError,
    InverterError,
    NotImplementedYetError,
    UsageError,
    VerificationError,
)
from ..isolation import fault_point
from ..isolation import progress as report_progress
from ..model.input_shapes import (
    InputShapesArg,
    parse_input_shapes,
)
from ..model.reader import read_model
from .calibration import CalibrationData, load_calibration, parse_floats
from .converter import _run_converter, _signatures_dataset, converter_for
from .evaluate import _evaluate, _reference, _target_report, _uint8_check, _worst_layers
from .interface import restore_interface
from .matching import compare_activations, compare_constants
from .metrics import float_ops
from .recipe import (
    CALIBRATED,
    EVAL_RANDOM_SAMPLES,
    _check_args,
    _io_reason,
    _quantized_source,
    _recipe,
    _resolve_io,
    _source_io,
)
from .result import QuantizeResult, _match_json, _match_warnings
from .reuse import (
    REUSE_SAMPLES,
    _compare_with_source,
    _convert_reusing_ranges,
    _reuse_recipe,
    _source_form,
    _SourceForm,
)
from .source import (
    _check_default_shapes,
    _load_signature_calibration,
    _load_source,
    _refuse_calibrator_crashes,
)
from .uint8_rewrite import int8_to_uint8


def quantize(source: str, output: str, *, calib: str | None = None, dtype: str | None = None,
             io: str | None = None, granularity: str | None = None, target: str | None = None,
             mean: str | Sequence[float] | float | None = None, std: str | Sequence[float] | float | None = None,
             samples: int | None = None, report: str | None = None, force: bool = False, evaluate: bool = True,
             seed: int = 0, progress: Callable[[str], None] | None = None, progress_bar: bool = False,
             input_shapes: InputShapesArg = None) -> QuantizeResult:
    """Re-quantize ``source`` (.tflite or SavedModel) into ``output`` (.tflite) and measure the result.

    ``calib``: ``.npy`` (one input), ``.npz`` (keyed by input name), a folder of images, or
    ``"random"`` (smoke tests only: warned about loudly). ``dtype`` defaults to ``"int8"``.

    Without ``calib``, an already-quantized .tflite is requantized with its own recorded scales and
    zero points ("reuse source ranges"): the rebuilt graph carries every per-tensor int8/uint8
    activation range as a fake-quant op, which the converter adopts; the weights take the source's
    own scales, zero points and integers; by default the result keeps the source's form (int8 or
    legacy all-uint8, per-channel or per-tensor weights, the source's I/O types). For an unchanged
    graph that is a lossless round trip, and the report compares the result with the SOURCE in the
    interpreter (outputs in source LSBs, every constant bit for bit). Sources with other activation
    schemes (int16x8, per-channel activations, float ops) are refused: they need ``calib``.

    ``input_shapes`` (``--input-shape``): the shape of inputs with dynamic dims for calibration
    (``"random"``, image folders, checking ``.npy``/``.npz`` samples) and evaluation, by input name
    (``{"audio": (1, 16000)}``, or a plain tuple for a single-input model; see
    :mod:`.input_shapes`); the result keeps the dims dynamic. Default: each dynamic dim is 1.

    Raises :class:`UsageError` for bad arguments or calibration data (nothing is written),
    :class:`OutputExistsError` when ``output`` or ``report`` exists without ``force``,
    :class:`NotImplementedYetError` for calibrating a model with several signatures,
    :class:`UnsupportedOpError` when the source cannot be rebuilt or the converter cannot produce
    the recipe, and :class:`VerificationError` when a bound of the report fails
    (:meth:`QuantizeResult.checks`), or :class:`InterpreterError` when the only failures are
    comparisons the interpreter could not run: then the model (and the report) are written and the
    error's ``result`` holds the full :class:`QuantizeResult`.
    """
    start = time.time()
    plan = _plan(source, output, report=report, calib=calib, dtype=dtype, io=io, granularity=granularity,
                 target=target, mean=mean, std=std, samples=samples, force=force, evaluate=evaluate, seed=seed,
                 progress_bar=progress_bar, input_shapes=input_shapes, start=start)
    result = _run_in_child(plan, progress)
    result.seconds["total"] = time.time() - start
    if report:
        _io.write_json_atomic(report, result.to_json())
    _raise_on_failed_checks(result, output, report)
    return result


@dataclass(frozen=True)
class _Plan:
    """One ``quantize`` call with every argument checked and resolved: what the TensorFlow child runs."""

    source: str
    output: str
    calib: str | None
    dtype: str
    io: str | None
    io_in: str
    io_out: str
    granularity: str
    target: str | None
    mean_v: list[float] | None
    std_v: list[float] | None
    samples: int | None
    evaluate: bool
    seed: int
    progress_bar: bool
    form: _SourceForm | None  # an already-quantized .tflite without --calib: its form (None when calibrating)
    restore: bool  # the source's weights are restored bit for bit (reuse path)
    start: float
    input_shapes: InputShapesArg

    @property
    def per_tensor(self) -> bool:
        return self.granularity == "per-tensor"

    @property
    def reuse_source(self) -> bool:
        """The source's own ranges are reused (no calibration)."""
        return self.form is not None

    @property
    def legacy_uint8(self) -> bool:
        return self.form is not None and self.form.legacy_uint8

    @property
    def needs_calib(self) -> bool:
        return self.dtype in CALIBRATED and not self.reuse_source


@dataclass
class _Samples:
    """The samples per signature: for the calibrator, and held back to evaluate the result."""

    calib_by_sig: dict[str, list[list[np.ndarray]]] = field(default_factory=dict)
    held_by_sig: dict[str, list[list[np.ndarray]]] = field(default_factory=dict)
    held: list[list[np.ndarray]] = field(default_factory=list)  # the first signature's held-back samples


# -- in the calling process ------------------------------------------------------------------------
def _plan(source: str, output: str, *, report: str | None, calib: str | None, dtype: str | None, io: str | None,
          granularity: str | None, target: str | None, mean: str | Sequence[float] | float | None,
          std: str | Sequence[float] | float | None, samples: int | None, force: bool, evaluate: bool, seed: int,
          progress_bar: bool, input_shapes: InputShapesArg, start: float) -> _Plan:
    """Check and resolve the arguments against what the source asks for; raises :class:`UsageError`
    or :class:`OutputExistsError` before anything runs or is written."""
    if target == "imx8mp-nnapi":
        if dtype not in (None, "int8", "uint8"):
            raise UsageError(f"--target imx8mp-nnapi with --dtype {dtype}: NNAPI on the i.MX8M Plus reaches the NPU "
                             "with uint8 models only")
        if granularity == "per-channel":
            raise UsageError("--target imx8mp-nnapi is true uint8, per-tensor by definition; drop --granularity")
        dtype, granularity = "uint8", "per-tensor"
    if not os.path.exists(source):
        raise UsageError(f"{source}: no such file or folder")
    reuse = _quantized_source(source, calib, dtype)
    form: _SourceForm | None = None
    restore = False
    if reuse is not None:
        given = [f for f, v in (("--mean", mean), ("--std", std), ("--samples", samples)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --calib data; without "
                             f"--calib the quantized source's own ranges are reused")
        form = _source_form(reuse, source)
        if dtype is not None:
            _check_args(dtype, io, granularity or "per-tensor", target)
        dtype, granularity, restore = _reuse_recipe(form, dtype, granularity, source)
    dtype = dtype or "int8"
    if granularity is None:
        granularity = "per-tensor" if dtype == "uint8" else "per-channel"
    _check_args(dtype, io, granularity, target)
    if form is not None and io is None and target is None:  # the source's I/O types (uint8 for int8 in uint8)
        io_in, io_out = ("uint8" if dtype == "uint8" and t == "int8" else t for t in (form.io_in, form.io_out))
    else:
        io_in, io_out = _resolve_io(dtype, io, target, _source_io(source))
    mean_v, std_v = parse_floats(mean, "--mean"), parse_floats(std, "--std")
    parse_input_shapes(input_shapes)  # format errors before the TensorFlow child starts
    for path in (output, report):
        _io.check_output_file(path, force)
    if os.path.abspath(output) == os.path.abspath(source):
        raise UsageError("the output would replace SOURCE; choose another path")
    plan = _Plan(source=source, output=output, calib=calib, dtype=dtype, io=io, io_in=io_in, io_out=io_out,
                 granularity=granularity, target=target, mean_v=mean_v, std_v=std_v, samples=samples,
                 evaluate=evaluate, seed=seed, progress_bar=progress_bar, form=form, restore=restore, start=start,
                 input_shapes=input_shapes)
    if plan.needs_calib and calib is None:
        hint = ""
        if dtype == "int16x8" and _quantized_source(source, None, None) is not None:
            hint = " (an already-quantized source's own ranges give int8/uint8 only)"
        raise UsageError(f"--dtype {dtype} needs calibration data{hint}: --calib DATA (.npy, .npz keyed by input "
                         "name, or a folder of images); --calib random only for a smoke test")
    return plan


def _run_in_child(plan: _Plan, progress: Callable[[str], None] | None) -> QuantizeResult:
    """:func:`_quantize_work` in the TensorFlow child; its model is renamed into ``plan.output`` here,
    or removed on any failure."""
    from ..isolation import run_isolated

    tmp_path = _io.temp_file_for(plan.output)
    try:
        result = run_isolated(_quantize_work, dict(plan=plan, tmp_path=tmp_path), model=plan.source,
                              what="rebuilding the source", progress=progress)
        _io.publish_file(tmp_path, plan.output)
    except BaseException:
        _io.remove_quietly(tmp_path)
        raise
    return result


def _raise_on_failed_checks(result: QuantizeResult, output: str, report: str | None) -> None:
    """A failed check of the report raises (the model and report are written): exit 6, or 7 when the
    only failures are comparisons the interpreter could not run (as convert's "NOT verified")."""
    failed = [c for c in result.checks() if not c["passed"]]
    if not failed:
        return
    kind: type[InverterError] = VerificationError if any(c["compared"] for c in failed) else InterpreterError
    what = "could not be checked" if kind is InterpreterError else "failed"
    err = kind(
        f"{len(failed)} check(s) of the report {what} ({', '.join(c['check'] for c in failed)}); the "
        f"{result.dtype} model is still written to {output}" + (f", the report to {report}" if report else "")
        + ":\n" + result.format_text())
    err.result = result  # type: ignore[attr-defined]
    raise err


# -- in the TensorFlow child -----------------------------------------------------------------------
def _quantize_work(plan: _Plan, tmp_path: str) -> QuantizeResult:
    """The TensorFlow part of :func:`quantize`, run in the child process (:mod:`.isolation`): rebuild
    the source, calibrate and convert, write the result into ``tmp_path`` (the parent renames it into
    place), check and evaluate it."""
    progress = report_progress
    reuse = read_model(plan.source) if plan.reuse_source else None
    timings: dict[str, float] = {}
    t0 = time.time()
    src = _load_source(plan.source, progress, range_ops=reuse is not None, input_shapes=plan.input_shapes)
    try:
        timings["load"] = time.time() - t0
        _refuse_before_converting(plan, src)
        result = QuantizeResult(source=plan.source, output=plan.output, dtype=plan.dtype,
                                io={"input": plan.io_in, "output": plan.io_out}, granularity=plan.granularity,
                                target=plan.target, size_before=src.size)
        samples = _samples(plan, src, result, progress)
        t0 = time.time()
        blob, match = _convert(plan, src, samples, result, progress)
        timings["calibrate_convert"] = time.time() - t0
        blob, result.interface = restore_interface(src.model, [s.plan for s in src.sigs], blob,
                                                   _io_reason(plan.io, plan.target, plan.dtype))
        result.size_after = len(blob)
        written = _write(blob, tmp_path)
        _check_written(plan, written, tmp_path, src, samples, result, progress)
        if match is not None:
            _compare_graph_with_source(plan, src, written, match, result)
        t0 = time.time()
        if plan.evaluate and match is not None:
            _evaluate_against_source(plan, src, tmp_path, result, progress)
            timings["evaluate"] = time.time() - t0
        elif plan.evaluate and match is None and samples.held:
            _evaluate_against_float(plan, src, samples, blob, tmp_path, result, progress)
            timings["evaluate"] = time.time() - t0
        if plan.target is not None:
            result.target_report = _target_report(blob, plan.target)
    finally:
        if src.tmp:
            shutil.rmtree(src.tmp, ignore_errors=True)
    timings["total"] = time.time() - plan.start
    result.seconds = timings
    return result


def _refuse_before_converting(plan: _Plan, src: Any) -> None:
    """What the converter or the reuse path cannot do, refused by name before any work."""
    if plan.reuse_source and len(src.keys) > 1:
        raise NotImplementedYetError(f"{plan.source} has {len(src.keys)} signatures ({', '.join(src.keys)}); "
                                     "requantizing several signatures with the source's ranges is not "
                                     "implemented yet; pass --calib to calibrate them")
    if plan.needs_calib and src.model is not None:
        _refuse_calibrator_crashes(src.model, plan.dtype)


def _samples(plan: _Plan, src: Any, result: QuantizeResult, progress: Callable[[str], None]) -> _Samples:
    """Load the calibration data (or make the evaluation inputs) and say in ``result`` what they are."""
    out = _Samples()
    datas: dict[str, CalibrationData] = {}
    if plan.calib is not None:
        datas = _load_signature_calibration(plan.calib, src, plan.mean_v, plan.std_v, plan.samples, plan.seed)
        data = next(iter(datas.values()))
        _io.log(progress, f"calibration data: {len(data)} samples ({data.kind})"
                + (f" for each of {len(datas)} signatures" if len(datas) > 1 else ""))
        for w in data.warnings:
            _io.log(progress, f"WARNING: {w}")
    if plan.reuse_source:
        result.reference = "source"
        result.lossless = plan.restore
        result.calibration = {
            "kind": "source ranges", "representative_samples": REUSE_SAMPLES,
            "note": "activation scales and zero points are the source's (fake-quant ops in the rebuilt graph); "
                    "the synthetic representative samples span the input range and set no range",
            "weights": ("the source's scales, zero points and integers" if plan.restore else
                        "new per-channel scales from the converter ("
                        + ("the source's asymmetric uint8 weights do not fit int8 kernels)" if plan.legacy_uint8
                           else "the source's weights are per-tensor)")),
        }
        result.evaluated_on = (f"{EVAL_RANDOM_SAMPLES} seeded inputs over the source's input range, against the "
                               "source model in the interpreter" if plan.evaluate else "not evaluated")
    elif datas:
        for key, d in datas.items():
            out.calib_by_sig[key], out.held_by_sig[key] = d.split()
        out.held = out.held_by_sig[src.keys[0]]
        data = datas[src.keys[0]]
        result.calibration = data.to_json()
        if len(datas) > 1:
            result.calibration["signatures"] = {k: d.to_json() for k, d in datas.items()}
        result.warnings.extend(data.warnings)
        result.evaluated_on = (f"{len(out.held)} held-back samples" if data.kind != "random"
                               else f"{len(out.held)} held-back RANDOM samples")
        if len(datas) > 1:
            result.evaluated_on += f" per signature ({len(datas)} signatures)"
    else:
        for k, sig in enumerate(src.sigs):
            rnd = load_calibration("random", sig.inputs, samples=EVAL_RANDOM_SAMPLES + 1, seed=plan.seed + 1 + k)
            out.held_by_sig[sig.key] = rnd.samples[:EVAL_RANDOM_SAMPLES]
        out.held = out.held_by_sig[src.keys[0]]
        result.calibration = {"kind": "none"}
        result.evaluated_on = f"{len(out.held)} random inputs in [-1, 1] (no --calib given)"
    _check_default_shapes(src, out.calib_by_sig, out.held_by_sig)
    return out


def _feeds(src: Any, samples: _Samples) -> list[tuple[Any, list[list[np.ndarray]]]]:
    return [(sig, samples.calib_by_sig.get(sig.key, [])) for sig in src.sigs]


def _convert(plan: _Plan, src: Any, samples: _Samples, result: QuantizeResult,
             progress: Callable[[str], None]) -> tuple[bytes, Any]:
    """The converted model, and the pairing of its ops with the source's (reuse path; else None)."""
    io_desc = f"I/O {plan.io_in}/{plan.io_out}"
    if plan.reuse_source:
        _io.log(progress, f"converting with the source's ranges ({plan.dtype}, {plan.granularity}, {io_desc})")
        blob, info = _convert_reusing_ranges(src, plan.dtype, plan.io_in, plan.io_out, plan.per_tensor, plan.restore,
                                             plan.legacy_uint8, plan.seed, progress, plan.progress_bar)
        match = info["match"]
        result.graph_match = _match_json(match)
        if "op_versions_restored" in info:
            result.graph_match["op_versions_restored"] = info["op_versions_restored"]
        result.weights_restore = info.get("restore")
        return blob, match
    _io.log(progress, f"converting ({plan.dtype}{', ' + plan.granularity if plan.needs_calib else ''}, {io_desc})")
    conv = converter_for(src.saved_dir, src.keys, *_recipe(plan.dtype, plan.io_in, plan.io_out), plan.per_tensor,
                         _signatures_dataset(_feeds(src, samples), plan.progress_bar) if plan.needs_calib else None)
    blob = _run_converter(conv, plan.dtype)
    if plan.dtype == "uint8":
        blob = int8_to_uint8(blob)
    return blob, None


def _write(blob: bytes, tmp_path: str) -> Any:
    """Write the result into ``tmp_path`` (owned by the parent: it renames it into place, or removes it
    on any failure) and read it back."""
    with open(tmp_path, "wb") as fh:
        fh.write(blob)
    return read_model(tmp_path)


def _check_written(plan: _Plan, written: Any, tmp_path: str, src: Any, samples: _Samples, result: QuantizeResult,
                   progress: Callable[[str], None]) -> None:
    """Float ops left in an integer result; a uint8 result's kernels, and one run of it."""
    result.float_ops = float_ops(written) if plan.dtype in ("int8", "uint8") else []
    if result.float_ops:
        result.warnings.append(f"{len(result.float_ops)} op(s) still compute in float")
    if plan.dtype != "uint8":
        return
    _io.log(progress, "checking the uint8 kernels and running the result once")
    result.uint8_check = _uint8_check(written, tmp_path, src, samples.held)
    missing = result.uint8_check["ops_without_uint8_kernel"]
    if missing:
        result.warnings.append(f"{len(missing)} op(s) have no uint8 kernel in TFLite: "
                               + ", ".join(sorted({m['op'] for m in missing})))
    if not result.uint8_check["ran"]:
        result.warnings.append("the uint8 result did not run in the TFLite interpreter: "
                               + str(result.uint8_check["run_error"]))


def _compare_graph_with_source(plan: _Plan, src: Any, written: Any, match: Any, result: QuantizeResult) -> None:
    """Reuse path: every constant bit for bit and every activation's scale and zero point against the source's."""
    src_sg = src.model.subgraphs[src.plan.subgraph_index]
    result.weights_check = compare_constants(src_sg, written.main, match)
    result.activations_check = compare_activations(src_sg, written.main, match)
    if not result.activations_check["equivalent"]:
        result.warnings.append("some activation scales or zero points differ from the source's (see "
                               "activations_check)")
    result.warnings.extend(_match_warnings(match, result.weights_check, plan.restore))


def _evaluate_against_source(plan: _Plan, src: Any, tmp_path: str, result: QuantizeResult,
                             progress: Callable[[str], None]) -> None:
    """Reuse path: the result and the source in the interpreter on seeded inputs, in source LSBs."""
    _io.log(progress, f"comparing with the source on {EVAL_RANDOM_SAMPLES} inputs")
    try:
        result.accuracy = _compare_with_source(tmp_path, src, EVAL_RANDOM_SAMPLES, plan.seed + 1)
    except InterpreterError as exc:
        result.evaluated_on = f"not evaluated: {exc}"
        result.warnings.append(f"the comparison with the source could not run: {exc}")


def _evaluate_against_float(plan: _Plan, src: Any, samples: _Samples, blob: bytes, tmp_path: str,
                            result: QuantizeResult, progress: Callable[[str], None]) -> None:
    """Calibrated path: the result against the float model on the held-back samples, the layers that
    lose the most, and (per-tensor) the per-channel alternative for comparison."""
    _io.log(progress, f"evaluating on {len(samples.held)} samples")
    fault_point("evaluate")
    ref = {sig.key: _reference(sig, samples.held_by_sig[sig.key]) for sig in src.sigs
           if samples.held_by_sig.get(sig.key)}
    result.accuracy = _evaluate(tmp_path, src, samples.held_by_sig, ref)
    if plan.needs_calib and len(src.sigs) == 1:
        _io.log(progress, "comparing every quantized activation with the float model's")
        result.worst_layers = _worst_layers(src, blob, samples.held)
    elif plan.needs_calib:
        result.worst_layers = {"unavailable": "the per-layer comparison covers models with one "
                                              f"signature; this one has {len(src.sigs)}"}
    if plan.per_tensor:
        _io.log(progress, "converting int8 per-channel too, for comparison")
        conv = converter_for(src.saved_dir, src.keys, *_recipe("int8", plan.io_in, plan.io_out), False,
                             _signatures_dataset(_feeds(src, samples), plan.progress_bar))
        pc_blob = _run_converter(conv, plan.dtype)
        with tempfile.TemporaryDirectory(prefix="tflite-inverter-pc-") as d:
            pc_path = os.path.join(d, "per_channel.tflite")
            with open(pc_path, "wb") as fh:
                fh.write(pc_blob)
            result.per_channel = _evaluate(pc_path, src, samples.held_by_sig, ref)
