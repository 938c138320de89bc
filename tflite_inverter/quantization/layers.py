"""Per-layer precision: the quantized activations that lose the most against the float model.

Both models run in the TFLite interpreter child (:func:`..conversion.reference.run_all_tensors`,
``experimental_preserve_all_tensors``), so an interpreter crash on a real file ends the per-layer
table with a clear reason instead of ending ``quantize``. No TensorFlow here.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..conversion.reference import run_all_tensors
from ..model import ir
from ..model.qparams import quantize_values
from ..model.reader import read_model
from .matching import match_graphs
from .metrics import fmt_value, format_table

_LAYER_TYPES = ("INT8", "UINT8", "INT16")


def _model_inputs(model: ir.Model) -> tuple[ir.Subgraph, list[tuple[str, ir.Tensor]]]:
    sig = model.signatures[0] if model.signatures else None
    sg = model.subgraphs[sig.subgraph_index] if sig is not None else model.main
    if sig is not None:
        return sg, [(n, sg.tensors[i]) for n, i in sig.inputs]
    return sg, [(sg.tensors[i].name, sg.tensors[i]) for i in sg.inputs]


def _all_tensors(blob: bytes, model: ir.Model, samples: Sequence[dict[str, np.ndarray]], read: Sequence[int]
                 ) -> list[dict[int, np.ndarray]]:
    """The tensors ``read`` of the first signature's subgraph after each sample, in the interpreter
    child (:func:`..conversion.reference.run_all_tensors`). Samples are real-valued, keyed by
    signature input name (positional when the model has no signature); quantized inputs are
    quantized with their own parameters. A sample of another size than the stored input shape
    (dynamic dims, ``--input-shape``) resizes the input."""
    sg, inputs = _model_inputs(model)
    if sg.index != 0:
        raise ValueError("per-layer comparison reads the main subgraph only")
    feeds = []
    for sample in samples:
        values = list(sample.values())
        feed = []
        for k, (name, t) in enumerate(inputs):
            a = np.asarray(sample[name] if name in sample else values[k], dtype=np.float64)
            if t.is_quantized and t.type_name in _LAYER_TYPES:
                a = quantize_values(a, t)
            a = a.astype(t.dtype)
            feed.append((t.index, a.reshape(t.shape) if a.size == int(np.prod(t.shape)) else a))
        feeds.append(feed)
    with tempfile.TemporaryDirectory(prefix="tflite-inverter-layers-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as fh:
            fh.write(blob)
        return run_all_tensors(path, feeds, list(read))


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

    Both models run in the interpreter child keeping every intermediate tensor. A quantized op output is
    paired with the float tensor of the same name (the converter keeps op-output names between
    recipes of one SavedModel) or, failing that, the one it stands for by data flow
    (:func:`match_graphs`: same op kind, same inputs). The quantized tensor is dequantized with its
    own scale and zero point; SQNR is computed per sample and averaged (dB). Rows, lowest SQNR first:
    ``tensor``, ``index`` (in the quantized model), ``op``, ``sqnr_db``, ``max_abs_err``, ``scale``.
    """
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
    f_runs = _all_tensors(float_blob, fm, samples, sorted({f for _, f, _ in wanted}))
    q_runs = _all_tensors(quant_blob, qm, samples, sorted({q for q, _, _ in wanted}))
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
    table = [[r["tensor"], r["op"], fmt_value(r["sqnr_db"], " dB"), fmt_value(r["max_abs_err"]),
              fmt_value(r["scale"]) if not isinstance(r["scale"], list) else "per-channel"] for r in rows]
    return format_table(head, table, indent="  ")
