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
them (:mod:`.accuracy`), and so is every quantized activation, to name the five layers that lose
the most precision (:func:`.accuracy.worst_layers`). A true-uint8 result is checked for ops without
a uint8 kernel (``targets/uint8_kernels.json``) and run once in the interpreter. The output is
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
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import _io
from ..errors import InterpreterError, InverterError, UnsupportedOpError, UsageError, VerificationError
from ..model import ir
from ..model.input_shapes import (
    InputRef,
    InputShapesArg,
    dynamic_dims_error,
    parse_input_shapes,
    resolve_input_shapes,
)
from .accuracy import (
    float_ops,
    format_lsb_metrics,
    format_metrics,
    format_worst_layers,
    json_safe,
    output_metrics,
)
from .calibration import CalibrationData, InputSpec, check_mean_std_applies, load_calibration, parse_floats
from .interface import restore_interface

DTYPES = ("int8", "uint8", "int16x8", "float16", "dynamic", "float32")
IO_TYPES = ("int8", "uint8", "int16", "float32")
GRANULARITIES = ("per-channel", "per-tensor")
#: imx8mp: the VX delegate (NXP's Linux path) takes per-channel int8 with a uint8 camera input.
#: imx8mp-nnapi: Android's NNAPI path, where int8 models are reported to fall back to the CPU while
#: uint8 ones reach the NPU: true uint8 per-tensor.
TARGETS = ("imx8mp", "imx8mp-nnapi")
CALIBRATED = ("int8", "int16x8", "uint8")
#: Random inputs used to evaluate float16/dynamic/float32 results when no data is given.
EVAL_RANDOM_SAMPLES = 8


class NotImplementedYetError(UsageError):
    """A documented option whose implementation is not there yet (exit code 2, like a usage error)."""


@dataclass
class QuantizeResult:
    source: str
    output: str
    dtype: str
    io: dict[str, str]
    granularity: str
    target: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    size_before: int = 0
    size_after: int = 0
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    evaluated_on: str = ""
    per_channel: list[dict[str, Any]] | None = None  # per-tensor mode: the same metrics, per-channel model
    float_ops: list[str] = field(default_factory=list)
    target_report: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: what ``accuracy`` compares with: "float" (the float model) or "source" (the quantized source,
    #: when its own ranges were reused: then ``accuracy`` rows are in source LSBs)
    reference: str = "float"
    weights_check: dict[str, Any] | None = None  # reuse: every constant vs the source's
    activations_check: dict[str, Any] | None = None  # reuse: every activation's scale/zero point vs the source's
    weights_restore: dict[str, Any] | None = None  # reuse: weights given the source's parameters
    graph_match: dict[str, Any] | None = None  # reuse: the result's ops paired with the source's
    #: calibrated recipes: the quantized activations with the lowest SQNR vs the float model's
    #: (:func:`.accuracy.worst_layers`), or a dict ``{"unavailable": why}``
    worst_layers: list[dict[str, Any]] | dict[str, str] | None = None
    #: ``--dtype uint8``: ops with no uint8 kernel (by ``targets/uint8_kernels.json``) and whether the
    #: result ran in the interpreter: ``{"ops_without_uint8_kernel": [...], "ran": bool, "run_error": str|None}``
    uint8_check: dict[str, Any] | None = None
    #: the source's interface given back to the result (:func:`.interface.restore_interface`): what
    #: was renamed, reordered, kept; ``io_type_changes`` lists the I/O tensors whose type differs
    interface: dict[str, Any] | None = None
    #: reuse: the weights are the source's own (a lossless round trip, bounded at 1 LSB of the source)
    lossless: bool = False

    @property
    def fully_integer(self) -> bool:
        return not self.float_ops

    def checks(self) -> list[dict[str, Any]]:
        """Every bound this report checks, each ``{"check", "passed", "detail"}``; a failed one makes
        ``quantize`` raise :class:`VerificationError` (exit code 6) after writing the model.

        - ``fully_integer`` (int8/uint8): no op computes in float (QUANTIZE/DEQUANTIZE at declared
          float I/O excepted);
        - ``uint8_kernels``, ``uint8_runs`` (uint8): every op has a uint8 kernel; the result ran in the
          interpreter;
        - reusing the source's ranges: ``activations_match_source`` (every activation scale and zero
          point is the source's, or its uint8/int8 twin); with the source's own weights also
          ``weights_match_source`` (every constant bit for bit, or its uint8/int8 twin) and
          ``outputs_within_1_lsb`` (every output element within 1 LSB of the source's, on the seeded
          comparison inputs, as :func:`.accuracy.lsb_metrics` counts it; a comparison that could not
          run fails it with ``compared: False``).
        """
        out: list[dict[str, Any]] = []

        def add(name: str, passed: bool, detail: str, compared: bool = True) -> None:
            out.append({"check": name, "passed": bool(passed), "detail": detail, "compared": compared})

        if self.dtype in ("int8", "uint8"):
            add("fully_integer", not self.float_ops,
                "no float op" if not self.float_ops else f"{len(self.float_ops)} op(s) compute in float")
        if self.uint8_check is not None:
            missing = self.uint8_check["ops_without_uint8_kernel"]
            add("uint8_kernels", not missing, "every op has a uint8 kernel" if not missing else
                f"{len(missing)} op(s) have no uint8 kernel: " + ", ".join(sorted({m["op"] for m in missing})))
            add("uint8_runs", self.uint8_check["ran"], "ran in the TFLite interpreter" if self.uint8_check["ran"]
                else f"did not run in the TFLite interpreter: {self.uint8_check['run_error']}")
        if self.reference == "source":
            a = self.activations_check
            if a is not None:
                add("activations_match_source", a["equivalent"], f"{a['compared']} activation scales/zero points "
                    + ("are the source's" if a["equivalent"] else f"compared, {len(a['differing'])} differ"))
            if self.lossless:
                w = self.weights_check
                ok = w is not None and (w["identical"] or w["equivalent"])
                add("weights_match_source", ok, "not compared" if w is None else
                    f"{w['compared']} constants " + ("are the source's" if ok else f"compared, {len(w['differing'])} "
                                                     "differ"))
                if self.evaluated_on != "not evaluated":
                    bad = [m for m in self.accuracy if "error" in m or m.get("within_1_lsb") is None
                           or m["within_1_lsb"] < 1.0]
                    if not self.accuracy:
                        add("outputs_within_1_lsb", False, f"not compared ({self.evaluated_on})", compared=False)
                    else:
                        worst = max((m.get("max_lsb") or 0.0 for m in self.accuracy), default=0.0)
                        add("outputs_within_1_lsb", not bad, "; ".join(f"{m['output']}: {_lsb_text(m)}" for m in bad)
                            if bad else f"every element within 1 LSB (max {worst:.6g} LSB)")
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source, "output": self.output, "dtype": self.dtype, "io": self.io,
            "granularity": self.granularity, "target": self.target, "calibration": self.calibration,
            "warnings": self.warnings,
            "size_bytes": {"before": self.size_before, "after": self.size_after,
                           "ratio": round(self.size_after / self.size_before, 4) if self.size_before else None},
            "accuracy": {"evaluated_on": self.evaluated_on, "reference": self.reference, "outputs": self.accuracy},
            "float_ops": self.float_ops, "fully_integer": self.fully_integer,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "checks": self.checks(),
            "passed": all(c["passed"] for c in self.checks()),
        }
        if self.per_channel is not None:
            by_name = {m["output"]: m for m in self.per_channel}
            out["per_tensor_vs_per_channel"] = [
                {"output": m["output"], "sqnr_db_per_tensor": m.get("sqnr_db"),
                 "sqnr_db_per_channel": by_name.get(m["output"], {}).get("sqnr_db"),
                 "sqnr_db_difference": _diff(m.get("sqnr_db"), by_name.get(m["output"], {}).get("sqnr_db")),
                 "top1_per_tensor": m.get("top1_agreement"),
                 "top1_per_channel": by_name.get(m["output"], {}).get("top1_agreement")}
                for m in self.accuracy]
        if self.target is not None:
            out["target_report"] = self.target_report
        if self.worst_layers is not None:
            out["worst_layers"] = self.worst_layers
        if self.interface is not None:
            out["interface"] = self.interface
        if self.uint8_check is not None:
            out["ops_without_uint8_kernel"] = self.uint8_check["ops_without_uint8_kernel"]
            out["uint8_interpreter_run"] = {"ran": self.uint8_check["ran"], "error": self.uint8_check["run_error"]}
        if self.reference == "source":
            out["weights_check"] = self.weights_check
            out["weights_identical"] = bool(self.weights_check and self.weights_check["identical"])
            out["weights_restore"] = self.weights_restore
            out["activations_check"] = self.activations_check
            out["graph_match"] = self.graph_match
        return json_safe(out)

    def format_text(self) -> str:
        lines = []
        for w in self.warnings:
            lines.append(f"WARNING: {w}")
        lines.extend(_interface_summary(self.interface))
        if self.reference == "source":
            lines.append(f"calibration: source ranges (the source's own scales and zero points); weights: "
                         f"{self.calibration.get('weights')}")
            lines.append(f"accuracy vs the SOURCE model ({self.evaluated_on}):")
            if self.accuracy:
                lines.append(format_lsb_metrics(self.accuracy))
            lines.append(_weights_summary(self.weights_check, self.graph_match))
            a = self.activations_check
            if a is not None:
                if a["identical"]:
                    lines.append(f"activations: all {a['compared']} scales and zero points are the source's")
                elif a["equivalent"]:
                    lines.append(f"activations: the source's scales and zero points ({len(a['differing'])} of "
                                 f"{a['compared']} in the other 8-bit type, zero point shifted by 128)")
                else:
                    bad = next(d for d in a["differing"] if "equivalent" not in d)
                    lines.append(f"activations: {sum('equivalent' not in d for d in a['differing'])} of "
                                 f"{a['compared']} differ from the source's (first: {bad['name']}: {bad['source']} "
                                 f"-> {bad['result']})")
        else:
            lines.append(f"accuracy vs the float model ({self.evaluated_on}):")
            compare = {m["output"]: m for m in self.per_channel} if self.per_channel is not None else None
            lines.append(format_metrics(self.accuracy, compare))
            if isinstance(self.worst_layers, dict):
                lines.append(f"per-layer precision: {self.worst_layers.get('unavailable')}")
            elif self.worst_layers:
                lines.append(f"the {len(self.worst_layers)} layers that lose the most precision (activation SQNR "
                             "vs the float model):")
                lines.append(format_worst_layers(self.worst_layers))
        ratio = f" ({100 * self.size_after / self.size_before:.1f}%)" if self.size_before else ""
        lines.append(f"size: {self.size_before} -> {self.size_after} bytes{ratio}")
        if self.dtype in ("int8", "uint8"):
            if self.float_ops:
                lines.append(f"NOT fully integer: {len(self.float_ops)} op(s) compute in float:")
                lines.extend(f"  {f}" for f in self.float_ops)
            else:
                lines.append("fully integer: no float op except QUANTIZE/DEQUANTIZE at declared float I/O")
        if self.uint8_check is not None:
            lines.extend(_uint8_summary(self.uint8_check))
        if self.target_report is not None:
            lines.append(_target_summary(self.target_report))
        for c in self.checks():
            lines.append(f"check {c['check']}: {'ok' if c['passed'] else 'FAIL'} ({c['detail']})")
        return "\n".join(lines)


def _interface_summary(rep: dict[str, Any] | None) -> list[str]:
    """The lines that say how the result's interface differs from the source's (type changes first)."""
    if rep is None:
        return []
    if not rep.get("restored"):
        return [f"interface: {rep.get('why')}"]
    lines = [f"I/O type changed ({c['why']}): {c['kind']} {c['tensor']!r} {c['source']} -> {c['result']}"
             for c in rep.get("io_type_changes", [])]
    lines.extend(f"I/O shape differs: {d['kind']} {d['tensor']!r} {d['source']} in the source, {d['result']} here"
                 for d in rep.get("shape_differences", []))
    if rep.get("missing_outputs"):
        lines.append(f"outputs of the source subgraph its signatures do not expose (absent here): "
                     f"{', '.join(rep['missing_outputs'])}")
    if rep.get("signatures_repointed"):
        lines.append(f"signature(s) {', '.join(map(repr, rep['signatures_repointed']))} named tensors other than "
                     "the subgraph's inputs in the source; here they name the subgraph's real inputs and outputs")
    meta = rep.get("metadata") or {}
    kept = ", ".join(meta.get("kept", []) + [f"{n} (this file's)" for n in meta.get("updated", [])])
    lines.append("interface: the source's I/O order, names and shapes" + (", signatures" if rep.get("signatures")
                                                                           else ", no SignatureDef (as the source)")
                 + (f"; metadata kept: {kept}" if kept else "")
                 + (f"; associated-files archive kept ({rep['appended_archive_bytes']} bytes)"
                    if rep.get("appended_archive_bytes") else ""))
    return lines


def _io_reason(io: str | None, target: str | None, dtype: str) -> str:
    """What asked for I/O types other than the source's."""
    if io is not None:
        return f"--io {io}"
    if target is not None:
        return f"--target {target}"
    return f"--dtype {dtype} has no such I/O type"


def _lsb_text(m: dict[str, Any]) -> str:
    if "error" in m:
        return str(m["error"])
    if m.get("within_1_lsb") is None:
        return "no LSB scale to count in"
    return f"{100 * m['within_1_lsb']:.2f}% within 1 LSB, max {m['max_lsb']:.6g} LSB"


def _diff(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) - float(b)
    return None


def _weights_summary(check: dict[str, Any] | None, match: dict[str, Any] | None) -> str:
    if check is None:
        return "weights: not compared"
    lines = []
    if check["identical"]:
        lines.append(f"weights: identical to the source's (all {check['compared']} constants bit for bit, with their "
                     "scales and zero points)")
    elif check["equivalent"]:
        lines.append(f"weights: the source's, {len(check['differing'])} of {check['compared']} constants in their "
                     "uint8 form (integers and zero point +128, same scale)")
    else:
        lines.append(f"weights: NOT identical to the source's: {len(check['differing'])} of {check['compared']} "
                     f"compared constant(s) differ"
                     + (f", {len(check['not_compared'])} of the source's not compared (op not matched)"
                        if check["not_compared"] else ""))
        for d in check["differing"][:10]:
            md = "" if d.get("max_diff") is None else f" (max |diff| {d['max_diff']:g})"
            lines.append(f"  {d['name']}: {d['differs']}{md}")
    if match and match.get("extra_result_ops"):
        lines.append(f"graph: the result adds {len(match['extra_result_ops'])} data-movement op(s): "
                     + ", ".join(match["extra_result_ops"][:5]))
    if match and match.get("skipped_source_ops"):
        lines.append(f"graph: the result does without {len(match['skipped_source_ops'])} of the source's "
                     "data-movement or padding op(s) (folded into the next op): "
                     + ", ".join(match["skipped_source_ops"][:5]))
    return "\n".join(lines)


def _uint8_summary(check: dict[str, Any]) -> list[str]:
    lines = []
    missing = check["ops_without_uint8_kernel"]
    if missing:
        lines.append(f"UINT8: {len(missing)} op(s) have NO uint8 kernel in TFLite: "
                     + ", ".join(f"{m['op']} (operator {m['index']})" for m in missing))
    else:
        lines.append("uint8: every op has a uint8 kernel in TFLite")
    if check["ran"]:
        lines.append("uint8: the result ran in the TFLite interpreter (allocate + invoke, 1 sample)")
    else:
        lines.append(f"UINT8: THE RESULT DID NOT RUN in the TFLite interpreter: {check['run_error']}")
    return lines


def _uint8_check(written: ir.Model, path: str, src: _Source, held: list[list[np.ndarray]]) -> dict[str, Any]:
    """Ops of a true-uint8 result without a uint8 kernel, and whether it runs (one sample, in the
    interpreter's child process)."""
    from .uint8_rewrite import ops_without_uint8_kernel

    missing = ops_without_uint8_kernel(written)
    sample = held[0] if held else [np.zeros([1 if d is None or d < 0 else d for d in s.shape], s.dtype)
                                   for s in src.inputs]
    error = None
    try:
        _run_quantized(path, src, [sample])
    except Exception as exc:  # InterpreterError, a signature mismatch: the report says so
        error = f"{type(exc).__name__}: {exc}"[:500]
    return {"ops_without_uint8_kernel": missing, "ran": error is None, "run_error": error}


def _target_summary(rep: dict[str, Any]) -> str:
    if "unavailable" in rep:
        return f"target: {rep['unavailable']}"
    sm = rep.get("summary") or {}
    if "operators" not in sm:
        return f"target {rep.get('name', '?')}: placement report in the --report JSON"
    cpu = sm.get("cpu_ops_by_type") or {}
    tail = f"; on CPU: {', '.join(f'{k} x{v}' for k, v in cpu.items())}" if cpu else ""
    return (f"target {rep.get('name', '?')} (predicted): {sm.get('npu')}/{sm.get('operators')} ops on the NPU, "
            f"{sm.get('partitions')} partition(s){tail}")


def _log(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


# -- the source -----------------------------------------------------------------------------------
@dataclass
class _Sig:
    """One signature of the source as a float function."""

    key: str
    inputs: list[InputSpec]
    outputs: list[str]
    reference: Callable[..., Any]  # the float function: kwargs by input name
    plan: Any = None  # rebuild.SignaturePlan (a .tflite source)


@dataclass
class _Source:
    kind: str  # "tflite" or "saved_model"
    path: str
    saved_dir: str
    keys: list[str]
    inputs: list[InputSpec]  # of the first signature
    outputs: list[str]
    reference: Callable[..., Any]  # the first signature's float function: kwargs by input name
    size: int
    quantized: bool
    model: ir.Model | None = None
    tmp: str | None = None
    plan: Any = None  # rebuild.SignaturePlan of the first signature (a .tflite source)
    sigs: list[_Sig] = field(default_factory=list)  # every signature, in ``keys`` order


#: Recurrent ops rebuilt as tf.while_loops over state variables. TensorFlow's calibrator
#: (TFLiteConverter with a representative dataset) segfaults on such graphs (measured on 4 corpus LSTM
#: models, inside calibrator.py _feed_tensors), which would take the whole process down.
_CALIBRATOR_CRASHES = ("LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
                       "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN")


def _refuse_calibrator_crashes(model: ir.Model, dtype: str) -> None:
    found = [f"{sg.where(op)}" for sg in model.subgraphs for op in sg.operators if op.name in _CALIBRATOR_CRASHES]
    if found:
        raise UnsupportedOpError([f"{w}: calibrated --dtype {dtype} is refused for recurrent ops: TensorFlow's "
                                  "calibrator crashes (segfault) on their rebuilt state loops; use --dtype float16 or "
                                  "dynamic, or requantize an already-quantized source without --calib" for w in found])


def _dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _with_input_shapes(sigs: list[_Sig], input_shapes: InputShapesArg) -> list[_Sig]:
    """``sigs`` with each input's dynamic dims set where ``input_shapes`` (``--input-shape``) gives
    them: calibration, the converter's samples and evaluation then use that shape (the converted
    model keeps the dims dynamic)."""
    shapes = parse_input_shapes(input_shapes)
    if not shapes:
        return sigs
    refs = [InputRef(sig.key, (s.name, *s.aliases), s.shape)
            for sig in sigs for s in sig.inputs]
    resolved = iter(resolve_input_shapes(shapes, refs))
    for sig in sigs:
        sig.inputs = [s if (g := next(resolved)) is None else replace(s, shape=g) for s in sig.inputs]
    return sigs


def _check_default_shapes(src: _Source, *samples_by_sig: dict[str, list[list[np.ndarray]]]) -> None:
    """Run the float model once on a sample whose dynamic dims were fed as 1 (``--calib random``,
    the random evaluation inputs; no ``--input-shape``): a model that rejects that shape is a
    :class:`UsageError` naming the inputs and the flag, not a converter failure later on."""
    for sig in src.sigs:
        sample = next((s[sig.key][0] for s in samples_by_sig if s.get(sig.key)), None)
        if sample is None:
            continue
        shaped = [None not in spec.shape or any(d is None and g != 1 for d, g in zip(spec.shape, a.shape))
                  for spec, a in zip(sig.inputs, sample)]  # False: dynamic dims fed as 1
        if all(shaped):
            continue
        from .._tf import error_cause, tf

        try:
            sig.reference(**{s.name: tf.constant(a) for s, a in zip(sig.inputs, sample)})
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises several kinds for a rejected shape
            refs = [InputRef(sig.key, (s.name, *s.aliases), s.shape) for s in sig.inputs]
            given = [tuple(a.shape) if ok else None for a, ok in zip(sample, shaped)]
            err = dynamic_dims_error(refs, given, error_cause(exc), "the float model rejects",
                                     " (or give --calib samples of that shape)")
            if err is not None:
                raise err from None


def _load_source(path: str, progress: Callable[[str], None] | None, range_ops: bool = False,
                 input_shapes: InputShapesArg = None) -> _Source:
    """The source as a float SavedModel. ``range_ops``: a quantized .tflite keeps its recorded
    activation ranges as fake-quant ops (requantizing with the source's own ranges).
    ``input_shapes``: see :func:`_with_input_shapes`."""
    from .._tf import tf

    parse_input_shapes(input_shapes)  # format errors before any TensorFlow work

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise UsageError(f"{path}: a folder but not a SavedModel (no saved_model.pb); SOURCE is a .tflite or a "
                             "SavedModel written by `tflite-inverter convert`")
        loaded = tf.saved_model.load(path)
        keys = list(loaded.signatures.keys())
        if not keys:
            raise UsageError(f"{path}: the SavedModel has no signatures")
        sigs = []
        for key in keys:
            fn = loaded.signatures[key]
            inputs = []
            for name, spec in fn.structured_input_signature[1].items():
                dt = np.dtype(spec.dtype.as_numpy_dtype)
                if dt in (np.int8, np.uint8, np.int16):
                    raise UsageError(f"{path}: input {name!r} is {dt}: the SavedModel keeps the quantized source's "
                                     "integer I/O; write it with `convert --float-io --no-fake-quant` (or pass the "
                                     ".tflite)")
                inputs.append(InputSpec(name, tuple(spec.shape.as_list()), dt))
            sigs.append(_Sig(key, inputs, list(fn.structured_outputs.keys()), fn))
        first = _with_input_shapes(sigs, input_shapes)[0]
        src = _Source("saved_model", path, path, keys, first.inputs, first.outputs, first.reference, _dir_size(path),
                      False, sigs=sigs)
        src._keep = loaded  # type: ignore[attr-defined]  # the function needs its variables alive
        return src

    from ..conversion.verify import is_quantized_model
    from ..model.reader import read_model
    from ..rebuild import RebuildOptions, make_module

    model = read_model(path)
    _log(progress, f"rebuilding {os.path.basename(path)} as a float graph"
         + (" carrying its recorded ranges" if range_ops else ""))
    options = RebuildOptions(range_ops=True, float_io=True) if range_ops else RebuildOptions(fake_quant=False,
                                                                                             float_io=True)
    module = make_module(model, options)
    sigs = [_Sig(plan.key, _plan_inputs(plan), [s.name for s in plan.outputs], module.concrete[plan.key], plan)
            for plan in module.plans]
    first = _with_input_shapes(sigs, input_shapes)[0]
    tmp = tempfile.mkdtemp(prefix="tflite-inverter-quantize-")
    try:
        tf.saved_model.save(module, tmp, signatures=dict(module.concrete))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    src = _Source("tflite", path, tmp, [p.key for p in module.plans], first.inputs, first.outputs, first.reference,
                  os.path.getsize(path), is_quantized_model(model), model, tmp, first.plan, sigs)
    src._keep = module  # type: ignore[attr-defined]
    return src


def _load_signature_calibration(calib: str, src: _Source, mean: list[float] | None, std: list[float] | None,
                                samples: int | None, seed: int) -> dict[str, CalibrationData]:
    """Calibration data for every signature, by signature key (see :mod:`.calibration` for how an
    ``.npz`` keys the inputs of several signatures)."""
    if len(src.sigs) == 1:
        return {src.keys[0]: load_calibration(calib, src.inputs, mean=mean, std=std, samples=samples, seed=seed)}
    check_mean_std_applies(mean, [sig.inputs for sig in src.sigs])  # per signature only float inputs take them
    out = {}
    for k, sig in enumerate(src.sigs):
        others = {o.key: [s.name for s in o.inputs] for o in src.sigs if o.key != sig.key}
        out[sig.key] = load_calibration(calib, sig.inputs, mean=mean, std=std, samples=samples, seed=seed + k,
                                        scope=sig.key, other_scopes=others)
    return out


def _plan_inputs(plan: Any) -> list[InputSpec]:
    """Calibration's view of a rebuilt signature's inputs (with the .tflite names as .npz aliases)."""
    inputs = []
    for k, s in enumerate(plan.inputs):
        q = s.tensor.quantization
        quant = None
        if s.tensor.is_quantized and q.scale.size == 1 and s.tensor.type_name in ("INT8", "UINT8", "INT16"):
            quant = (float(q.scale[0]), int(q.zero_point[0]) if q.zero_point.size else 0, s.tensor.type_name)
        aliases = tuple(a for a in ((plan.tflite_input_names[k] if k < len(plan.tflite_input_names) else ""),
                                    s.tensor.name) if a and a != s.name)
        inputs.append(InputSpec(s.name, tuple(s.shape), np.dtype(s.dtype.as_numpy_dtype), aliases, quant))
    return inputs


# -- conversion -----------------------------------------------------------------------------------
def _tf_type(name: str) -> Any:
    from .._tf import tf

    return {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}[name]


def converter_for(saved_dir: str, keys: Sequence[str], dtype: str, io_in: str, io_out: str, per_tensor: bool,
                  dataset: Callable[[], Iterator[dict[str, np.ndarray]]] | None) -> Any:
    """The ``TFLiteConverter`` configured for a recipe (also used by the benchmark as the baseline)."""
    from .._tf import tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=list(keys))
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif dtype == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif dtype in ("int8", "int16x8"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = dataset
        if dtype == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        else:
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = _tf_type(io_in)
        conv.inference_output_type = _tf_type(io_out)
    if per_tensor:
        conv._experimental_disable_per_channel = True
    return conv


def _run_converter(conv: Any, dtype: str) -> bytes:
    import warnings

    try:
        with warnings.catch_warnings():  # the calibrator uses the deprecated tf.lite.Interpreter
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
            blob = conv.convert()
    except InverterError:
        raise
    except Exception as exc:  # ConverterError and friends: keep the lines that say what failed
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()] or [text.strip()[:500]]
        hint = (" (with --dtype int8 every op needs an int8 kernel; try --dtype int16x8 or dynamic)"
                if dtype == "int8" else "")
        raise UnsupportedOpError([f"TFLiteConverter failed for --dtype {dtype}{hint}:", *lines[:20]]) from None

    from .converter_fixups import padv2_to_pad

    return padv2_to_pad(blob)  # the rebuilt graph's PadV2 back to the source's PAD


def _dataset(inputs: Sequence[InputSpec], samples: list[list[np.ndarray]], progress_bar: bool
             ) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    def gen() -> Iterator[dict[str, np.ndarray]]:
        from tqdm import tqdm

        for sample in tqdm(samples, desc="calibrating", unit="sample", disable=not progress_bar, file=sys.stderr,
                           leave=False):
            yield {s.name: a for s, a in zip(inputs, sample)}

    return gen


def _signatures_dataset(feeds: Sequence[tuple[_Sig, list[list[np.ndarray]]]], progress_bar: bool
                        ) -> Callable[[], Iterator[Any]]:
    """The representative dataset of a model with several signatures: TensorFlow's calibrator takes
    ``(signature_key, {input: array})`` pairs and calibrates each signature on its own samples."""
    if len(feeds) == 1:
        return _dataset(feeds[0][0].inputs, feeds[0][1], progress_bar)

    def gen() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        from tqdm import tqdm

        total = sum(len(samples) for _, samples in feeds)
        with tqdm(total=total, desc="calibrating", unit="sample", disable=not progress_bar, file=sys.stderr,
                  leave=False) as bar:
            for sig, samples in feeds:
                for sample in samples:
                    bar.update(1)
                    yield sig.key, {s.name: a for s, a in zip(sig.inputs, sample)}

    return gen


# -- evaluation -----------------------------------------------------------------------------------
def _quantize_array(a: np.ndarray, t: ir.Tensor) -> np.ndarray:
    if t.type_name in ("FLOAT32", "FLOAT16") or not t.is_quantized:
        return np.asarray(a, dtype=t.dtype)
    q = t.quantization
    info = np.iinfo(t.dtype)
    v = np.round(np.asarray(a, dtype=np.float64) / float(q.scale[0])) + int(q.zero_point[0])
    return np.clip(v, info.min, info.max).astype(t.dtype)


def _dequantize_array(a: np.ndarray, t: ir.Tensor) -> np.ndarray:
    if not t.is_quantized or a.dtype.kind == "f":
        return np.asarray(a, dtype=np.float32)
    q = t.quantization
    return (float(q.scale[0]) * (a.astype(np.float64) - int(q.zero_point[0]))).astype(np.float32)


def _reference(src: _Source | _Sig, samples: list[list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    from .._tf import tf

    ref: dict[str, list[np.ndarray]] = {n: [] for n in src.outputs}
    for sample in samples:
        res = src.reference(**{s.name: tf.constant(a) for s, a in zip(src.inputs, sample)})
        for n in src.outputs:
            ref[n].append(res[n].numpy())
    return ref


def _run_quantized(path: str, src: _Source | _Sig, samples: list[list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Run the written model in the interpreter (child process) with real-valued ``samples`` of one
    signature (``src``: the signature, or the source for its first)."""
    from ..conversion.verify import run_tflite
    from ..model.reader import read_model

    model = read_model(path)
    want = src.key if isinstance(src, _Sig) else src.keys[0]
    sig = next((s for s in model.signatures if s.key == want), None)
    if sig is not None:
        sg = model.subgraphs[sig.subgraph_index]
        in_t = {n: sg.tensors[i] for n, i in sig.inputs}
        out_t = {n: sg.tensors[i] for n, i in sig.outputs}
        in_names, out_names = _signature_names(src.plan, [s.name for s in src.inputs], list(src.outputs), in_t, out_t)
        missing = [n for n in in_names if n not in in_t] + [n for n in out_names if n not in out_t]
        if missing:
            raise UsageError(f"the quantized model's signature lacks {', '.join(missing)}; cannot evaluate it")
        tin = [in_t[n] for n in in_names]
        tout = [out_t[n] for n in out_names]
        key: str | None = sig.key
    else:  # no SignatureDef: positional
        sg = model.main
        tin = [sg.tensors[i] for i in sg.inputs]
        tout = [sg.tensors[i] for i in sg.outputs]
        in_names, out_names, key = [], [], None
    runs = [(key, in_names, out_names, [_quantize_array(a, t) for a, t in zip(sample, tin)]) for sample in samples]
    res = run_tflite(path, runs)
    got: dict[str, list[np.ndarray]] = {n: [] for n in src.outputs}
    for outs in res:
        for n, t, o in zip(src.outputs, tout, outs):
            got[n].append(_dequantize_array(o, t))
    return got


def _signature_names(plan: Any, ins: list[str], outs: list[str], have_in: Any, have_out: Any
                     ) -> tuple[list[str], list[str]]:
    """The names a result's SignatureDef gives a rebuilt signature's inputs and outputs: the
    source's own (the interface is restored, :mod:`.interface`) or, failing that, the rebuild's
    ``ins``/``outs`` (what the converter wrote), in the plan's order."""
    if plan is not None and plan.tflite_input_names and all(n in have_in for n in plan.tflite_input_names) \
            and all(n in have_out for n in plan.tflite_output_names):
        return list(plan.tflite_input_names), list(plan.tflite_output_names)
    return ins, outs


def _worst_layers(src: _Source, blob: bytes, held: list[list[np.ndarray]]) -> list[dict[str, Any]] | dict[str, str]:
    """The five layers that lose the most precision: the float model converted from the same
    SavedModel (so the converter names its tensors alike) against ``blob``, both in the interpreter."""
    from .accuracy import worst_layers

    try:
        conv = converter_for(src.saved_dir, src.keys[:1], "float32", "float32", "float32", False, None)
        float_blob = _run_converter(conv, "float32")
        if src.model is not None:  # the same interface as ``blob``: I/O pairs by the same names and order
            float_blob, _ = restore_interface(src.model, [src.plan], float_blob)
        rows = worst_layers(float_blob, blob, [{s.name: a for s, a in zip(src.inputs, sample)} for sample in held])
        return _source_layer_names(src, blob, rows)
    except Exception as exc:  # the report goes on without it; say why
        return {"unavailable": f"per-layer comparison failed: {type(exc).__name__}: {exc}"[:500]}


def _source_layer_names(src: _Source, blob: bytes, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Name each :func:`.accuracy.worst_layers` row after the SOURCE tensor its tensor stands for
    (paired by data flow, :func:`.accuracy.match_graphs`, same shape): ``tensor`` is the source's
    name where there is one, ``result_tensor`` the name in the written model, ``source_tensor`` the
    source's name or None (an op the converter added or fused: the row keeps the result's name)."""
    if src.model is None or not rows:
        return rows
    from ..model.reader import read_model
    from .accuracy import match_graphs

    res = read_model(blob)
    ssg = src.model.subgraphs[src.plan.subgraph_index]
    try:
        in_pairs, out_pairs = _io_pairs(res, src)
    except UnsupportedOpError:
        return rows
    rsg = res.subgraphs[0]
    flow = match_graphs(ssg, rsg, in_pairs).tensor_map
    flow.update({r: s for s, r in out_pairs})
    for row in rows:
        s = flow.get(row["index"])
        name = ssg.tensors[s].name if s is not None and ssg.tensors[s].shape == rsg.tensors[row["index"]].shape \
            else None
        row["result_tensor"], row["source_tensor"] = row["tensor"], name
        row["tensor"] = name or row["tensor"]
    return rows


def _metrics(src: _Source | _Sig, ref: dict[str, list[np.ndarray]], got: dict[str, list[np.ndarray]],
             prefix: str = "") -> list[dict[str, Any]]:
    return [output_metrics(prefix + n, ref[n], got[n]) for n in src.outputs]


def _evaluate(path: str, src: _Source, held: dict[str, list[list[np.ndarray]]],
              ref: dict[str, dict[str, list[np.ndarray]]]) -> list[dict[str, Any]]:
    """Accuracy rows of every signature (output names ``signature/output`` when there are several)."""
    rows: list[dict[str, Any]] = []
    for sig in src.sigs:
        if held.get(sig.key):
            prefix = f"{sig.key}/" if len(src.sigs) > 1 else ""
            rows.extend(_metrics(sig, ref[sig.key], _run_quantized(path, sig, held[sig.key]), prefix))
    return rows


def _target_report(data: bytes, target: str) -> dict[str, Any]:
    from ..coverage.report import build_report
    from ..model.reader import read_model


    try:
        rules = "imx8mp" if target.startswith("imx8mp") else target  # NNAPI: VX rules are the nearest data we have
        return build_report(read_model(data), target=rules).get("target") or {
            "unavailable": f"inspect gave no --target {target} section"}
    except InverterError as exc:
        return {"unavailable": f"inspect --target {target} failed: {exc}"}


# -- reusing a quantized source's own ranges (no calibration data) ----------------------------------
#: Representative samples fed to the converter when the ranges come from the source: the fake-quant
#: ops fix every activation range, the samples only have to exist (and span the input range).
REUSE_SAMPLES = 4
EIGHT_BIT = ("INT8", "UINT8")


@dataclass(frozen=True)
class _SourceForm:
    """How a quantized source is quantized: what "the same form" means for its requantization."""

    legacy_uint8: bool  # every 8-bit tensor is uint8 (the pre-int8 TFLite scheme)
    per_channel: bool  # some weight has one scale per output channel
    io_in: str  # the source's I/O types in --io terms
    io_out: str


def _io_name(t: ir.Tensor) -> str | None:
    return {"INT8": "int8", "UINT8": "uint8", "FLOAT32": "float32", "INT16": "int16"}.get(t.type_name)


def _source_form(model: ir.Model, source: str) -> _SourceForm:
    """Check that every range of ``model`` can be carried by the rebuilt graph, and describe it.

    Reusing the source's ranges works for per-tensor int8/uint8 activations (one fake-quant op
    each); anything else would be calibrated on synthetic data, so it is refused, naming the tensor.
    """
    fix = "pass --calib DATA to calibrate instead"
    for sg in model.subgraphs:
        for t in sg.tensors:
            if not t.is_quantized:
                continue
            q = t.quantization
            if q.details:
                raise UsageError(f"{source}: tensor {t.name!r} (subgraph {sg.index}, tensor {t.index}) uses {q.details.get('type')}; "
                                 f"reusing the source's ranges handles per-tensor/per-channel scales only; {fix}")
            if t.is_constant:
                if t.type_name not in (*EIGHT_BIT, "INT32"):
                    raise UsageError(f"{source}: weight {t.name!r} (subgraph {sg.index}, tensor {t.index}) is quantized as {t.type_name}; "
                                     f"reusing the source's ranges rebuilds int8/uint8 weights only; {fix}")
            elif t.type_name not in EIGHT_BIT or q.per_channel:
                kind = "per-channel " if q.per_channel else ""
                raise UsageError(f"{source}: activation {t.name!r} (subgraph {sg.index}, tensor {t.index}) is {kind}{t.type_name}; "
                                 "reusing the source's ranges carries per-tensor int8/uint8 activation ranges only "
                                 f"(int16x8 and other schemes have no such range op); {fix}")
    leftover = float_ops(model)
    if leftover:
        raise UsageError(f"{source}: {len(leftover)} op(s) compute in float in the source, so it records no range "
                         f"for their tensors (first: {leftover[0]}); {fix}")
    eight = [t for sg in model.subgraphs for t in sg.tensors if t.type_name in EIGHT_BIT and t.is_quantized]
    legacy = bool(eight) and all(t.type_name == "UINT8" for t in eight)
    per_channel = any(t.is_constant and t.quantization.per_channel for sg in model.subgraphs for t in sg.tensors
                      if t.is_quantized)
    main = model.subgraphs[model.signatures[0].subgraph_index] if model.signatures else model.main

    def io(indices: Sequence[int], what: str) -> str:
        kinds = {_io_name(main.tensors[i]) for i in indices} - {None}
        kinds.discard("int16")
        if len(kinds) > 1:
            raise UsageError(f"{source}: the model {what}s have different types ({', '.join(sorted(kinds))}); the "
                             f"converter gives every {what} one type: choose it with --io")
        return kinds.pop() if kinds else "float32"

    return _SourceForm(legacy, per_channel, io(main.inputs, "input"), io(main.outputs, "output"))


def _reuse_recipe(form: _SourceForm, dtype: str | None, granularity: str | None, source: str
                  ) -> tuple[str, str, bool]:
    """(dtype, granularity, restore): the source's own form unless asked otherwise.

    ``restore``: the result's weights take the source's recorded scales and zero points (a lossless
    round trip). Without it the converter quantizes the weights itself, which with the range ops in
    the graph (its quantization-aware-training path) is always per channel.
    """
    if dtype is None:
        dtype = "uint8" if form.legacy_uint8 else "int8"
    if granularity is None:
        granularity = "per-tensor" if dtype == "uint8" or (not form.per_channel and not form.legacy_uint8) \
            else "per-channel"
    fix = "pass --calib DATA to calibrate new weight scales"
    if granularity == "per-tensor" and form.per_channel:
        raise UsageError(f"{source} has per-channel weights: reusing its ranges keeps them; --granularity per-tensor"
                         f"{' (implied by --dtype uint8)' if dtype == 'uint8' else ''} needs new weight scales: {fix}")
    if form.legacy_uint8 and dtype == "int8" and granularity == "per-tensor":
        raise UsageError(f"{source} has asymmetric uint8 weights, which int8 cannot take; reusing its ranges with "
                         f"--dtype int8 gives per-channel int8 weights (drop --granularity per-tensor) or {fix}")
    # int8 weights go into int8 and (shifted) uint8 models; asymmetric uint8 weights into uint8 only
    restore = (granularity == "per-channel") == form.per_channel and not (form.legacy_uint8 and dtype == "int8")
    return dtype, granularity, restore


def _real_range(t: ir.Tensor) -> tuple[float, float] | None:
    from ..ops.common import integer_range

    if not t.is_quantized or t.quantization.per_channel or t.type_name not in (*EIGHT_BIT, "INT16"):
        return None
    s, zp = float(t.quantization.scale[0]), int(t.quantization.zero_point[0]) if t.quantization.zero_point.size else 0
    lo, hi = integer_range(t.type_name)
    return s * (lo - zp), s * (hi - zp)


def _input_range(sg: ir.Subgraph, t: ir.Tensor) -> tuple[float, float]:
    """The real range of a model input: its own quantization, or that of the QUANTIZE reading it."""
    r = _real_range(t)
    if r is None:
        for op in sg.operators:
            if op.name == "QUANTIZE" and op.inputs and op.inputs[0] == t.index:
                r = _real_range(sg.tensors[op.outputs[0]])
                if r is not None:
                    break
    return r if r is not None else (-1.0, 1.0)


def _range_samples(src: _Source, n: int, seed: int) -> list[list[np.ndarray]]:
    """``n`` real-valued samples uniform over each input's recorded range (for the converter)."""
    rng = np.random.default_rng(seed)
    sg = src.model.subgraphs[src.plan.subgraph_index]
    out = []
    for _ in range(n):
        sample = []
        for spec, io in zip(src.inputs, src.plan.inputs):
            shape = [1 if d is None else d for d in spec.shape]
            if spec.dtype.kind == "f":
                lo, hi = _input_range(sg, io.tensor)
                sample.append(rng.uniform(lo, hi, shape).astype(spec.dtype))
            else:
                sample.append(np.zeros(shape, spec.dtype))
        out.append(sample)
    return out


def _io_pairs(res: ir.Model, src: _Source) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(source tensor, result tensor) for the inputs and the outputs, through the signature names
    the converter keeps (positional when the result has no signature)."""
    plan = src.plan
    sig = next((s for s in res.signatures if s.key == plan.key), res.signatures[0] if res.signatures else None)
    if sig is None:
        sg = res.main
        return ([(io.tensor.index, r) for io, r in zip(plan.inputs, sg.inputs)],
                [(io.tensor.index, r) for io, r in zip(plan.outputs, sg.outputs)])
    ins, outs = dict(sig.inputs), dict(sig.outputs)
    in_names, out_names = _signature_names(plan, [io.name for io in plan.inputs], [io.name for io in plan.outputs],
                                           ins, outs)
    missing = [n for n in in_names if n not in ins] + [n for n in out_names if n not in outs]
    if missing:
        raise UnsupportedOpError([f"the converted model's signature lacks {', '.join(missing)}"])
    return ([(io.tensor.index, ins[n]) for io, n in zip(plan.inputs, in_names)],
            [(io.tensor.index, outs[n]) for io, n in zip(plan.outputs, out_names)])


def _restore_mismatch(ts: ir.Tensor, tr: ir.Tensor) -> str | None:
    """Why the result constant ``tr`` is not the converter's quantization of the source's ``ts``
    (None: it is, within half a step of each, so ``ts``'s integers may replace it)."""
    from .accuracy import constant_scale, dequantize_constant

    if not tr.is_constant:
        return "computed in the result"
    if tuple(tr.shape) != tuple(ts.shape):
        return f"shape {list(tr.shape)} in the result, {list(ts.shape)} in the source"
    if not tr.is_quantized:
        return f"not quantized in the result ({tr.type_name})"
    a, b = dequantize_constant(ts), dequantize_constant(tr)
    tol = 0.5 * constant_scale(ts) + 0.5 * constant_scale(tr) + 1e-6 * np.abs(a) + 1e-30
    bad = np.abs(a - b) > tol
    if np.any(bad):
        return (f"different values ({int(bad.sum())} element(s) beyond half a step; max |diff| "
                f"{float(np.max(np.abs(a - b))):.4g}): the converter transformed it")
    return None


def _restore_source_weights(blob: bytes, src: ir.Subgraph, res: ir.Model, match: Any) -> tuple[bytes, dict[str, Any]]:
    """Give every quantized constant of the matched ops the source's scales, zero points and integers.

    That is requantizing the weights with the source's own recorded parameters: the rebuilt float
    weights are the source's dequantized integers, so requantizing them gives those integers back.
    Each replacement is checked first: the converter's own quantization of the same constant must
    agree with the source's within half a step of each (else the converter transformed the
    constant, e.g. folded something into it, and it is left alone and reported).
    """
    from tensorflow.lite.python import schema_py_generated as fb

    from .accuracy import describe_difference
    from .fbedit import pack, unpack

    model = unpack(blob)
    rsg = res.main
    osg = model.subgraphs[rsg.index]
    refs: dict[int, int] = {}
    for s in model.subgraphs:
        for t in s.tensors:
            refs[t.buffer] = refs.get(t.buffer, 0) + 1
    done: set[int] = set()
    report: dict[str, Any] = {"restored": 0, "already_identical": 0, "not_restored": []}
    for si, ri in match.pairs:
        todo = []
        for a, b in zip(src.operators[si].inputs, rsg.operators[ri].inputs):
            if a < 0 or b < 0 or b in done:
                continue
            ts, tr = src.tensors[a], rsg.tensors[b]
            if not (ts.is_constant and ts.is_quantized):
                continue
            done.add(b)
            if tr.is_constant and describe_difference(ts, tr) is None:
                report["already_identical"] += 1
            else:
                todo.append((ts, b, _restore_mismatch(ts, tr)))
        refused = [(ts, why) for ts, _, why in todo if why is not None]
        if refused:  # all or nothing per op: a weight's scale and its bias's scale go together
            report["not_restored"].extend({"name": ts.name, "why": why or f"another input of the op: {refused[0][1]}"}
                                          for ts, _, why in todo)
            continue
        for ts, b, _ in todo:
            t = osg.tensors[b]
            t.type = getattr(fb.TensorType, ts.type_name)
            qp = fb.QuantizationParametersT()
            qp.scale = ts.quantization.scale.astype(np.float32)
            zp = ts.quantization.zero_point
            qp.zeroPoint = (zp if zp.size else np.zeros(1)).astype(np.int64)
            qp.quantizedDimension = ts.quantization.quantized_dimension if ts.quantization.per_channel else 0
            t.quantization = qp
            if refs.get(t.buffer, 0) == 1 and t.buffer:
                buf = model.buffers[t.buffer]
            else:  # shared with another tensor: give this one its own buffer
                buf = fb.BufferT()
                model.buffers.append(buf)
                t.buffer = len(model.buffers) - 1
            buf.data, buf.offset, buf.size = np.array(ts.raw(), dtype=np.uint8), 0, 0
            report["restored"] += 1
    report["activation_scales_restored"] = _restore_activation_scales(osg, rsg, src, match)
    return pack(model), report


def _restore_activation_scales(osg: Any, rsg: ir.Subgraph, src: ir.Subgraph, match: Any) -> int:
    """Give each activation the source's exact scale where the converter's is off by rounding.

    The converter derives a scale from the fake-quant op's float min/max, ``(max - min) / 255``,
    which can land an ulp away from the recorded scale it came from. Only scales within a millionth
    (relative) with the same zero point (up to the int8/uint8 offset of 128) are replaced.
    """
    restored = 0
    for r, s in match.tensor_map.items():
        ts, tr = src.tensors[s], rsg.tensors[r]
        if ts.is_constant or not (ts.is_quantized and tr.is_quantized) or ts.quantization.per_channel \
                or tr.quantization.per_channel:
            continue
        want, have = np.float32(ts.quantization.scale[0]), np.float32(tr.quantization.scale[0])
        offset = 128 * ((ts.type_name == "UINT8") - (tr.type_name == "UINT8"))
        zs = int(ts.quantization.zero_point[0]) if ts.quantization.zero_point.size else 0
        zr = int(tr.quantization.zero_point[0]) if tr.quantization.zero_point.size else 0
        if want == have or zs - offset != zr or abs(float(want) - float(have)) > 1e-6 * float(want):
            continue
        osg.tensors[r].quantization.scale = np.array([want], dtype=np.float32)
        restored += 1
    return restored


def _restore_op_versions(blob: bytes, src_sg: ir.Subgraph, match: Any) -> tuple[bytes, int]:
    """Give every matched op the source's op version (returns the model and how many changed).

    For an all-uint8 source: the converter writes int8 op versions (CONV_2D 3, ...) and the uint8
    rewrite keeps them, but the same op on uint8 tensors is version 1 there, and legacy runtimes and
    delegates (the reason to want uint8) check versions. The matched op has the source's kind,
    options and (after the rewrite) tensor types, so the source's version is the right one.
    """
    from tensorflow.lite.python import schema_py_generated as fb

    from .fbedit import pack, unpack

    model = unpack(blob)
    ops = model.subgraphs[0].operators
    codes = model.operatorCodes
    changed = 0
    for si, ri in match.pairs:
        want = src_sg.operators[si].version
        code = codes[ops[ri].opcodeIndex]
        if code.version == want:
            continue
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        k = next((i for i, c in enumerate(codes) if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin
                  and c.customCode == code.customCode and c.version == want), None)
        if k is None:
            new = fb.OperatorCodeT()
            new.builtinCode, new.deprecatedBuiltinCode = code.builtinCode, code.deprecatedBuiltinCode
            new.customCode, new.version = code.customCode, want
            codes.append(new)
            k = len(codes) - 1
        ops[ri].opcodeIndex = k
        changed += 1
    used = sorted({op.opcodeIndex for sg in model.subgraphs for op in sg.operators})
    if len(used) != len(codes):  # drop the int8-version codes no op uses any more
        remap = {old: new for new, old in enumerate(used)}
        model.operatorCodes = [codes[i] for i in used]
        for sg in model.subgraphs:
            for op in sg.operators:
                op.opcodeIndex = remap[op.opcodeIndex]
    return pack(model), changed


def _convert_reusing_ranges(src: _Source, dtype: str, io_in: str, io_out: str, per_tensor: bool, restore: bool,
                            legacy: bool, seed: int, progress: Callable[[str], None] | None, progress_bar: bool
                            ) -> tuple[bytes, dict[str, Any]]:
    """The converter run on the range-carrying graph, then the source's weights restored, (for
    uint8) every int8 tensor shifted to uint8 and (for an all-uint8 source) the source's op versions
    restored. Returns the model and what was done."""
    from ..model.reader import read_model
    from .accuracy import match_graphs

    samples = _range_samples(src, REUSE_SAMPLES, seed)
    conv = converter_for(src.saved_dir, src.keys[:1], *_recipe(dtype, io_in, io_out), per_tensor,
                         _dataset(src.inputs, samples, progress_bar))
    try:
        blob = _run_converter(conv, dtype)
    except UnsupportedOpError as exc:
        if any("same scale constraint" in p for p in exc.problems):
            raise UnsupportedOpError([
                *exc.problems,
                "the converter's quantizer requires one shared scale for this op's inputs and output (e.g. "
                "CONCATENATION) and could not reconcile it with the source's recorded ranges; pass --calib DATA "
                "to let the converter choose the scales"]) from None
        raise
    res = read_model(blob)
    src_sg = src.model.subgraphs[src.plan.subgraph_index]
    in_pairs, _ = _io_pairs(res, src)
    match = match_graphs(src_sg, res.main, in_pairs)
    info: dict[str, Any] = {"match": match}
    if restore:
        _log(progress, "restoring the source's weight scales, zero points and integers")
        blob, info["restore"] = _restore_source_weights(blob, src_sg, res, match)
    if dtype == "uint8":
        from .uint8_rewrite import int8_to_uint8

        try:
            blob = int8_to_uint8(blob)
        except UsageError as exc:
            left = (info.get("restore") or {}).get("not_restored") or []
            why = f" ({len(left)} weight(s) could not take the source's parameters: {left[0]['name']}: " \
                  f"{left[0]['why']})" if left else ""
            raise UnsupportedOpError([f"--dtype uint8 from the source's ranges failed{why}: {exc}"]) from None
        if legacy and restore:
            blob, info["op_versions_restored"] = _restore_op_versions(blob, src_sg, match)
    return blob, info


def _lsb_unit(sg: ir.Subgraph, t: ir.Tensor) -> float | None:
    """One step of a source output: its scale, or that of the DEQUANTIZE input behind a float output."""
    if t.is_quantized and not t.quantization.per_channel:
        return float(t.quantization.scale[0])
    for op in sg.operators:
        if op.name == "DEQUANTIZE" and t.index in op.outputs:
            i = sg.tensors[op.inputs[0]]
            if i.is_quantized and not i.quantization.per_channel:
                return float(i.quantization.scale[0])
    return None


def _compare_with_source(path: str, src: _Source, n: int, seed: int) -> list[dict[str, Any]]:
    """Run the source and the result in the interpreter on ``n`` seeded inputs spanning the source's
    input range (integer inputs: uniform over every code) and compare outputs in source LSBs."""
    from ..conversion.verify import run_tflite
    from ..model.reader import read_model
    from ..ops.common import integer_range
    from .accuracy import lsb_metrics

    res = read_model(path)
    in_pairs, out_pairs = _io_pairs(res, src)
    ssg = src.model.subgraphs[src.plan.subgraph_index]
    rsg = res.main
    rng = np.random.default_rng(seed)
    src_runs, res_runs = [], []
    shapes = {io.tensor.index: spec.shape for io, spec in zip(src.plan.inputs, src.inputs)}  # --input-shape
    for _ in range(n):
        by_tensor = {}
        for ti in ssg.inputs:
            t = ssg.tensors[ti]
            if ti in shapes and None not in shapes[ti]:
                shape = list(shapes[ti])
            else:
                shape = [d if d > 0 else 1 for d in t.shape_signature] if t.shape_signature else list(t.shape)
            if t.is_quantized and t.type_name in (*EIGHT_BIT, "INT16"):
                lo, hi = integer_range(t.type_name)
                by_tensor[ti] = rng.integers(lo, hi + 1, shape).astype(t.dtype)
            elif t.dtype.kind == "f":
                lo_f, hi_f = _input_range(ssg, t)
                by_tensor[ti] = rng.uniform(lo_f, hi_f, shape).astype(t.dtype)
            else:
                by_tensor[ti] = np.zeros(shape, t.dtype)
        src_runs.append((None, [], [], [by_tensor[ti] for ti in ssg.inputs]))
        res_in = {r: _quantize_array(_dequantize_array(by_tensor[s], ssg.tensors[s]), rsg.tensors[r])
                  for s, r in in_pairs}
        res_runs.append((None, [], [], [res_in[r] for r in rsg.inputs]))
    src_out = run_tflite(src.path, src_runs)
    res_out = run_tflite(path, res_runs)
    s_pos = {ti: k for k, ti in enumerate(ssg.outputs)}
    r_pos = {ti: k for k, ti in enumerate(rsg.outputs)}
    rows = []
    for (s, r), io in zip(out_pairs, src.plan.outputs):
        ts, tr = ssg.tensors[s], rsg.tensors[r]
        a = [_dequantize_array(o[s_pos[s]], ts) for o in src_out]
        b = [_dequantize_array(o[r_pos[r]], tr) for o in res_out]
        rows.append(lsb_metrics(io.name, a, b, _lsb_unit(ssg, ts)))
    return rows


# -- the command ----------------------------------------------------------------------------------
#: The I/O types each recipe can give (a drop-in result keeps the source's where it is one of them).
_IO_CHOICES = {"int8": ("int8", "uint8", "float32"), "uint8": ("uint8", "float32"), "int16x8": ("float32", "int16")}


def _source_io(source: str) -> tuple[str | None, str | None]:
    """The source's input and output types in --io terms (None: mixed, or nothing real-valued).

    A SavedModel source takes float inputs (integer I/O is refused when it is loaded): float32.
    Only real-valued tensors count (float, or quantized integers); int32 indices and the like are
    not touched by the converter's I/O type.
    """
    if os.path.isdir(source):
        return "float32", "float32"
    from ..model.reader import read_model

    model = read_model(source)
    sg = model.subgraphs[model.signatures[0].subgraph_index] if model.signatures else model.main

    def kind(indices: Sequence[int]) -> str | None:
        kinds = set()
        for i in indices:
            t = sg.tensors[i]
            if t.type_name == "FLOAT32":
                kinds.add("float32")
            elif t.is_quantized and t.type_name in ("INT8", "UINT8", "INT16"):
                kinds.add(t.type_name.lower())
        return kinds.pop() if len(kinds) == 1 else None

    return kind(sg.inputs), kind(sg.outputs)


def _resolve_io(dtype: str, io: str | None, target: str | None,
                source_io: tuple[str | None, str | None] = (None, None)) -> tuple[str, str]:
    """(input type, output type). Without --io/--target: the source's types where the recipe can
    give them (a drop-in replacement), else the recipe's default (int8/uint8 for int8/uint8, float32)."""
    if io is None and target is None:
        choices = _IO_CHOICES.get(dtype, ("float32",))
        default = {"int8": "int8", "uint8": "uint8"}.get(dtype, "float32")

        def pick(t: str | None) -> str:
            if dtype == "uint8" and t == "int8":
                return "uint8"  # the same values, shifted by 128
            return t if t in choices else default

        return pick(source_io[0]), pick(source_io[1])
    if dtype == "uint8":
        if io not in (None, "uint8", "float32"):
            raise UsageError(f"--io {io} with --dtype uint8: uint8 models take uint8 (default) or float32 I/O")
        if target == "imx8mp":
            return "uint8", io or "uint8"
        return io or "uint8", io or "uint8"
    if dtype == "int8":
        if target == "imx8mp":
            return "uint8", io or "uint8"  # camera path: uint8 pixels straight in
        return io or "int8", io or "int8"
    if dtype == "int16x8":
        if io not in (None, "float32", "int16"):
            raise UsageError(f"--io {io} with --dtype int16x8: int16x8 models take float32 or int16 I/O")
        return io or "float32", io or "float32"
    if io not in (None, "float32"):
        raise UsageError(f"--io {io} with --dtype {dtype}: only float32 I/O is possible (integer I/O needs a full-"
                         "integer model: --dtype int8)")
    return "float32", "float32"


def _recipe(dtype: str, io_in: str, io_out: str) -> tuple[str, str, str]:
    """The converter recipe: uint8 is made from int8 (uint8 I/O asked of the converter as int8, the
    rewrite shifts it)."""
    if dtype == "uint8":
        return "int8", "int8" if io_in == "uint8" else io_in, "int8" if io_out == "uint8" else io_out
    return dtype, io_in, io_out


def _check_args(dtype: str, io: str | None, granularity: str, target: str | None) -> None:
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if io is not None and io not in IO_TYPES:
        raise UsageError(f"--io {io}: expected one of {', '.join(IO_TYPES)}")
    if dtype == "uint8" and granularity == "per-channel":
        raise UsageError("--dtype uint8 is per-tensor by definition (uint8 kernels take one scale per tensor); "
                         "drop --granularity per-channel")
    if granularity not in GRANULARITIES:
        raise UsageError(f"--granularity {granularity}: expected one of {', '.join(GRANULARITIES)}")
    if target is not None and target not in TARGETS:
        raise UsageError(f"--target {target}: expected one of {', '.join(TARGETS)}")
    if target == "imx8mp" and dtype not in ("int8", "uint8"):
        raise UsageError(f"--target imx8mp with --dtype {dtype}: the i.MX8M Plus NPU runs 8-bit integer models only; "
                         "use --dtype int8")
    if io == "int16" and dtype != "int16x8":
        raise UsageError("--io int16 goes with --dtype int16x8")
    if granularity == "per-tensor" and dtype not in ("int8", "int16x8", "uint8"):
        raise UsageError(f"--granularity per-tensor applies to full-integer models (int8, int16x8), not {dtype}")


def _quantized_source(source: str, calib: str | None, dtype: str | None) -> ir.Model | None:
    """The source model when it will be requantized with its own ranges: an already-quantized
    .tflite, no calibration data, an 8-bit recipe."""
    if calib is not None or dtype not in (None, "int8", "uint8") or not os.path.isfile(source):
        return None
    from ..conversion.verify import is_quantized_model
    from ..model.reader import read_model

    model = read_model(source)
    return model if is_quantized_model(model) else None


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
    needs_calib = dtype in CALIBRATED and reuse is None
    if needs_calib and calib is None:
        hint = ""
        if dtype == "int16x8" and _quantized_source(source, None, None) is not None:
            hint = " (an already-quantized source's own ranges give int8/uint8 only)"
        raise UsageError(f"--dtype {dtype} needs calibration data{hint}: --calib DATA (.npy, .npz keyed by input "
                         "name, or a folder of images); --calib random only for a smoke test")

    from ..isolation import run_isolated

    tmp_path = _io.temp_file_for(output)
    try:
        result = run_isolated(
            _quantize_work, dict(source=source, output=output, tmp_path=tmp_path, calib=calib, dtype=dtype, io=io,
                                 io_in=io_in, io_out=io_out, granularity=granularity, target=target, mean_v=mean_v,
                                 std_v=std_v, samples=samples, evaluate=evaluate, seed=seed,
                                 progress_bar=progress_bar, reuse_source=reuse is not None, form=form,
                                 restore=restore, needs_calib=needs_calib, start=start,
                                 input_shapes=input_shapes),
            model=source, what="rebuilding the source", progress=progress)
        _io.publish_file(tmp_path, output)
    except BaseException:
        _io.remove_quietly(tmp_path)
        raise
    result.seconds["total"] = time.time() - start
    if report:
        _io.write_json_atomic(report, result.to_json())
    failed = [c for c in result.checks() if not c["passed"]]
    if failed:
        # only comparisons the interpreter could not run: exit 7, as convert's "NOT verified"
        kind: type[InverterError] = VerificationError if any(c["compared"] for c in failed) else InterpreterError
        what = "could not be checked" if kind is InterpreterError else "failed"
        err = kind(
            f"{len(failed)} check(s) of the report {what} ({', '.join(c['check'] for c in failed)}); the "
            f"{result.dtype} model is still written to {output}" + (f", the report to {report}" if report else "")
            + ":\n" + result.format_text())
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


def _quantize_work(source: str, output: str, tmp_path: str, calib: str | None, dtype: str, io: str | None,
                   io_in: str, io_out: str,
                   granularity: str, target: str | None, mean_v: list[float] | None, std_v: list[float] | None,
                   samples: int | None, evaluate: bool, seed: int, progress_bar: bool, reuse_source: bool,
                   form: _SourceForm | None, restore: bool, needs_calib: bool, start: float,
                   input_shapes: InputShapesArg = None) -> QuantizeResult:
    """The TensorFlow part of :func:`quantize`, run in the child process (:mod:`.isolation`): rebuild
    the source, calibrate and convert, write the result into ``tmp_path`` (the parent renames it into
    place), evaluate it."""
    from ..isolation import fault_point
    from ..isolation import progress as report_progress
    from ..model.reader import read_model

    progress = report_progress
    reuse = read_model(source) if reuse_source else None
    timings: dict[str, float] = {}
    t0 = time.time()
    src = _load_source(source, progress, range_ops=reuse is not None, input_shapes=input_shapes)
    try:
        timings["load"] = time.time() - t0
        if reuse is not None and len(src.keys) > 1:
            raise NotImplementedYetError(f"{source} has {len(src.keys)} signatures ({', '.join(src.keys)}); "
                                         "requantizing several signatures with the source's ranges is not "
                                         "implemented yet; pass --calib to calibrate them")
        if needs_calib and src.model is not None:
            _refuse_calibrator_crashes(src.model, dtype)
        datas: dict[str, CalibrationData] = {}
        if calib is not None:
            datas = _load_signature_calibration(calib, src, mean_v, std_v, samples, seed)
            data = next(iter(datas.values()))
            _log(progress, f"calibration data: {len(data)} samples ({data.kind})"
                 + (f" for each of {len(datas)} signatures" if len(datas) > 1 else ""))
            for w in data.warnings:
                _log(progress, f"WARNING: {w}")
        result = QuantizeResult(source=source, output=output, dtype=dtype, io={"input": io_in, "output": io_out},
                                granularity=granularity, target=target, size_before=src.size)
        held: list[list[np.ndarray]] = []  # the first signature's held-back samples
        calib_by_sig: dict[str, list[list[np.ndarray]]] = {}
        held_by_sig: dict[str, list[list[np.ndarray]]] = {}
        if reuse is not None:
            result.reference = "source"
            result.lossless = restore
            result.calibration = {
                "kind": "source ranges", "representative_samples": REUSE_SAMPLES,
                "note": "activation scales and zero points are the source's (fake-quant ops in the rebuilt graph); "
                        "the synthetic representative samples span the input range and set no range",
                "weights": ("the source's scales, zero points and integers" if restore else
                            "new per-channel scales from the converter ("
                            + ("the source's asymmetric uint8 weights do not fit int8 kernels)" if form.legacy_uint8
                               else "the source's weights are per-tensor)")),
            }
            result.evaluated_on = (f"{EVAL_RANDOM_SAMPLES} seeded inputs over the source's input range, against the "
                                   "source model in the interpreter" if evaluate else "not evaluated")
        elif datas:
            for key, d in datas.items():
                calib_by_sig[key], held_by_sig[key] = d.split()
            held = held_by_sig[src.keys[0]]
            data = datas[src.keys[0]]
            result.calibration = data.to_json()
            if len(datas) > 1:
                result.calibration["signatures"] = {k: d.to_json() for k, d in datas.items()}
            result.warnings.extend(data.warnings)
            result.evaluated_on = (f"{len(held)} held-back samples" if data.kind != "random"
                                   else f"{len(held)} held-back RANDOM samples")
            if len(datas) > 1:
                result.evaluated_on += f" per signature ({len(datas)} signatures)"
        else:
            for k, sig in enumerate(src.sigs):
                rnd = load_calibration("random", sig.inputs, samples=EVAL_RANDOM_SAMPLES + 1, seed=seed + 1 + k)
                held_by_sig[sig.key] = rnd.samples[:EVAL_RANDOM_SAMPLES]
            held = held_by_sig[src.keys[0]]
            result.calibration = {"kind": "none"}
            result.evaluated_on = f"{len(held)} random inputs in [-1, 1] (no --calib given)"
        _check_default_shapes(src, calib_by_sig, held_by_sig)
        feeds = [(sig, calib_by_sig.get(sig.key, [])) for sig in src.sigs]

        per_tensor = granularity == "per-tensor"
        t0 = time.time()
        match = None
        if reuse is not None:
            _log(progress, f"converting with the source's ranges ({dtype}, {granularity}, I/O {io_in}/{io_out})")
            blob, info = _convert_reusing_ranges(src, dtype, io_in, io_out, per_tensor, restore,
                                                 form is not None and form.legacy_uint8, seed, progress, progress_bar)
            match = info["match"]
            result.graph_match = _match_json(match)
            if "op_versions_restored" in info:
                result.graph_match["op_versions_restored"] = info["op_versions_restored"]
            result.weights_restore = info.get("restore")
        else:
            _log(progress, f"converting ({dtype}{', ' + granularity if needs_calib else ''}, I/O {io_in}/{io_out})")
            conv = converter_for(src.saved_dir, src.keys, *_recipe(dtype, io_in, io_out), per_tensor,
                                 _signatures_dataset(feeds, progress_bar) if needs_calib else None)
            blob = _run_converter(conv, dtype)
            if dtype == "uint8":
                from .uint8_rewrite import int8_to_uint8

                blob = int8_to_uint8(blob)
        timings["calibrate_convert"] = time.time() - t0
        blob, result.interface = restore_interface(src.model, [s.plan for s in src.sigs], blob,
                                                   _io_reason(io, target, dtype))
        result.size_after = len(blob)

        # the parent owns tmp_path: it renames it into place, or removes it on any failure
        with open(tmp_path, "wb") as fh:
            fh.write(blob)
        from ..model.reader import read_model

        written = read_model(tmp_path)
        result.float_ops = float_ops(written) if dtype in ("int8", "uint8") else []
        if result.float_ops:
            result.warnings.append(f"{len(result.float_ops)} op(s) still compute in float")
        if dtype == "uint8":
            _log(progress, "checking the uint8 kernels and running the result once")
            result.uint8_check = _uint8_check(written, tmp_path, src, held)
            missing = result.uint8_check["ops_without_uint8_kernel"]
            if missing:
                result.warnings.append(f"{len(missing)} op(s) have no uint8 kernel in TFLite: "
                                       + ", ".join(sorted({m['op'] for m in missing})))
            if not result.uint8_check["ran"]:
                result.warnings.append("the uint8 result did not run in the TFLite interpreter: "
                                       + str(result.uint8_check["run_error"]))
        if match is not None:
            from .accuracy import compare_activations, compare_constants

            src_sg = src.model.subgraphs[src.plan.subgraph_index]
            result.weights_check = compare_constants(src_sg, written.main, match)
            result.activations_check = compare_activations(src_sg, written.main, match)
            if not result.activations_check["equivalent"]:
                result.warnings.append("some activation scales or zero points differ from the source's (see "
                                       "activations_check)")
            result.warnings.extend(_match_warnings(match, result.weights_check, restore))
            if evaluate:
                t0 = time.time()
                _log(progress, f"comparing with the source on {EVAL_RANDOM_SAMPLES} inputs")
                try:
                    result.accuracy = _compare_with_source(tmp_path, src, EVAL_RANDOM_SAMPLES, seed + 1)
                except InterpreterError as exc:
                    result.evaluated_on = f"not evaluated: {exc}"
                    result.warnings.append(f"the comparison with the source could not run: {exc}")
                timings["evaluate"] = time.time() - t0
        elif evaluate and held:
            t0 = time.time()
            _log(progress, f"evaluating on {len(held)} samples")
            fault_point("evaluate")
            ref = {sig.key: _reference(sig, held_by_sig[sig.key]) for sig in src.sigs if held_by_sig.get(sig.key)}
            result.accuracy = _evaluate(tmp_path, src, held_by_sig, ref)
            if needs_calib and len(src.sigs) == 1:
                _log(progress, "comparing every quantized activation with the float model's")
                result.worst_layers = _worst_layers(src, blob, held)
            elif needs_calib:
                result.worst_layers = {"unavailable": "the per-layer comparison covers models with one "
                                                      f"signature; this one has {len(src.sigs)}"}
            if per_tensor:
                _log(progress, "converting int8 per-channel too, for comparison")
                conv = converter_for(src.saved_dir, src.keys, *_recipe("int8", io_in, io_out), False,
                                     _signatures_dataset(feeds, progress_bar))
                pc_blob = _run_converter(conv, dtype)
                with tempfile.TemporaryDirectory(prefix="tflite-inverter-pc-") as d:
                    pc_path = os.path.join(d, "per_channel.tflite")
                    with open(pc_path, "wb") as fh:
                        fh.write(pc_blob)
                    result.per_channel = _evaluate(pc_path, src, held_by_sig, ref)
            timings["evaluate"] = time.time() - t0
        if target is not None:
            result.target_report = _target_report(blob, target)
    finally:
        if src.tmp:
            shutil.rmtree(src.tmp, ignore_errors=True)
    timings["total"] = time.time() - start
    result.seconds = timings
    return result




def _match_json(match: Any) -> dict[str, Any]:
    return {"operators_matched": len(match.pairs), "complete": match.complete,
            "extra_result_ops": match.extra_result_ops, "skipped_source_ops": match.skipped_source_ops,
            "unmatched_result_ops": match.unmatched_result_ops, "unmatched_source_ops": match.unmatched_source_ops}


def _match_warnings(match: Any, weights: dict[str, Any], restore: bool) -> list[str]:
    out = []
    if not match.complete:
        out.append("the result's graph differs from the source's: "
                   + "; ".join(x for x in (
                       f"result ops without a source counterpart (their weights keep the converter's "
                       f"quantization; an output range the source lacks comes from the synthetic samples): "
                       f"{', '.join(match.unmatched_result_ops[:5])}"
                       if match.unmatched_result_ops else "",
                       f"source ops without a result counterpart: {', '.join(match.unmatched_source_ops[:5])}"
                       if match.unmatched_source_ops else "") if x))
    if restore and not weights["identical"] and not weights["equivalent"]:
        out.append(f"{len(weights['differing'])} of {weights['compared']} constant(s) differ from the source's "
                   + (f"and {len(weights['not_compared'])} were not compared " if weights["not_compared"] else "")
                   + "(see weights_check)")
    return out
