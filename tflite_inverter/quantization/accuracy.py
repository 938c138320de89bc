"""The accuracy report of ``quantize``: quantized outputs against the float model (or the source).

Per output: SQNR in dB (``10 log10(sum ref^2 / sum (ref - q)^2)``), cosine similarity, max and mean
absolute error, and for classifier-shaped outputs (``[N, C]`` per batch, ``C > 1``) top-1
agreement. Plus the structural check that a full-integer model has no float op left except the
QUANTIZE/DEQUANTIZE at declared float I/O.

When an already-quantized source is requantized with its own ranges, the reference is the source
itself: outputs in units of the source's LSB (:func:`lsb_metrics`) and a bit-for-bit check of every
constant (:func:`compare_constants`), the ops paired by data flow (:func:`match_graphs`). No
TensorFlow here: numpy and our own reader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import ir
from ..model.qparams import FLOAT_TYPES, quantize_values


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


# -- comparing a requantized model with its quantized source ("reuse source ranges") ---------------
#: Ops that move or re-type data without computing: the converter may add one the source lacks (a
#: QUANTIZE at a float input, a RESHAPE before a FULLY_CONNECTED) or drop one the source has; the
#: structural match looks through them.
TRANSPARENT_OPS = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS")
#: Source ops the converter may fold into the op that reads them (an explicit zero PAD before a
#: VALID convolution becomes SAME padding): looked through on the source side only.
FOLDABLE_SOURCE_OPS = ("PAD", "PADV2")


@dataclass
class GraphMatch:
    """Operators of a source subgraph paired with those of a converted one (by data flow)."""

    pairs: list[tuple[int, int]]  # (source operator index, result operator index)
    extra_result_ops: list[str]  # result ops looked through (no source counterpart)
    skipped_source_ops: list[str]  # source ops looked through (the result has none)
    unmatched_result_ops: list[str]  # result ops that compute and have no source counterpart
    unmatched_source_ops: list[str]
    skipped_source_indices: list[int] = field(default_factory=list)
    tensor_map: dict[int, int] = field(default_factory=dict)  # result tensor -> the source tensor it stands for

    @property
    def complete(self) -> bool:
        return not self.unmatched_result_ops and not self.unmatched_source_ops


def _dynamic_inputs(sg: ir.Subgraph, op: ir.Operator) -> list[int]:
    return [i for i in op.inputs if i >= 0 and not sg.tensors[i].is_constant]


def match_graphs(src: ir.Subgraph, res: ir.Subgraph, input_pairs: Sequence[tuple[int, int]]) -> GraphMatch:
    """Pair the operators of ``res`` (a conversion of ``src``) with the source's by data flow.

    ``input_pairs``: (source tensor, result tensor) for the graph inputs. Walking the result in its
    (topological) order, an op matches the unmatched source op of the same kind whose non-constant
    inputs are the source tensors its own inputs stand for; data-movement ops (:data:`TRANSPARENT_OPS`)
    without a counterpart on either side are looked through, and so are source PADs the converter
    folded into the next op. Names play no part: the converter renames every tensor.
    """
    stands_for: dict[int, int] = {r: s for s, r in input_pairs}  # result tensor -> source tensor
    producer = {o: k for k, op in enumerate(src.operators) for o in op.outputs if o >= 0}
    by_key: dict[str, list[int]] = {}
    for k, op in enumerate(src.operators):
        by_key.setdefault(op.key, []).append(k)
    used: set[int] = set()
    skipped: set[int] = set()

    def same_source(s_in: int, want: int) -> list[int] | None:
        """The source ops looked through from ``s_in`` back to ``want`` (None: no such chain)."""
        chain: list[int] = []
        while s_in != want:
            k = producer.get(s_in)
            if k is None or k in used or src.operators[k].name not in (*TRANSPARENT_OPS, *FOLDABLE_SOURCE_OPS):
                return None
            ins = _dynamic_inputs(src, src.operators[k])
            if len(ins) != 1:
                return None
            chain.append(k)
            s_in = ins[0]
        return chain

    out = GraphMatch([], [], [], [], [])
    for r, rop in enumerate(res.operators):
        want = [stands_for.get(i) for i in _dynamic_inputs(res, rop)]
        found = None
        if None not in want:
            for k in by_key.get(rop.key, []):
                if k in used:
                    continue
                ins = _dynamic_inputs(src, src.operators[k])
                if len(ins) != len(want):
                    continue
                chains = [same_source(a, b) for a, b in zip(ins, want)]
                if all(c is not None for c in chains):
                    found = k
                    for c in chains:
                        skipped.update(c or [])
                    break
        if found is not None:
            used.add(found)
            for a, b in zip(src.operators[found].outputs, rop.outputs):
                if a >= 0 and b >= 0:
                    stands_for[b] = a
            out.pairs.append((found, r))
        elif rop.name in TRANSPARENT_OPS and len(want) == 1 and want[0] is not None and len(rop.outputs) == 1:
            stands_for[rop.outputs[0]] = want[0]
            out.extra_result_ops.append(res.where(rop))
        else:
            out.unmatched_result_ops.append(res.where(rop))
    for k, op in enumerate(src.operators):
        # besides those looked through: a data-movement op at the model boundary the result does
        # without (e.g. the source's QUANTIZE uint8 -> int8 when the result takes int8 directly)
        if k in skipped or (k not in used and op.name in TRANSPARENT_OPS and len(_dynamic_inputs(src, op)) == 1):
            out.skipped_source_ops.append(src.where(op))
            out.skipped_source_indices.append(k)
        elif k not in used:
            out.unmatched_source_ops.append(src.where(op))
    out.tensor_map = stands_for
    return out


def _along_axis(v: np.ndarray, t: ir.Tensor, ndim: int) -> np.ndarray:
    """Per-tensor or per-channel parameters shaped to broadcast over ``t``'s data."""
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.size == 0:
        v = np.zeros(1)
    if v.size == 1 or ndim == 0:
        return v[:1].reshape([1] * max(ndim, 1))
    shape = [1] * ndim
    shape[t.quantization.quantized_dimension] = -1
    return v.reshape(shape)


def constant_scale(t: ir.Tensor) -> np.ndarray:
    """``t``'s scale(s) shaped to broadcast over its data (1 for a non-quantized constant)."""
    if not t.is_quantized:
        return np.ones(1)
    return _along_axis(t.quantization.scale, t, len(t.shape))


def dequantize_constant(t: ir.Tensor) -> np.ndarray:
    """A constant as float64 real values (per tensor or along its quantized dimension)."""
    q = np.asarray(t.data()).astype(np.float64)
    if not t.is_quantized:
        return q
    return constant_scale(t) * (q - _along_axis(t.quantization.zero_point, t, q.ndim))


def _quant_key(t: ir.Tensor) -> tuple[Any, ...]:
    q = t.quantization
    if q is None or not q.is_quantized:
        return ()
    return (q.scale.astype(np.float32).tobytes(), q.zero_point.astype(np.int64).tobytes(),
            q.quantized_dimension if q.per_channel else 0)


def describe_difference(ts: ir.Tensor, tr: ir.Tensor) -> dict[str, Any] | None:
    """None when the result constant ``tr`` is bit-identical to the source's ``ts`` (type, shape,
    data, scales and zero points); otherwise what differs."""
    why = []
    if ts.type_name != tr.type_name:
        why.append(f"type {tr.type_name} != {ts.type_name}")
    if tuple(ts.shape) != tuple(tr.shape):
        why.append(f"shape {list(tr.shape)} != {list(ts.shape)}")
    max_diff = None
    if not why:
        a, b = np.asarray(ts.data()), np.asarray(tr.data())
        if a.tobytes() != b.tobytes():
            if a.dtype.kind in "iuf" and a.shape == b.shape:
                max_diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            why.append("data")
    if _quant_key(ts) != _quant_key(tr):
        ns = ts.quantization.scale.size if ts.is_quantized else 0
        nr = tr.quantization.scale.size if tr.is_quantized else 0
        why.append("scales/zero points" + (f" ({nr} scale(s) vs {ns})" if ns != nr else ""))
    if not why:
        return None
    return {"name": ts.name, "result_name": tr.name, "differs": ", ".join(why), "max_diff": max_diff}


def _is_uint8_form(ts: ir.Tensor, tr: ir.Tensor) -> bool:
    """``tr`` is ``ts`` (int8, per tensor) rewritten as uint8: same scale, zero point and data +128."""
    if ts.type_name != "INT8" or tr.type_name != "UINT8" or tuple(ts.shape) != tuple(tr.shape):
        return False
    if not (ts.is_quantized and tr.is_quantized) or ts.quantization.per_channel or tr.quantization.per_channel:
        return False
    qs, qr = ts.quantization, tr.quantization
    zs = int(qs.zero_point[0]) if qs.zero_point.size else 0
    zr = int(qr.zero_point[0]) if qr.zero_point.size else 0
    return (np.float32(qs.scale[0]) == np.float32(qr.scale[0]) and zr == zs + 128
            and np.array_equal(ts.data().astype(np.int16) + 128, tr.data().astype(np.int16)))


def compare_constants(src: ir.Subgraph, res: ir.Subgraph, match: GraphMatch) -> dict[str, Any]:
    """The weights check: every constant input of every matched op, result vs source.

    ``identical`` is true only when every constant of the source was compared (its op matched) and
    all are bit-identical (the shape or paddings of a source op the converter folded away are listed
    apart); ``equivalent`` also admits int8 constants rewritten losslessly as uint8
    (``--dtype uint8`` from an int8 source). Constants of ops the result adds (a RESHAPE's shape)
    are not part of the check.
    """
    compared: dict[int, int] = {}
    differing: list[dict[str, Any]] = []
    for s, r in match.pairs:
        for a, b in zip(src.operators[s].inputs, res.operators[r].inputs):
            if a < 0 or b < 0 or a in compared:
                continue
            ta, tb = src.tensors[a], res.tensors[b]
            if not ta.is_constant:
                continue
            compared[a] = b
            if not tb.is_constant:
                differing.append({"name": ta.name, "result_name": tb.name,
                                  "differs": "computed in the result, a constant in the source", "max_diff": None})
                continue
            d = describe_difference(ta, tb)
            if d is not None:
                if _is_uint8_form(ta, tb):
                    d["equivalent"] = "the uint8 form of the same values (integers and zero point +128)"
                differing.append(d)
    skipped = set(match.skipped_source_indices)
    consts = lambda ops: {i for k, op in enumerate(src.operators) if ops(k)  # noqa: E731
                          for i in op.inputs if i >= 0 and src.tensors[i].is_constant}
    src_consts = consts(lambda k: k not in skipped)
    folded = consts(lambda k: k in skipped) - src_consts
    not_compared = sorted(src_consts - set(compared))
    return {
        "identical": not differing and not not_compared,
        "equivalent": all("equivalent" in d for d in differing) and not not_compared,
        "compared": len(compared), "source_constants": len(src_consts),
        "differing": differing,
        "not_compared": [src.tensors[i].name for i in not_compared],
        # shapes/paddings of the source's data-movement and PAD ops the result does without
        "of_folded_ops": [src.tensors[i].name for i in sorted(folded)],
    }


def compare_activations(src: ir.Subgraph, res: ir.Subgraph, match: GraphMatch) -> dict[str, Any]:
    """Every quantized activation of the result that stands for a source tensor: same type, scale
    (bit for bit) and zero point as the source's? (Float model inputs/outputs of the result, where
    float I/O was asked for, are not activations.)"""
    differing = []
    compared = 0
    io = set(res.inputs) | set(res.outputs)
    for r, s in sorted(match.tensor_map.items()):
        ts, tr = src.tensors[s], res.tensors[r]
        if ts.is_constant or not ts.is_quantized or (r in io and tr.type_name in FLOAT_TYPES):
            continue
        compared += 1
        if ts.type_name != tr.type_name or _quant_key(ts) != _quant_key(tr):
            qr = tr.quantization
            d = {"name": ts.name, "result_name": tr.name,
                 "source": [ts.type_name, [float(x) for x in ts.quantization.scale],
                            [int(z) for z in ts.quantization.zero_point]],
                 "result": [tr.type_name, [float(x) for x in qr.scale] if qr is not None else [],
                            [int(z) for z in qr.zero_point] if qr is not None else []]}
            shift = {("INT8", "UINT8"): 128, ("UINT8", "INT8"): -128}.get((ts.type_name, tr.type_name))
            if shift is not None and d["source"][1] == d["result"][1] and \
                    [z + shift for z in d["source"][2]] == d["result"][2]:
                d["equivalent"] = "the same scale and zero point in the other 8-bit type"
            differing.append(d)
    return {"identical": not differing, "equivalent": all("equivalent" in d for d in differing),
            "compared": compared, "differing": differing}


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
                      f"{100 * m['exact_fraction']:.2f}%", _fmt(m["max_abs_err"])])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *table])


# -- per-layer precision: the tensors that lose the most ---------------------------------------------
#: Tensors compared per layer: quantized activations produced by an op (not constants, not the
#: int32 side tensors of shapes and indices).
_LAYER_TYPES = ("INT8", "UINT8", "INT16")


def _model_inputs(model: ir.Model) -> tuple[ir.Subgraph, list[tuple[str, ir.Tensor]]]:
    sig = model.signatures[0] if model.signatures else None
    sg = model.subgraphs[sig.subgraph_index] if sig is not None else model.main
    if sig is not None:
        return sg, [(n, sg.tensors[i]) for n, i in sig.inputs]
    return sg, [(sg.tensors[i].name, sg.tensors[i]) for i in sg.inputs]


def _all_tensors(blob: bytes, model: ir.Model, samples: Sequence[dict[str, np.ndarray]]
                 ) -> list[dict[int, np.ndarray]]:
    """Every tensor of the first signature's subgraph after each sample, in the interpreter
    (``experimental_preserve_all_tensors`` keeps the intermediates). Samples are real-valued, keyed
    by signature input name (positional when the model has no signature); quantized inputs are
    quantized with their own parameters. A sample of another size than the stored input shape
    (dynamic dims, ``--input-shape``) resizes the input."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter


    with warnings.catch_warnings():  # "for debugging purposes only": that is what this is
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
        interp = Interpreter(model_content=bytes(blob), experimental_preserve_all_tensors=True)
    sg, inputs = _model_inputs(model)
    if sg.index != 0:
        raise ValueError("per-layer comparison reads the main subgraph only")
    out = []
    allocated: list[tuple[int, ...]] | None = None
    for sample in samples:
        values = list(sample.values())
        arrays = []
        for k, (name, t) in enumerate(inputs):
            a = np.asarray(sample[name] if name in sample else values[k], dtype=np.float64)
            if t.is_quantized and t.type_name in _LAYER_TYPES:
                a = quantize_values(a, t)
            a = a.astype(t.dtype)
            arrays.append(a.reshape(t.shape) if a.size == int(np.prod(t.shape)) else a)
        shapes = [a.shape for a in arrays]
        if shapes != allocated:
            for (_, t), a in zip(inputs, arrays):
                interp.resize_tensor_input(t.index, a.shape)
            interp.allocate_tensors()
            allocated = shapes
        for (_, t), a in zip(inputs, arrays):
            interp.set_tensor(t.index, a)
        interp.invoke()
        got = {}
        for op in sg.operators:
            for i in op.outputs:
                if i >= 0:
                    try:
                        got[i] = np.array(interp.get_tensor(i))
                    except ValueError:  # a tensor the interpreter freed or never allocated
                        pass
        out.append(got)
    return out


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float | None:
    """SQNR in dB of one sample; None for an all-zero reference (no signal to compare with)."""
    signal = float(np.sum(ref ** 2))
    if signal == 0.0:
        return None
    noise = float(np.sum((ref - got) ** 2))
    return math.inf if noise == 0.0 else 10.0 * math.log10(signal / noise)


def worst_layers(float_blob: bytes, quant_blob: bytes, samples: Sequence[dict[str, np.ndarray]], n: int = 5
                 ) -> list[dict[str, Any]]:
    """The ``n`` quantized activations with the lowest SQNR against the float model's, over ``samples``.

    Both models run in the interpreter keeping every intermediate tensor. A quantized op output is
    paired with the float tensor of the same name (the converter keeps op-output names between
    recipes of one SavedModel) or, failing that, the one it stands for by data flow
    (:func:`match_graphs`: same op kind, same inputs). The quantized tensor is dequantized with its
    own scale and zero point; SQNR is computed per sample and averaged (dB). Rows, lowest SQNR first:
    ``tensor``, ``index`` (in the quantized model), ``op``, ``sqnr_db``, ``max_abs_err``, ``scale``.
    """
    from ..model.reader import read_model
    from ..ops.common import dequantize_array

    fm, qm = read_model(bytes(float_blob)), read_model(bytes(quant_blob))
    fsg, f_in = _model_inputs(fm)
    qsg, q_in = _model_inputs(qm)
    f_by_name: dict[str, int] = {}
    for op in fsg.operators:
        for i in op.outputs:
            if i >= 0:
                f_by_name.setdefault(fsg.tensors[i].name, i)
    q_names = {name: t.index for name, t in q_in}
    pairs = [(t.index, q_names.get(name, q_in[k][1].index if k < len(q_in) else -1)) for k, (name, t) in
             enumerate(f_in)]
    flow = match_graphs(fsg, qsg, [p for p in pairs if p[1] >= 0]).tensor_map
    wanted: list[tuple[int, int, str]] = []  # (quantized tensor, float tensor, producing op)
    for op in qsg.operators:
        if op.name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        for i in op.outputs:
            t = qsg.tensors[i] if i >= 0 else None
            if t is None or not t.is_quantized or t.type_name not in _LAYER_TYPES:
                continue
            f = f_by_name.get(t.name, flow.get(i))
            if f is not None and fsg.tensors[f].type_name == "FLOAT32" and fsg.tensors[f].shape == t.shape:
                wanted.append((i, f, op.name))
    if not wanted:
        return []
    f_runs = _all_tensors(float_blob, fm, samples)
    q_runs = _all_tensors(quant_blob, qm, samples)
    rows = []
    for qi, fi, op_name in wanted:
        t = qsg.tensors[qi]
        per_sample, max_err = [], 0.0
        for fr, qr in zip(f_runs, q_runs):
            if qi not in qr or fi not in fr:
                continue
            ref = fr[fi].astype(np.float64)
            got = dequantize_array(qr[qi], t.quantization).astype(np.float64)
            if ref.shape != got.shape:
                continue
            max_err = max(max_err, float(np.abs(ref - got).max()) if ref.size else 0.0)
            s = _sqnr(ref, got)
            if s is not None:
                per_sample.append(s)
        if not per_sample:
            continue
        q = t.quantization
        rows.append({"tensor": t.name, "index": qi, "op": op_name, "sqnr_db": float(np.mean(per_sample)),
                     "max_abs_err": max_err,
                     "scale": float(q.scale[0]) if q.scale.size == 1 else [float(v) for v in q.scale]})
    rows.sort(key=lambda r: r["sqnr_db"])
    return rows[:n]


def format_worst_layers(rows: Sequence[dict[str, Any]]) -> str:
    """A table of :func:`worst_layers` rows."""
    head = ["tensor", "op", "SQNR", "max abs err", "scale"]
    table = [[r["tensor"], r["op"], _fmt(r["sqnr_db"], " dB"), _fmt(r["max_abs_err"]),
              _fmt(r["scale"]) if not isinstance(r["scale"], list) else "per-channel"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    return "\n".join("  " + "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *table])
