"""What ``quantize`` returns and writes: :class:`QuantizeResult` (its text table and JSON report) and the
one-line summaries of each check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .layers import format_worst_layers
from .metrics import format_lsb_metrics, format_metrics, json_safe


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
    #: (:func:`.layers.worst_layers`), or a dict ``{"unavailable": why}``
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
