"""Evaluating a quantized result: running it in the TFLite interpreter (child process) on held-back
data, comparing with the float model per output and per layer, the uint8 and target checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import (
    InverterError,
    UnsupportedOpError,
    UsageError,
)
from ..model import ir
from ..model.qparams import dequantize_values, quantize_values
from .converter import _run_converter, converter_for
from .interface import restore_interface
from .layers import worst_layers
from .matching import match_graphs
from .metrics import output_metrics
from .source import _Sig, _Source


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


# -- evaluation -----------------------------------------------------------------------------------


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
    from ..conversion.reference import run_tflite
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
    runs = [(key, in_names, out_names, [quantize_values(a, t) for a, t in zip(sample, tin)]) for sample in samples]
    res = run_tflite(path, runs)
    got: dict[str, list[np.ndarray]] = {n: [] for n in src.outputs}
    for outs in res:
        for n, t, o in zip(src.outputs, tout, outs):
            got[n].append(dequantize_values(o, t))
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
    """Name each :func:`.layers.worst_layers` row after the SOURCE tensor its tensor stands for
    (paired by data flow, :func:`.matching.match_graphs`, same shape): ``tensor`` is the source's
    name where there is one, ``result_tensor`` the name in the written model, ``source_tensor`` the
    source's name or None (an op the converter added or fused: the row keeps the result's name)."""
    if src.model is None or not rows:
        return rows
    from ..model.reader import read_model
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
