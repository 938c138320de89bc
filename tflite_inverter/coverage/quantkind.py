"""Per-op quantization kind: how an operator instance computes (float, fp16 weights, hybrid, int8, ...).

The kind is derived from the operator's tensors only, so it works on any model:

* **activations** are the non-constant inputs and all outputs;
* **weights** are constant inputs, plus the constant behind an input produced by a DEQUANTIZE of a
  constant (the pattern converters emit for float16 weights and for some int8 weights).

Rules, in order:

1. An op with both float and quantized-integer activations (QUANTIZE, DEQUANTIZE of an activation,
   detection post-processing, ...) is a conversion boundary: it takes the kind of its integer side.
   State tensors (``is_variable``, e.g. an integer LSTM's int16 cell state) are ignored when the op
   has other activations.
2. Float activations: ``fp16_weights`` when a weight is float16, ``hybrid`` (dynamic-range: integer
   weights, float activations) when a weight is an 8/4/2-bit integer, else ``float``.
3. Quantized activations: ``int16x8`` when an activation is int16, else ``int8_*`` / ``uint8_*``,
   ``per_channel`` when any quantized tensor of the op has more than one scale.
4. Otherwise ``integer`` (plain int32/bool/... tensors) or ``other`` (no numeric tensor at all).

An op *type* whose instances differ is ``mixed`` (see :func:`aggregate`).

Also here: the data table of TFLite builtins that have int8 kernels (``targets/tflite_int8_kernels.json``).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..model.ir import Operator, Subgraph, Tensor
from ..model.qparams import FLOAT_TYPES

SUB_INT16_TYPES = frozenset({"INT8", "UINT8", "INT4", "UINT4", "INT2"})

#: Every kind, in display order, with its human label.
KINDS: dict[str, str] = {
    "float": "float",
    "fp16_weights": "fp16 weights",
    "hybrid": "dynamic-range hybrid",
    "int8_per_channel": "int8 per-channel",
    "int8_per_tensor": "int8 per-tensor",
    "uint8_per_tensor": "uint8 per-tensor",
    "uint8_per_channel": "uint8 per-channel",
    "int16x8": "int16x8",
    "integer": "integer (not quantized)",
    "other": "other",
    "mixed": "mixed",
}

INT8_KERNELS_FILE = Path(__file__).resolve().parent / "targets" / "tflite_int8_kernels.json"


def label(kind: str) -> str:
    return KINDS.get(kind, kind)


def producers(sg: Subgraph) -> dict[int, Operator]:
    """Tensor index -> the operator that writes it."""
    out: dict[int, Operator] = {}
    for op in sg.operators:
        for t in op.outputs:
            if t >= 0:
                out[t] = op
    return out


def _tensor(sg: Subgraph, idx: int) -> Tensor | None:
    return sg.tensors[idx] if 0 <= idx < len(sg.tensors) else None


def _weight_behind(sg: Subgraph, t: Tensor, prod: dict[int, Operator]) -> Tensor | None:
    """The constant behind ``t`` when ``t`` is a DEQUANTIZE of a constant."""
    src = prod.get(t.index)
    if src is None or src.name != "DEQUANTIZE" or not src.inputs:
        return None
    w = _tensor(sg, src.inputs[0])
    return w if w is not None and w.is_constant else None


def _int_kind(tensors: list[Tensor], weights: list[Tensor] = ()) -> str | None:  # type: ignore[assignment]
    """The integer kind from the quantized ``tensors``; per-channel if any of them or ``weights`` is."""
    quant = [t for t in tensors if t.is_quantized]
    types = {t.type_name for t in quant}
    if not quant:
        return None
    per_channel = any(t.quantization.per_channel for t in (*quant, *weights) if t.is_quantized)  # type: ignore[union-attr]
    if "INT16" in types:
        return "int16x8"
    if "INT8" in types:
        return "int8_per_channel" if per_channel else "int8_per_tensor"
    if "UINT8" in types:
        return "uint8_per_channel" if per_channel else "uint8_per_tensor"
    return None


def classify(op: Operator, sg: Subgraph, prod: dict[int, Operator] | None = None) -> str:
    """The quantization kind of one operator instance (one of :data:`KINDS`, never ``mixed``)."""
    if prod is None:
        prod = producers(sg)
    ins = [t for t in (_tensor(sg, i) for i in op.inputs if i >= 0) if t is not None]
    outs = [t for t in (_tensor(sg, i) for i in op.outputs if i >= 0) if t is not None]
    weights: list[Tensor] = []
    acts: list[Tensor] = list(outs)
    for t in ins:
        if t.is_constant:
            weights.append(t)
            continue
        w = _weight_behind(sg, t, prod)
        if w is not None:
            weights.append(w)
        else:
            acts.append(t)

    # State tensors (LSTM/RNN variables, e.g. an integer LSTM's int16 cell state) do not decide the kind.
    acts = [t for t in acts if not t.is_variable] or acts
    float_acts = [t for t in acts if t.type_name in FLOAT_TYPES]
    qint_acts = [t for t in acts if t.is_quantized and t.type_name not in FLOAT_TYPES]
    if float_acts and qint_acts:
        # a conversion boundary (QUANTIZE, DEQUANTIZE, detection post-processing, ...): the integer side
        k = _int_kind(qint_acts, weights)
        if k:
            return k

    if any(t.type_name in FLOAT_TYPES for t in acts):
        wtypes = {w.type_name for w in weights}
        if "FLOAT16" in wtypes and not any(t.type_name == "FLOAT16" for t in acts):
            return "fp16_weights"
        if wtypes & SUB_INT16_TYPES:
            return "hybrid"
        return "float"

    k = _int_kind(acts, weights)
    if k is None and any(t.is_quantized for t in acts):
        k = "other"
    if k is None:
        # Quantized weights with unquantized integer activations (e.g. an EMBEDDING_LOOKUP of int8
        # rows addressed by int32 ids feeding an int8 graph) still say which integer flavour.
        k = _int_kind([t for t in acts + weights if t.type_name not in ("INT32", "INT64")])
    if k is not None:
        return k
    if acts or weights:
        return "integer"
    return "other"


def aggregate(kinds: list[str]) -> tuple[str, dict[str, int]]:
    """The kind of an op type from its instances' kinds: the common one, or ``mixed``; with counts."""
    counts = Counter(kinds)
    if not counts:
        return "other", {}
    kind = next(iter(counts)) if len(counts) == 1 else "mixed"
    return kind, dict(sorted(counts.items()))


@functools.lru_cache(maxsize=1)
def int8_kernel_table() -> dict[str, Any]:
    """The TFLite builtin int8 kernel list (data: ``targets/tflite_int8_kernels.json``)."""
    with open(INT8_KERNELS_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def has_int8_kernel(op_key: str) -> bool | None:
    """Whether TFLite has an int8 kernel for a builtin; ``None`` for custom ops (not a builtin)."""
    if op_key.startswith("CUSTOM:") or op_key == "CUSTOM":
        return None
    return op_key in int8_kernel_table()["ops"]
