"""Which quantized kernels of a model the measured kernel table does not prove exact.

``targets/int_kernel_fidelity.json`` (written by ``benchmarks/probe_int_kernels.py``) records, per
op x dtype (INT8 / UINT8 / INT16 activations) x variant, whether the faithful rebuild reproduces
the default interpreter code for code. :func:`unproven_kernels` names each op x dtype of a model
for which some variant is measured off, with the worst measured difference, so ``convert`` can say
which kernels a quantized result rests on that are not exact (the table's variants are single-op
models; a model's own scales may land on the exact side).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..model import ir

FIDELITY_FILE = Path(__file__).resolve().parent / "targets" / "int_kernel_fidelity.json"
_ACTIVATION_TYPES = ("INT8", "UINT8", "INT16")


@functools.cache
def _off_rows() -> dict[tuple[str, str], list[tuple[str, float]]]:
    """(op, dtype) -> [(variant, max LSB)] for every row measured off."""
    rows = json.loads(FIDELITY_FILE.read_text())["rows"]
    out: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for key, row in rows.items():
        op, dtype, variant = key.split("/", 2)
        if row.get("status") == "off":
            out.setdefault((op, dtype), []).append((variant, float(row.get("max_lsb") or 0.0)))
    return out


def _activation_type(op: ir.Operator, sg: ir.Subgraph) -> str | None:
    for i in op.inputs:
        t = sg.tensors[i] if i >= 0 else None
        if t is not None and not t.is_constant and t.is_quantized and t.type_name in _ACTIVATION_TYPES:
            return t.type_name
    return None


def unproven_kernels(model: ir.Model) -> list[str]:
    """One line per quantized op x dtype of ``model`` with a variant measured off in the kernel
    table, e.g. ``"LOGISTIC INT16 (x3): up to 1 LSB (variant base)"``; empty when none."""
    off = _off_rows()
    count: dict[tuple[str, str], int] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            dtype = _activation_type(op, sg)
            if dtype is not None and (op.name, dtype) in off:
                count[(op.name, dtype)] = count.get((op.name, dtype), 0) + 1
    lines = []
    for (name, dtype), n in sorted(count.items()):
        variants = off[(name, dtype)]
        worst = max(v for _, v in variants)
        lines.append(f"{name} {dtype} (x{n}): up to {worst:g} LSB in the kernel table "
                     f"(variants {', '.join(v for v, _ in variants)})")
    return lines
