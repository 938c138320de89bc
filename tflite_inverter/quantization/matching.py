"""Pairing a requantized model with its quantized source ("reuse source ranges").

:func:`match_graphs` pairs the ops of two graphs by data flow (same op kind, same inputs), looking
through ops that only move or re-type data; :func:`compare_constants` checks every paired constant
bit for bit (or names how it differs) and :func:`compare_activations` every paired activation's type,
scale and zero point. :func:`.layers.worst_layers` uses the same pairing for tensors the converter
renamed. No TensorFlow here: numpy and our own reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import ir
from ..model.qparams import FLOAT_TYPES

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
