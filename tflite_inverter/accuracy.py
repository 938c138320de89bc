"""The accuracy report of ``quantize``: quantized outputs against the float model.

Per output: SQNR in dB (``10 log10(sum ref^2 / sum (ref - q)^2)``), cosine similarity, max and mean
absolute error, and for classifier-shaped outputs (``[N, C]`` per batch, ``C > 1``) top-1
agreement. Plus the structural check that a full-integer model has no float op left except the
QUANTIZE/DEQUANTIZE at declared float I/O. No TensorFlow here: numpy and our own reader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import ir

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


def output_metrics(name: str, ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> dict[str, Any]:
    """Metrics of one output over the held-back samples (``ref``/``got``: one array per sample)."""
    r = np.stack([np.asarray(a, dtype=np.float64) for a in ref])
    g = np.stack([np.asarray(a, dtype=np.float64) for a in got])
    out: dict[str, Any] = {"output": name, "shape": list(np.asarray(ref[0]).shape), "samples": len(ref)}
    if r.shape != g.shape:
        out.update(error=f"shape {list(g.shape[1:])} != float model's {list(r.shape[1:])}")
        return out
    noise = float(np.sum((r - g) ** 2))
    signal = float(np.sum(r ** 2))
    if noise == 0.0:
        sqnr = math.inf
    elif signal == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(signal / noise)
    rf, gf = r.reshape(-1), g.reshape(-1)
    denom = float(np.linalg.norm(rf) * np.linalg.norm(gf))
    cosine = float(np.dot(rf, gf) / denom) if denom > 0 else (1.0 if noise == 0.0 else 0.0)
    diff = np.abs(r - g)
    out.update(sqnr_db=sqnr, cosine=cosine, max_abs_err=float(diff.max()) if diff.size else 0.0,
               mean_abs_err=float(diff.mean()) if diff.size else 0.0,
               ref_max_abs=float(np.abs(r).max()) if r.size else 0.0)
    per_sample = r.shape[1:]
    squeezed = [d for d in per_sample if d != 1]
    if len(per_sample) >= 1 and len(squeezed) == 1 and squeezed[0] > 1 and per_sample[-1] == squeezed[0]:
        c = squeezed[0]
        top_r = np.argmax(r.reshape(-1, c), axis=-1)
        top_g = np.argmax(g.reshape(-1, c), axis=-1)
        out["top1_agreement"] = float(np.mean(top_r == top_g))
    return out


def float_ops(model: ir.Model) -> list[str]:
    """Ops that still compute in float: any op touching a float tensor, except QUANTIZE reading a
    float model input and DEQUANTIZE writing a float model output (declared float I/O)."""
    found = []
    for sg in model.subgraphs:
        ins, outs = set(sg.inputs), set(sg.outputs)
        for op in sg.operators:
            fl_in = [i for i in op.inputs if i >= 0 and sg.tensors[i].type_name in FLOAT_TYPES]
            fl_out = [i for i in op.outputs if i >= 0 and sg.tensors[i].type_name in FLOAT_TYPES]
            if not fl_in and not fl_out:
                continue
            if op.name == "QUANTIZE" and not fl_out and all(i in ins for i in fl_in):
                continue
            if op.name == "DEQUANTIZE" and not fl_in and all(i in outs for i in fl_out):
                continue
            names = ", ".join(f"{sg.tensors[i].name!r} ({sg.tensors[i].type_name})" for i in fl_in + fl_out)
            found.append(f"{sg.where(op)}: float tensor(s) {names}")
    return found


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isinf(v):
            return ("+" if v > 0 else "-") + "inf" + unit
        return f"{v:.4g}{unit}"
    return str(v)


def format_metrics(rows: Sequence[dict[str, Any]], compare: dict[str, dict[str, Any]] | None = None) -> str:
    """A table: one row per output."""
    head = ["output", "SQNR", "cosine", "max abs err", "top-1 agree"]
    if compare:
        head.append("SQNR per-channel")
    table = []
    for m in rows:
        if "error" in m:
            table.append([m["output"], m["error"], "", "", ""] + ([""] if compare else []))
            continue
        top = m.get("top1_agreement")
        row = [m["output"], _fmt(m["sqnr_db"], " dB"), f"{m['cosine']:.5f}", _fmt(m["max_abs_err"]),
               "-" if top is None else f"{100 * top:.1f}%"]
        if compare:
            c = compare.get(m["output"], {})
            row.append(_fmt(c.get("sqnr_db"), " dB"))
        table.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *table])


def json_safe(obj: Any) -> Any:
    """Infinite floats as the strings "inf"/"-inf" so the report stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj
