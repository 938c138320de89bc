"""The op-coverage report behind ``tflite-inverter inspect``.

:func:`build_report` turns an :class:`~tflite_inverter.model.ir.Model` into a plain dict (the JSON output,
documented field by field in ``docs/report-json.md``); :func:`render_report` prints it as text,
markdown or JSON. Nothing here imports TensorFlow: rebuild support comes from the rebuilder registry
(``registry.support``), NPU placement from :mod:`tflite_inverter.coverage.targets`.

The JSON is deterministic: object keys are sorted, lists are in file / execution order, there are no
timestamps and the model is named by its file's basename only.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import UsageError
from ..model.ir import Model, Subgraph, Tensor
from . import quantkind

FORMAT = "tflite-inverter-report"
FORMAT_VERSION = 1
FORMATS = ("text", "markdown", "json")


# == building ======================================================================================


def build_report(model: Model, target: str | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict; ``target`` (e.g. ``"imx8mp"``) adds NPU placement."""
    from ..ops import registry

    op_types: dict[str, dict[str, Any]] = {}
    kinds_by_type: dict[str, list[str]] = defaultdict(list)
    versions: dict[str, set[int]] = defaultdict(set)
    support: dict[str, list[tuple[bool, str | None]]] = defaultdict(list)
    subgraphs = []
    for sg in model.subgraphs:
        prod = quantkind.producers(sg)
        hist: Counter[str] = Counter()
        for op in sg.operators:
            hist[op.key] += 1
            kinds_by_type[op.key].append(quantkind.classify(op, sg, prod))
            versions[op.key].add(op.version)
            support[op.key].append(_support(registry, op, sg, model))
        subgraphs.append({
            "index": sg.index,
            "name": sg.name,
            "operators": len(sg.operators),
            "tensors": len(sg.tensors),
            "inputs": [_tensor_info(sg, i) for i in sg.inputs],
            "outputs": [_tensor_info(sg, i) for i in sg.outputs],
            "op_histogram": dict(sorted(hist.items())),
        })

    kind_totals: Counter[str] = Counter()
    for key in sorted(kinds_by_type):
        kind, breakdown = quantkind.aggregate(kinds_by_type[key])
        kind_totals.update(kinds_by_type[key])
        sup = support[key]
        reasons = sorted({r for ok, r in sup if not ok and r})
        n_ok = sum(ok for ok, _ in sup)
        op_types[key] = {
            "count": len(sup),
            "builtin": not key.startswith("CUSTOM"),
            "versions": sorted(versions[key]),
            "quantization": kind,
            "quantization_instances": breakdown,
            "int8_kernel": quantkind.has_int8_kernel(key),
            "rebuild": {"supported": n_ok == len(sup), "supported_instances": n_ok, "reasons": reasons},
        }

    n_ops = sum(len(sg.operators) for sg in model.subgraphs)
    unsupported = sorted(k for k, v in op_types.items() if not v["rebuild"]["supported"])
    int8_table = quantkind.int8_kernel_table()
    report: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "model": {
            "file": os.path.basename(model.path) if model.path else None,
            "size_bytes": int(model.size),
            "schema_version": int(model.version),
            "description": model.description or "",
            "metadata": [name for name, _ in model.metadata],
            "subgraphs": len(model.subgraphs),
            "operators": n_ops,
            "tensors": sum(len(sg.tensors) for sg in model.subgraphs),
        },
        "signatures": [_signature(model, s) for s in model.signatures],
        "subgraphs": subgraphs,
        "op_types": op_types,
        "quantization_summary": dict(sorted(kind_totals.items())),
        "rebuild_summary": {
            "supported_ops": sum(v["rebuild"]["supported_instances"] for v in op_types.values()),
            "unsupported_ops": n_ops - sum(v["rebuild"]["supported_instances"] for v in op_types.values()),
            "unsupported_op_types": unsupported,
        },
        "sources": {
            "int8_kernels": {"title": int8_table["title"], "evidence": int8_table["evidence"]},
            "rebuild": "tflite_inverter.ops.registry.support",
        },
        "target": None,
    }
    if target is not None:
        from .targets import get_target

        report["target"] = get_target(target).predict(model)
    return _clean(report)


def _support(registry: Any, op: Any, sg: Subgraph, model: Model) -> tuple[bool, str | None]:
    try:
        return registry.support(op, sg, model)
    except Exception as exc:  # a rebuilder's check crashed: report it, do not kill the report
        return False, f"support check raised {type(exc).__name__}: {exc}"


def _quant_info(t: Tensor) -> dict[str, Any] | None:
    q = t.quantization
    if q is None or not (q.is_quantized or q.details):
        return None
    return q.to_json()


def _tensor_info(sg: Subgraph, idx: int) -> dict[str, Any]:
    if not 0 <= idx < len(sg.tensors):
        return {"index": idx, "name": None, "dtype": None, "shape": None, "dynamic": False, "quantization": None}
    t = sg.tensors[idx]
    return {
        "index": t.index,
        "name": t.name,
        "dtype": t.type_name,
        "shape": [int(d) for d in t.shape_signature],
        "dynamic": t.is_dynamic,
        "quantization": _quant_info(t),
    }


def _signature(model: Model, sig: Any) -> dict[str, Any]:
    sg = model.subgraphs[sig.subgraph_index] if 0 <= sig.subgraph_index < len(model.subgraphs) else None

    def io(pairs: Any) -> list[dict[str, Any]]:
        out = []
        for name, idx in pairs:
            info = _tensor_info(sg, idx) if sg is not None else {"index": idx}
            out.append({"signature_name": name, **info})
        return out

    return {"key": sig.key, "subgraph": sig.subgraph_index, "inputs": io(sig.inputs), "outputs": io(sig.outputs)}


def _clean(v: Any) -> Any:
    """JSON-safe plain data: numpy -> python, bytes -> a size note, non-finite floats -> strings."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, np.generic):
        return _clean(v.item())
    if isinstance(v, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(v))} bytes>"
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


# == rendering =====================================================================================


def render_report(report: dict[str, Any], fmt: str = "text") -> str:
    """The report as ``text`` (aligned tables), ``markdown`` or ``json`` (sorted keys, stable)."""
    if fmt == "json":
        return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt == "text":
        return _Renderer(markdown=False).render(report)
    if fmt == "markdown":
        return _Renderer(markdown=True).render(report)
    raise UsageError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def _shape(shape: list[int] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ",".join("?" if d < 0 else str(d) for d in shape) + "]"


def _fmt_float(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _quant_text(q: dict[str, Any] | None) -> str:
    if not q:
        return "-"
    if q["channels"] == 0:
        det = q.get("details") or {}
        return f"{det.get('type', 'custom')} quantization"
    if q["per_channel"]:
        return f"per-channel x{q['channels']} (axis {q['quantized_dimension']})"
    return f"scale {_fmt_float(q['scale'][0])} zp {q['zero_point'][0]}"


def _short(s: str, n: int = 48) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


class _Renderer:
    def __init__(self, markdown: bool):
        self.md = markdown
        self.lines: list[str] = []

    # .. primitives .................................................................................
    def heading(self, text: str) -> None:
        if self.lines:
            self.lines.append("")
        if self.md:
            self.lines.append(f"## {text}")
            self.lines.append("")
        else:
            self.lines.append(text)
            self.lines.append("=" * len(text))

    def sub(self, text: str) -> None:
        if self.md:
            self.lines.extend(["", f"### {text}", ""])
        else:
            self.lines.extend(["", text])

    def para(self, text: str) -> None:
        if self.md:
            self.lines.extend(["", text, ""])  # render() collapses repeated blank lines
        else:
            self.lines.append(f"  {text}")

    def bullet(self, text: str) -> None:
        self.lines.append(f"- {text}" if self.md else f"  * {text}")

    def table(self, headers: list[str], rows: list[list[Any]], right: tuple[int, ...] = ()) -> None:
        cells = [[str(c).replace("\r", " ").replace("\n", " ") for c in r] for r in rows]
        if self.md:
            esc = [[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in cells]
            if self.lines and self.lines[-1] != "":
                self.lines.append("")
            self.lines.append("| " + " | ".join(headers) + " |")
            self.lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|")
            for r in esc:
                self.lines.append("| " + " | ".join(r) + " |")
            self.lines.append("")
            return
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

        def line(vals: list[str]) -> str:
            out = []
            for i, v in enumerate(vals):
                last = i == len(vals) - 1
                out.append(v.rjust(widths[i]) if i in right else (v if last else v.ljust(widths[i])))
            return ("  " + "  ".join(out)).rstrip()

        self.lines.append(line(headers))
        self.lines.append(line(["-" * w for w in widths]))
        for r in cells:
            self.lines.append(line(r))

    # .. sections ...................................................................................
    def render(self, rep: dict[str, Any]) -> str:
        self.model(rep)
        self.signatures(rep)
        self.subgraphs(rep)
        self.op_types(rep)
        if rep.get("target"):
            self.target(rep["target"])
        out: list[str] = []
        for ln in self.lines:  # one blank line between blocks, never two
            if ln == "" and (not out or out[-1] == ""):
                continue
            out.append(ln)
        return "\n".join(out).rstrip("\n") + "\n"

    def model(self, rep: dict[str, Any]) -> None:
        m = rep["model"]
        self.heading(f"Model {m['file'] or '(bytes)'}")
        kinds = rep["quantization_summary"]
        rows = [
            ["size", f"{m['size_bytes']:,} bytes"],
            ["schema version", m["schema_version"]],
            ["description", _short(m["description"], 80) or "-"],
            ["metadata", ", ".join(m["metadata"]) or "-"],
            ["subgraphs", m["subgraphs"]],
            ["operators", m["operators"]],
            ["tensors", m["tensors"]],
            ["quantization", ", ".join(f"{quantkind.label(k)} ({n})" for k, n in kinds.items()) or "-"],
            ["rebuildable ops", f"{rep['rebuild_summary']['supported_ops']} of {m['operators']}"],
        ]
        self.table(["field", "value"], rows)

    def _io_rows(self, entries: list[dict[str, Any]], io: str, lead: list[str]) -> list[list[Any]]:
        rows = []
        for e in entries:
            rows.append(lead + [io, e.get("signature_name", ""), f"#{e['index']} {_short(e.get('name') or '', 40)}",
                                _shape(e.get("shape")), e.get("dtype") or "?", _quant_text(e.get("quantization"))])
        return rows

    def signatures(self, rep: dict[str, Any]) -> None:
        self.heading("Signatures")
        sigs = rep["signatures"]
        if not sigs:
            self.para("(none: the file has no SignatureDef; see the subgraph inputs/outputs below)")
            return
        rows: list[list[Any]] = []
        for s in sigs:
            lead = [s["key"], s["subgraph"]]
            rows += self._io_rows(s["inputs"], "input", lead) + self._io_rows(s["outputs"], "output", lead)
        self.table(["signature", "subgraph", "io", "name", "tensor", "shape", "dtype", "quantization"], rows)

    def subgraphs(self, rep: dict[str, Any]) -> None:
        for sg in rep["subgraphs"]:
            name = f" \"{sg['name']}\"" if sg["name"] else ""
            self.heading(f"Subgraph {sg['index']}{name}: {sg['operators']} operators, {sg['tensors']} tensors")
            rows = self._io_rows(sg["inputs"], "input", []) + self._io_rows(sg["outputs"], "output", [])
            # drop the (empty) signature-name column: subgraph I/O have tensor names only
            self.table(["io", "tensor", "shape", "dtype", "quantization"], [[r[0], *r[2:]] for r in rows])
            self.sub("Op histogram")
            self.table(["op", "count"], [[k, n] for k, n in sg["op_histogram"].items()], right=(1,))

    def op_types(self, rep: dict[str, Any]) -> None:
        self.heading("Op types (all subgraphs)")
        rows = []
        for key, v in rep["op_types"].items():
            q = quantkind.label(v["quantization"])
            if v["quantization"] == "mixed":
                q += " (" + ", ".join(f"{quantkind.label(k)}: {n}" for k, n in v["quantization_instances"].items()) + ")"
            k8 = {True: "yes", False: "no", None: "n/a"}[v["int8_kernel"]]
            rb = v["rebuild"]
            if rb["supported"]:
                r = "yes"
            else:
                head = "no" if rb["supported_instances"] == 0 else f"partly ({rb['supported_instances']}/{v['count']})"
                r = f"{head}: {'; '.join(rb['reasons'])}"
            rows.append([key, v["count"], q, k8, r])
        self.table(["op", "count", "quantization", "int8 kernel (TFLite)", "rebuild"], rows, right=(1,))
        self.para("int8 kernel: from the TFLite builtin int8 kernel list (data: targets/tflite_int8_kernels.json).")

    def target(self, t: dict[str, Any]) -> None:
        s = t["summary"]
        r = t["rules"]
        b = r["baseline"]
        self.heading(f"NPU placement: {t['name']} ({t['title']})")
        pol = t["policy"]
        wp = s["without_policy"]
        rows = [
            ["rules", f"{b['repo']} {b['branch']} @ {b['commit'][:12]} (BSP {r['bsp']}, compiled {r['compiled']})"],
            ["result", f"{s['npu']} NPU / {s['cpu']} CPU of {s['operators']} ops, {s['partitions']} NPU partition(s)"
                       + (" -- fully NPU" if s["fully_npu"] else "")],
            ["float policy", f"float_ops_on_cpu={'true' if pol['float_ops_on_cpu'] else 'false'}: float ops count as "
                             "CPU by POLICY (G5), not because the delegate rejects them"],
            ["without policy", f"{wp['npu']} NPU / {wp['cpu']} CPU, {wp['partitions']} NPU partition(s) "
                               "(delegate checks only)"],
            ["partitions", ", ".join(f"subgraph {g['index']}: {g['partitions']}" for g in t["subgraphs"]) or "-"],
        ]
        if s["cpu_ops_by_type"]:
            rows.append(["CPU ops", ", ".join(f"{k} ({n})" for k, n in s["cpu_ops_by_type"].items())])
        if s["ops_with_dynamic_dims"]:
            rows.append(["dynamic dims", f"{s['ops_with_dynamic_dims']} op(s) touch tensors with dynamic (-1) "
                                         "dimensions; checked with the file's default shape"])
        self.table(["field", "value"], rows)
        rows = []
        for g in t["subgraphs"]:
            for o in g["ops"]:
                why = "; ".join(_reason_text(x) for x in o["reasons"])
                if o["notes"]:
                    why = "; ".join([why] + [f"note {n}" for n in o["notes"]]) if why else "note " + "; ".join(o["notes"])
                rows.append([g["index"], o["index"], o["op"], o["placement"], why])
        self.sub("Per operator (execution order)")
        self.table(["subgraph", "#", "op", "placement", "reason"], rows, right=(0, 1))
        self.sub("Caveats")
        for c in t["caveats"]:
            self.bullet(c)


def _reason_text(r: dict[str, Any]) -> str:
    if r["policy"]:
        return f"{r['rule']} POLICY: float op (project policy, not a delegate check)"
    ref = f" [{r['ref']}]" if r.get("ref") else ""
    return f"{r['rule']}: {r['message']}{ref}"
