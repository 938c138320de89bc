"""Requantizing with the source's own ranges (no calibration data): the rebuild with range ops, the
converter run, and the flatbuffer restores (weights, activation scales, op versions) that give the
source's exact scales, zero points and integers back; the comparison with the source."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _io
from ..errors import (
    UnsupportedOpError,
    UsageError,
)
from ..model import ir
from ..model.qparams import dequantize_values, lsb_scale, quantize_values
from .converter import _dataset, _run_converter, converter_for
from .evaluate import _io_pairs
from .matching import constant_scale, dequantize_constant, describe_difference, match_graphs
from .metrics import float_ops, lsb_metrics
from .recipe import _recipe
from .source import _Source

# -- reusing a quantized source's own ranges (no calibration data) ----------------------------------
#: Representative samples fed to the converter when the ranges come from the source: the fake-quant
#: ops fix every activation range, the samples only have to exist (and span the input range).
REUSE_SAMPLES = 4


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




def _restore_mismatch(ts: ir.Tensor, tr: ir.Tensor) -> str | None:
    """Why the result constant ``tr`` is not the converter's quantization of the source's ``ts``
    (None: it is, within half a step of each, so ``ts``'s integers may replace it)."""
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
        _io.log(progress, "restoring the source's weight scales, zero points and integers")
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



def _compare_with_source(path: str, src: _Source, n: int, seed: int) -> list[dict[str, Any]]:
    """Run the source and the result in the interpreter on ``n`` seeded inputs spanning the source's
    input range (integer inputs: uniform over every code) and compare outputs in source LSBs."""
    from ..conversion.reference import run_tflite
    from ..model.reader import read_model
    from ..ops.common import integer_range
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
        res_in = {r: quantize_values(dequantize_values(by_tensor[s], ssg.tensors[s]), rsg.tensors[r])
                  for s, r in in_pairs}
        res_runs.append((None, [], [], [res_in[r] for r in rsg.inputs]))
    src_out = run_tflite(src.path, src_runs)
    res_out = run_tflite(path, res_runs)
    s_pos = {ti: k for k, ti in enumerate(ssg.outputs)}
    r_pos = {ti: k for k, ti in enumerate(rsg.outputs)}
    rows = []
    for (s, r), io in zip(out_pairs, src.plan.outputs):
        ts, tr = ssg.tensors[s], rsg.tensors[r]
        a = [dequantize_values(o[s_pos[s]], ts) for o in src_out]
        b = [dequantize_values(o[r_pos[r]], tr) for o in res_out]
        rows.append(lsb_metrics(io.name, a, b, lsb_scale(ssg, ts)))
    return rows
