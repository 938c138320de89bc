"""The accuracy metrics of ``quantize``: quantized outputs against the float model (or the source).

Per output: SQNR in dB (``10 log10(sum ref^2 / sum (ref - q)^2)``), cosine similarity, max and mean
absolute error, and for classifier-shaped outputs (``[N, C]`` per batch, ``C > 1``) top-1
agreement (:func:`output_metrics`); when an already-quantized source is requantized with its own
ranges, the outputs in units of the source's LSB (:func:`lsb_metrics`). Plus the structural check
that a full-integer model has no float op left except the QUANTIZE/DEQUANTIZE at declared float I/O
(:func:`float_ops`). The pairing of two graphs lives in :mod:`.matching`, the per-layer comparison in
:mod:`.layers`. No TensorFlow here: numpy and our own reader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..model import ir
from ..model.qparams import FLOAT_TYPES


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


def fmt_value(v: Any, unit: str = "") -> str:
    """A metric for a table: 4 significant digits, ``+inf``/``-inf``, ``-`` for none."""
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
        row = [m["output"], fmt_value(m["sqnr_db"], " dB"), f"{m['cosine']:.5f}", fmt_value(m["max_abs_err"]),
               "-" if top is None else f"{100 * top:.1f}%"]
        if compare:
            c = compare.get(m["output"], {})
            row.append(fmt_value(c.get("sqnr_db"), " dB"))
        table.append(row)
    return format_table(head, table)


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


# -- comparing a requantized model with its quantized source ("reuse source ranges") ---------------
#: Ops that move or re-type data without computing: the converter may add one the source lacks (a


def format_table(head: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "") -> str:
    """Rows under a header, each column padded to its widest cell."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    return "\n".join(indent + "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *rows])


def lsb_metrics(name: str, src: Sequence[np.ndarray], got: Sequence[np.ndarray], lsb: float | None
                ) -> dict[str, Any]:
    """Result vs source outputs (real values, one array per sample) in units of the source's LSB."""
    r = np.stack([np.asarray(a, dtype=np.float64) for a in src])
    g = np.stack([np.asarray(a, dtype=np.float64) for a in got])
    out: dict[str, Any] = {"output": name, "shape": list(np.asarray(src[0]).shape), "samples": len(src), "lsb": lsb}
    if r.shape != g.shape:
        out.update(error=f"shape {list(g.shape[1:])} != source's {list(r.shape[1:])}")
        return out
    diff = np.abs(r - g)
    out["max_abs_err"] = float(diff.max()) if diff.size else 0.0
    out["exact_fraction"] = float(np.mean(diff == 0)) if diff.size else 1.0
    if lsb:
        units = diff / lsb
        out["max_lsb"] = float(np.round(units.max(), 6)) if units.size else 0.0
        out["within_1_lsb"] = float(np.mean(units <= 1.0 + 1e-6)) if units.size else 1.0
    return out


def format_lsb_metrics(rows: Sequence[dict[str, Any]]) -> str:
    """A table: one row per output (result vs source)."""
    head = ["output", "max LSB", "within 1 LSB", "exact", "max abs err"]
    table = []
    for m in rows:
        if "error" in m:
            table.append([m["output"], m["error"], "", "", ""])
            continue
        lsb = m.get("max_lsb")
        table.append([m["output"], "-" if lsb is None else f"{lsb:g}",
                      "-" if lsb is None else f"{100 * m['within_1_lsb']:.2f}%",
                      f"{100 * m['exact_fraction']:.2f}%", fmt_value(m["max_abs_err"])])
    return format_table(head, table)


# -- per-layer precision: the tensors that lose the most ---------------------------------------------
#: Tensors compared per layer: quantized activations produced by an op (not constants, not the
