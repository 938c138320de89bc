"""The verifier's rules: a rebuilt model against the original run in the TFLite interpreter.

The interpreter runs in a child process (:mod:`._interp_child`): it can crash on real files, and a
crash must end in a clear message, not take the tool down. Both sides get the same seeded inputs
(or the user's), and every output is compared by exactly one of these rules (:func:`compare_output`),
which is printed per output with its threshold and the measured value:

* ``exact`` -- string, bool and integer outputs without a quantization scale (indices, argmax maps,
  counts): every element equal to the reference. Where the interpreter's two kernel sets disagree
  on an element, either of their values is accepted for that element.
* ``lsb`` -- integer outputs with a scale, and float outputs that are the DEQUANTIZE of a quantized
  tensor (judged in that tensor's scale): >= 99 % of the elements within 1 LSB and none beyond
  2 LSB (float outputs: 1 LSB is ``1.001 x scale``, for the float rounding of the dequantized value).
* ``float`` -- every other float output: max abs error <= max(1e-4 x max|ref|, spread), where
  max|ref| is floored at 1e-6 and ``spread`` is the reference's own imprecision, measured: the max
  abs difference between the interpreter's default kernels (XNNPACK) and its built-in kernels
  (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``) on the same inputs (0 when only one kernel set ran).
  ``--tolerance T`` replaces 1e-4 by T and governs the DEQUANTIZE outputs of the ``lsb`` rule too.

In every rule, elements that are NaN, +inf or -inf in both outputs match; a non-finite value
against anything else is a mismatch. A shape different from the reference's is a mismatch. The
reference is always the default kernels' output (or the built-in kernels' when the default ones
cannot run the model). There is no loosening by model kind.

Inputs: non-quantized integer inputs follow the rules :mod:`.verify_inputs` derives from the
graph (indices within the indexed dim, loop bounds >= 1, ...). When the interpreter rejects them,
:func:`.reference.reference_outputs` lowers them to their rule's lowest value and, if that runs, the
verification is *weak* (``OutputCheck.weak`` says why; :func:`check_status` gives ``"weak"``, never
a match); values are never replaced silently. ``--inputs`` values must fit their input
(:func:`.plan.fit_input`). Stateful models (:func:`.plan.is_stateful`) are checked on :data:`.plan.STATEFUL_CALLS`
consecutive calls per signature, state carried on both sides (:func:`.plan.invocations`;
``OutputCheck.call``).

Dynamic input dims (-1 in ``shape_signature``) are fed at the shape ``--input-shape`` gives
(:attr:`.plan.IOPlan.input_shapes`, see :mod:`.input_shapes`), else as 1; when the interpreter rejects
that default, :func:`.reference.reference_outputs` raises a :class:`UsageError` naming the dynamic inputs and
the flag, not an :class:`InterpreterError`.

Where it lives: the rules, the per-output check and their formatting here, the reference run (interpreter and
TFLite Micro children) in :mod:`.reference`, the I/O plan and inputs in :mod:`.plan`, the integer
input rules in :mod:`.verify_inputs`. This docstring is the one place that states the whole contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..model import ir
from ..model.qparams import lsb_scale
from .plan import IOPlan, plan_subgraph

#: ``float`` rule: max abs error <= max(FLOAT_TOL x max|reference|, reference spread).
FLOAT_TOL = 1e-4
#: ``float`` rule: max|reference| is floored at this (an all-zero reference still has a bound).
REF_MAX_FLOOR = 1e-6
#: ``lsb`` rule: at least this fraction of elements within 1 LSB, none beyond LSB_MAX.
LSB_WITHIN_1 = 0.99
LSB_MAX = 2
#: ``lsb`` rule on float outputs: 1 LSB is (1 + LSB_FLOAT_SLACK) x scale (float rounding of dequantized values).
LSB_FLOAT_SLACK = 1e-3


@dataclass
class OutputCheck:
    signature: str
    name: str
    shape: list[int]
    dtype: str
    max_abs_err: float
    max_rel_err: float
    ref_max_abs: float
    lsb_scale: float | None  # set when errors are measured in LSBs
    max_lsb: float | None
    within_1_lsb: float | None  # fraction of elements within 1 LSB
    exact_fraction: float | None  # for non-quantized integer/bool outputs
    tolerance: str  # the rule, in words, with its numbers
    passed: bool
    rule: str = ""  # "exact", "lsb", "float" or "shape" (see the module docstring)
    threshold: dict[str, float] = field(default_factory=dict)  # the rule's bounds ...
    measured: dict[str, float] = field(default_factory=dict)  # ... and the values measured against them
    #: how far the interpreter's built-in kernels are from its default ones, in the rule's unit:
    #: ``float`` max abs difference, ``lsb`` max difference in LSBs, ``exact`` number of differing
    #: elements (None: not measured, only one kernel set ran)
    reference_spread: float | None = None
    nonfinite_mismatches: int = 0  # elements where NaN/inf in one output is not the same in the other
    call: int = 0  # which invocation of a stateful model (0: the first; see STATEFUL_CALLS)
    weak: str = ""  # why the inputs were not meaningful (empty: they were; see verify_inputs)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _nonfinite(r: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, int]:
    """(mask of the elements compared as numbers, number of non-finite mismatches).

    An element that is NaN, +inf or -inf in both outputs matches and is left out of the error."""
    fin = np.isfinite(r) & np.isfinite(g)
    same = (r == g) | (np.isnan(r) & np.isnan(g))
    return fin, int(np.count_nonzero(~fin & ~same))


def compare_output(signature: str, name: str, ref: np.ndarray, got: np.ndarray, t: ir.Tensor,
                   lsb_scale: float | None, tolerance: float | None = None, alt: np.ndarray | None = None
                   ) -> OutputCheck:
    """Judge one output by the one rule that applies to it (see the module docstring).

    ``ref``: the interpreter's output (default kernels); ``alt``: the same output from its built-in
    kernels (the reference's spread), or ``None``; ``lsb_scale``: the scale a float output is the
    dequantized value of (:func:`..model.qparams.lsb_scale`); ``tolerance``: the user's ``--tolerance``.
    """
    ref = np.asarray(ref)
    got = np.asarray(got)
    alt = None if alt is None or np.shape(alt) != ref.shape else np.asarray(alt)
    shape = list(ref.shape)
    base = dict(signature=signature, name=name, shape=shape, dtype=str(ref.dtype))
    if ref.shape != got.shape:
        return OutputCheck(**base, max_abs_err=float("inf"), max_rel_err=float("inf"), ref_max_abs=0.0,
                           lsb_scale=lsb_scale, max_lsb=None, within_1_lsb=None, exact_fraction=None,
                           tolerance=f"shape {list(got.shape)} != reference {shape}", passed=False, rule="shape")
    numeric = ref.dtype.kind in "iuf" and got.dtype.kind in "iufb"
    if not numeric or (ref.dtype.kind in "iub" and not (ref.dtype.kind in "iu" and t.is_quantized)):
        # exact: strings, bools, integers without a scale
        eq = np.asarray(ref == got)
        if eq.shape != ref.shape:  # e.g. strings against numbers
            eq = np.zeros(ref.shape, bool)
        either = eq | (alt == got) if alt is not None and alt.dtype == ref.dtype else eq
        frac = float(np.mean(either)) if ref.size else 1.0
        spread_n = int(np.count_nonzero(alt != ref)) if alt is not None and alt.dtype == ref.dtype else None
        if numeric and ref.size:
            d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
            max_abs, max_rel = float(d.max()), float((d / np.maximum(np.abs(ref.astype(np.float64)), 1e-12)).max())
        else:
            max_abs = max_rel = 0.0 if frac == 1.0 else 1.0
        text = "exact: every element equal to the reference"
        if spread_n:
            text += f" (or to the built-in kernels' value at the {spread_n} element(s) where the kernel sets differ)"
        return OutputCheck(**base, max_abs_err=max_abs, max_rel_err=max_rel, ref_max_abs=0.0, lsb_scale=None,
                           max_lsb=None, within_1_lsb=None, exact_fraction=frac, tolerance=text, passed=frac == 1.0,
                           rule="exact", threshold={"equal_fraction": 1.0}, measured={"equal_fraction": frac},
                           reference_spread=None if spread_n is None else float(spread_n))
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    fin, bad = _nonfinite(r, g)
    with np.errstate(invalid="ignore"):  # inf - inf: left out by ``fin``
        diff = np.where(fin, np.abs(r - g), 0.0)
    max_abs = float(diff.max()) if diff.size else 0.0
    ref_max = float(np.abs(np.where(np.isfinite(r), r, 0.0)).max()) if r.size else 0.0
    rel = diff / np.maximum(np.abs(np.where(fin, r, 1.0)), 1e-12)
    max_rel = float(rel.max()) if rel.size else 0.0
    spread = vs_alt = None
    if alt is not None:
        a = alt.astype(np.float64)
        both = np.isfinite(r) & np.isfinite(a)
        ours = np.isfinite(g) & np.isfinite(a)
        with np.errstate(invalid="ignore"):
            spread = float(np.abs(np.where(both, r - a, 0.0)).max()) if a.size else 0.0
            vs_alt = float(np.abs(np.where(ours, g - a, 0.0)).max()) if a.size else 0.0
    is_int_q = ref.dtype.kind in "iu" and t.is_quantized
    if is_int_q or (lsb_scale and tolerance is None):
        unit = 1.0 if is_int_q else lsb_scale * (1.0 + LSB_FLOAT_SLACK)
        units = diff / unit
        within1 = float(np.mean(fin & (units <= 1.0))) if units.size else 1.0  # a non-finite mismatch is not within
        mx = float(units.max()) if units.size else 0.0
        ok = within1 >= LSB_WITHIN_1 and mx <= LSB_MAX and bad == 0
        text = (f">= {LSB_WITHIN_1:.0%} of elements within 1 LSB, none beyond {LSB_MAX} LSB"
                + ("" if is_int_q else f" (LSB = {lsb_scale:.3g}, the scale of the dequantized tensor)"))
        if spread is not None and not is_int_q:
            spread_lsb = spread / unit
        else:
            spread_lsb = spread
        return OutputCheck(**base, max_abs_err=max_abs, max_rel_err=max_rel, ref_max_abs=ref_max,
                           lsb_scale=lsb_scale, max_lsb=mx, within_1_lsb=within1, exact_fraction=None, tolerance=text,
                           passed=ok, rule="lsb",
                           threshold={"within_1_lsb_min": LSB_WITHIN_1, "max_lsb": float(LSB_MAX),
                                      "nonfinite_mismatches": 0.0},
                           measured={"within_1_lsb": within1, "max_lsb": mx, "nonfinite_mismatches": float(bad)},
                           reference_spread=spread_lsb, nonfinite_mismatches=bad)
    tol = FLOAT_TOL if tolerance is None else tolerance
    rel_bound = tol * max(ref_max, REF_MAX_FLOOR)
    bound = max(rel_bound, spread or 0.0)
    ok = max_abs <= bound and bad == 0
    src = "--tolerance " if tolerance is not None else ""
    text = f"max abs err <= max({src}{tol:g} x max|ref|, reference spread) = {bound:.3g}"
    if spread is not None and spread > rel_bound:
        text += f" (the spread governs: default vs built-in kernels differ by {spread:.3g})"
    elif spread is None:
        text += " (spread not measured)"
    return OutputCheck(**base, max_abs_err=max_abs, max_rel_err=max_rel, ref_max_abs=ref_max, lsb_scale=None,
                       max_lsb=None, within_1_lsb=None, exact_fraction=None, tolerance=text, passed=ok, rule="float",
                       threshold={"max_abs_err": bound, "relative_term": rel_bound, "spread_term": spread or 0.0,
                                  "nonfinite_mismatches": 0.0},
                       measured={"max_abs_err": max_abs, "nonfinite_mismatches": float(bad),
                                 **({} if vs_alt is None else {"max_abs_err_vs_builtin_kernels": vs_alt})},
                       reference_spread=spread, nonfinite_mismatches=bad)


def compare_plan(model: ir.Model, plan: IOPlan, ref: list[np.ndarray], got: Mapping[str, Any],
                 alt: list[np.ndarray] | None = None, tolerance: float | None = None, weak: str = ""
                 ) -> list[OutputCheck]:
    """Every output of one signature: ``ref`` (interpreter, in ``plan.output_tensors`` order), ``got``
    (rebuilt model, by SavedModel output name; arrays or tensors with ``.numpy()``), ``alt`` (the
    built-in kernels' outputs, for the reference spread). Each check records ``plan.call`` (the
    invocation of a stateful model) and ``weak`` (why the inputs were not meaningful, if they were not)."""
    from ..ops.common import dequantize_array

    sg = plan_subgraph(model, plan)
    checks = []
    for k, (name, t) in enumerate(zip(plan.saved_outputs, plan.output_tensors)):
        g = got[name]
        g = g.numpy() if hasattr(g, "numpy") else np.asarray(g)
        r = ref[k] if k < len(ref) else np.zeros(0)
        a = alt[k] if alt is not None and k < len(alt) else None
        if g.dtype != r.dtype and t.is_quantized and r.dtype.kind in "iu":
            r = dequantize_array(r, t.quantization)  # --float-io: compare real values
            a = None if a is None else dequantize_array(a, t.quantization)
        c = compare_output(plan.key, name, r, g, t, lsb_scale(sg, t), tolerance, a)
        c.call, c.weak = plan.call, weak
        checks.append(c)
    return checks


def pct(x: float) -> str:
    """A fraction as a percentage that never rounds a shortfall up to 100 %."""
    if x >= 1.0:
        return "100%"
    return f"{np.floor(x * 1e4) / 100:.2f}%"


def _fmt_threshold(c: OutputCheck) -> tuple[str, str]:
    th, me = c.threshold, c.measured
    if c.rule == "float":
        spread = "" if c.reference_spread is None else f", spread {c.reference_spread:.2g}"
        vs_alt = me.get("max_abs_err_vs_builtin_kernels")
        governs = th["spread_term"] > th["relative_term"]
        return (f"max abs <= {th['max_abs_err']:.3g}{spread}" + (" (spread governs)" if governs else ""),
                f"max abs {me['max_abs_err']:.3g}"
                + (f" ({vs_alt:.2g} from the built-in kernels)" if governs and vs_alt is not None else "")
                + (f", {c.nonfinite_mismatches} NaN/inf differ" if c.nonfinite_mismatches else ""))
    if c.rule == "lsb":
        return (f">= {100 * th['within_1_lsb_min']:.0f}% <= 1 LSB, max <= {th['max_lsb']:g} LSB",
                f"{pct(me['within_1_lsb'])} <= 1 LSB, max {me['max_lsb']:.3g} LSB"
                + (f", {c.nonfinite_mismatches} NaN/inf differ" if c.nonfinite_mismatches else ""))
    if c.rule == "exact":
        return "100% equal", f"{pct(me['equal_fraction'])} equal"
    return "-", c.tolerance


def check_status(checks: list[OutputCheck]) -> str:
    """The verdict of a list of checks: ``"not verified"`` (nothing compared), ``"FAIL"`` (an output
    over its threshold), ``"weak"`` (all within, but on inputs the tool could not make meaningful:
    never a match) or ``"ok"``."""
    if not checks:
        return "not verified"
    if not all(c.passed for c in checks):
        return "FAIL"
    return "weak" if any(c.weak for c in checks) else "ok"


def format_checks(checks: list[OutputCheck]) -> str:
    """One row per output (per call of a stateful model): the verification table printed by
    ``convert`` (rule, threshold, measured, status: ok, WEAK or FAIL)."""
    stateful = any(c.call for c in checks)
    head = ["signature", *(["call"] if stateful else []), "output", "shape", "rule", "threshold", "measured", "status"]
    rows = []
    for c in checks:
        threshold, measured = _fmt_threshold(c)
        rows.append([c.signature, *([str(c.call + 1)] if stateful else []), c.name,
                     "x".join(map(str, c.shape)) or "scalar", c.rule or "-", threshold, measured,
                     ("WEAK" if c.weak else "ok") if c.passed else "FAIL"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    return "\n".join(lines)
