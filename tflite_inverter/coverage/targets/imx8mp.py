"""i.MX 8M Plus NPU placement: the VX delegate's support checks, as data.

The rules live in ``imx8mp_rules.json`` (compiled from the VX delegate sources named in its ``source``
block; see ``../shared/reference/imx8mp-npu-ops.md``). This module is the engine that applies them:

* G1 registration (builtin ``ops`` table, ``custom_ops``),
* G3/G4 generic input/output checks, G8 hybrid ops, G10 constant parameters / rank-0 outputs /
  dynamic outputs (parameter tables in ``generic``),
* each op's own ``checks``: declarative check types (see :data:`CHECKS`) or a named predicate from
  :data:`PREDICATES` for the few constraints that need code,
* the float-is-CPU policy (``policy.float_ops_on_cpu``, rule G5) -- project policy, not a delegate check,
* G11 partitioning: each contiguous run of NPU ops, in execution order, is one partition.

Shapes are the file's ``shape`` (what TFLite allocates before any resize), which is what the delegate
sees when it runs its support checks.

To follow a newer BSP, edit the JSON; :func:`load` also accepts another rules file.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import UsageError
from ...model.ir import Model, Operator, Subgraph, Tensor

RULES_FILE = Path(__file__).resolve().parent / "imx8mp_rules.json"

Predicate = Callable[[Operator, Subgraph], str | None]


# -- helpers --------------------------------------------------------------------------------------


def _t(sg: Subgraph, idx: int) -> Tensor | None:
    return sg.tensors[idx] if 0 <= idx < len(sg.tensors) else None


def _output(op: Operator, sg: Subgraph, k: int) -> Tensor | None:
    return _t(sg, op.outputs[k]) if k < len(op.outputs) else None


def _present(op: Operator, k: int) -> bool:
    return k < len(op.inputs) and op.inputs[k] >= 0


def _name(t: Tensor) -> str:
    n = t.name if len(t.name) <= 40 else t.name[:37] + "..."
    return f"#{t.index} '{n}'"


def _per_channel(t: Tensor | None) -> bool:
    return t is not None and t.is_quantized and t.quantization.per_channel  # type: ignore[union-attr]


def _resolve(op: Operator, sg: Subgraph, ref: str) -> list[tuple[str, Tensor]]:
    """Tensor references of the JSON: ``in0``, ``out0``, ``in*``/``out*`` (all), ``in1+`` (from 1)."""
    side, rest = (("input", ref[2:]) if ref.startswith("in") else ("output", ref[3:]))
    idxs = op.inputs if side == "input" else op.outputs
    if rest == "*":
        picks = range(len(idxs))
    elif rest.endswith("+"):
        picks = range(int(rest[:-1]), len(idxs))
    else:
        picks = [int(rest)] if int(rest) < len(idxs) else []
    out = []
    for k in picks:
        t = _t(sg, idxs[k])
        if t is not None:
            out.append((f"{side} {k} {_name(t)}", t))
    return out


# -- named predicates (constraints that need code) ------------------------------------------------


def add_family(op: Operator, sg: Subgraph) -> str | None:
    """ADD/SUB/MUL/DIV (V:L634-669)."""
    i0, o0 = sg.input_of(op, 0), _output(op, sg, 0)
    if i0 is None or o0 is None:
        return None
    if (i0.type_name == "INT16" and i0.is_quantized and o0.type_name in ("UINT8", "INT8")
            and o0.is_quantized):
        return f"affine int16 input 0 with an affine {o0.type_name.lower()} output is rejected"
    if (op.options.get("fused_activation_function") == "RELU_N1_TO_1" and i0.type_name == "INT32"
            and o0.type_name == "INT32"):
        return "fused RELU_N1_TO_1 with int32 input and output is rejected"
    return None


def grouped_conv_batch(op: Operator, sg: Subgraph) -> str | None:
    """CONV_2D: grouped convolution (input C != filter C) is rejected when batch != 1 (V:L945-951)."""
    i0, w = sg.input_of(op, 0), sg.input_of(op, 1)
    if i0 is None or w is None or len(i0.shape) < 4 or len(w.shape) < 4:
        return None
    if i0.shape[3] != w.shape[3] and i0.shape[0] != 1:
        return (f"grouped convolution (input channels {i0.shape[3]} != filter channels {w.shape[3]}) "
                f"with batch {i0.shape[0]} != 1 is rejected")
    return None


def dequantize(op: Operator, sg: Subgraph) -> str | None:
    """DEQUANTIZE (V:L546-574)."""
    i0, o0 = sg.input_of(op, 0), _output(op, sg, 0)
    if i0 is None or o0 is None or o0.type_name != "FLOAT32":
        return None
    if i0.type_name in ("INT16", "FLOAT16") and i0.is_quantized:
        return f"affine-quantized {i0.type_name.lower()} input with a float32 output is rejected"
    if i0.type_name in ("INT8", "UINT8") and _per_channel(i0):
        return (f"per-channel {i0.type_name.lower()} input ({i0.quantization.scale.size} scales) "  # type: ignore[union-attr]
                "with a float32 output is rejected")
    return None


def quantize(op: Operator, sg: Subgraph) -> str | None:
    """QUANTIZE (V:L582-624)."""
    i0, o0 = sg.input_of(op, 0), _output(op, sg, 0)
    if i0 is None or o0 is None:
        return None
    eight = o0.type_name in ("UINT8", "INT8")
    if i0.type_name == "INT32" and i0.is_quantized and eight:
        return f"affine int32 input to {o0.type_name.lower()} is rejected"
    if i0.type_name == "INT16" and i0.is_quantized and eight:
        return f"affine int16 input to {o0.type_name.lower()} (16-bit to 8-bit requantization) is rejected"
    if i0.type_name == "INT16" and i0.is_quantized and o0.type_name == "INT32":
        return "affine int16 input to int32 is rejected"
    if i0.type_name == "FLOAT32" and eight and _per_channel(o0):
        return f"float32 input to a per-channel {o0.type_name.lower()} output is rejected"
    return None


def integer_lstm(op: Operator, sg: Subgraph) -> str | None:
    """UNIDIRECTIONAL_SEQUENCE_LSTM: integer LSTM only (V:L2368-2394)."""
    i0, o0 = sg.input_of(op, 0), _output(op, sg, 0)
    if i0 is None or i0.type_name not in ("UINT8", "INT8"):
        what = i0.type_name.lower() if i0 is not None else "absent"
        return f"input is {what}; only uint8/int8 (integer) LSTMs are delegated, float LSTMs are rejected"
    h, c = sg.input_of(op, 18), sg.input_of(op, 19)
    if h is not None and o0 is not None and h.type_name != o0.type_name:
        return f"output state is {h.type_name.lower()} but the output is {o0.type_name.lower()}"
    if c is None or c.type_name not in ("INT16", "FLOAT16"):
        what = c.type_name.lower() if c is not None else "absent"
        return f"cell state is {what}; only int16 or float16 is accepted"
    return None


def bidi_rnn_aux(op: Operator, sg: Subgraph) -> str | None:
    """BIDIRECTIONAL_SEQUENCE_RNN: an aux input without aux weights is rejected (V:L2131-2151)."""
    if _present(op, 9) and not _present(op, 10):
        return "auxiliary input without auxiliary weights is rejected"
    return None


def slice_batch(op: Operator, sg: Subgraph) -> str | None:
    """SLICE: rejected when the input rank is > 3 and the batch dimension changes (V:L3005-3032)."""
    i0, o0 = sg.input_of(op, 0), _output(op, sg, 0)
    if i0 is None or o0 is None or len(i0.shape) <= 3 or not o0.shape:
        return None
    if i0.shape[0] != o0.shape[0]:
        return f"slicing the batch dimension ({i0.shape[0]} -> {o0.shape[0]}) of a rank-{len(i0.shape)} input"
    return None


def pack_nxp(op: Operator, sg: Subgraph) -> str | None:
    """PACK in NXP lf-5.15.5 ... lf-6.6.3 (N:L3286-3296); VSI main removed the check."""
    i0 = sg.input_of(op, 0)
    if i0 is None:
        return None
    if i0.type_name == "INT32":
        return "int32 first input is rejected (NXP fork)"
    if i0.type_name in ("INT8", "UINT8") and len(i0.shape) == 1:
        return f"1-D {i0.type_name.lower()} first input is rejected (NXP fork)"
    return None


def squared_difference(op: Operator, sg: Subgraph) -> str | None:
    """SQUARED_DIFFERENCE (V:L3541-3563)."""
    i0, i1, o0 = sg.input_of(op, 0), sg.input_of(op, 1), _output(op, sg, 0)
    if i0 is None or i1 is None or o0 is None:
        return None
    if i0.type_name != i1.type_name:
        return f"inputs of different types ({i0.type_name.lower()}, {i1.type_name.lower()})"
    if i0.type_name == "FLOAT32" and o0.type_name == "FLOAT32":
        return None
    if (i0.type_name, o0.type_name) in (("INT8", "INT8"), ("UINT8", "UINT8")):
        single = all(t.is_quantized and t.quantization.scale.size == 1 for t in (i0, o0))  # type: ignore[union-attr]
        if single:
            return None
        return "only per-tensor (single-scale) quantized input 0 and output are accepted"
    return (f"{i0.type_name.lower()} -> {o0.type_name.lower()} is not accepted (only f32->f32 and "
            "per-tensor int8->int8 / uint8->uint8)")


PREDICATES: dict[str, Predicate] = {
    "add_family": add_family,
    "grouped_conv_batch": grouped_conv_batch,
    "dequantize": dequantize,
    "quantize": quantize,
    "integer_lstm": integer_lstm,
    "bidi_rnn_aux": bidi_rnn_aux,
    "slice_batch": slice_batch,
    "pack_nxp": pack_nxp,
    "squared_difference": squared_difference,
}


# -- declarative check types ----------------------------------------------------------------------


def _chk_reject_types(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    bad = [f"{w} is {t.type_name}" for ref in c["tensors"] for w, t in _resolve(op, sg, ref)
           if t.type_name in c["types"]]
    if bad:
        return f"{'; '.join(bad)} (rejected types: {', '.join(c['types'])})"
    return None


def _chk_require_types(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    bad = [f"{w} is {t.type_name}" for ref in c["tensors"] for w, t in _resolve(op, sg, ref)
           if t.type_name not in c["types"]]
    if bad:
        why = f"{c['text']}: " if c.get("text") else ""
        return f"{why}{'; '.join(bad)} (must be {' or '.join(c['types'])})"
    return None


def _chk_reject_unquantized_8bit(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    bad = [w for ref in c["tensors"] for w, t in _resolve(op, sg, ref)
           if t.type_name in ("INT8", "UINT8") and not t.is_quantized]
    if bad:
        return f"int8/uint8 without quantization parameters: {'; '.join(bad)}"
    return None


def _chk_reject_type_combo(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    got = []
    for ref in c["tensors"]:
        r = _resolve(op, sg, ref)
        if not r:
            return None
        got.append(r[0][1].type_name)
    if got in [list(x) for x in c["combos"]]:
        return f"{c.get('text') or ' with '.join(got)} ({', '.join(c['tensors'])} = {', '.join(got)})"
    return None


def _chk_option_in(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    v = op.options.get(c["option"], c.get("default"))
    if v not in c["values"]:
        why = f"{c['text']}: " if c.get("text") else ""
        return f"{why}{c['option']}={v!r} (accepted: {', '.join(repr(x) for x in c['values'])})"
    return None


def _chk_option_max(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    bad = [f"{o}={op.options.get(o, c.get('default'))}" for o in c["options"]
           if (op.options.get(o, c.get("default")) or 0) > c["max"]]
    if bad:
        return f"{', '.join(bad)} (at most {c['max']} accepted)"
    return None


def _chk_options_not_all(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    if all(op.options.get(o) for o in c["options"]):
        return f"{' and '.join(c['options'])} all true is rejected"
    return None


def _chk_rank_equals(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    for w, t in _resolve(op, sg, c["tensor"]):
        if len(t.shape) != c["rank"]:
            return f"{w} has rank {len(t.shape)} (must be {c['rank']})"
    return None


def _chk_rank_nonzero(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    bad = [w for ref in c["tensors"] for w, t in _resolve(op, sg, ref) if len(t.shape) == 0]
    if bad:
        return f"rank-0 (treated as dynamic shape): {'; '.join(bad)}"
    return None


def _chk_dim_equals(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    for w, t in _resolve(op, sg, c["tensor"]):
        d = t.shape[c["dim"]] if len(t.shape) > c["dim"] else None
        if d != c["value"]:
            why = f"{c['text']}: " if c.get("text") else ""
            return f"{why}{w} has dim {c['dim']} = {d} (must be {c['value']})"
    return None


def _chk_same_rank(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    got = [(w, len(t.shape)) for ref in c["tensors"] for w, t in _resolve(op, sg, ref)]
    if len({r for _, r in got}) > 1:
        why = f"{c['text']}: " if c.get("text") else ""
        return why + ", ".join(f"{w} has rank {r}" for w, r in got)
    return None


def _chk_positive_dims(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    bad = [f"{w} shape {list(t.shape)}" for ref in c["tensors"] for w, t in _resolve(op, sg, ref)
           if any(d <= 0 for d in t.shape)]
    if bad:
        return f"dimension <= 0: {'; '.join(bad)}"
    return None


def _chk_must_be_absent(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    present = [k for k in c["inputs"] if _present(op, k)]
    if present:
        return f"{c.get('text', 'input')} not supported (input {', '.join(map(str, present))} present)"
    return None


def _chk_predicate(op: Operator, sg: Subgraph, c: dict[str, Any]) -> str | None:
    return PREDICATES[c["fn"]](op, sg)


CHECKS: dict[str, Callable[[Operator, Subgraph, dict[str, Any]], str | None]] = {
    "reject_types": _chk_reject_types,
    "require_types": _chk_require_types,
    "reject_unquantized_8bit": _chk_reject_unquantized_8bit,
    "reject_type_combo": _chk_reject_type_combo,
    "option_in": _chk_option_in,
    "option_max": _chk_option_max,
    "options_not_all": _chk_options_not_all,
    "rank_equals": _chk_rank_equals,
    "rank_nonzero": _chk_rank_nonzero,
    "dim_equals": _chk_dim_equals,
    "same_rank": _chk_same_rank,
    "positive_dims": _chk_positive_dims,
    "must_be_absent": _chk_must_be_absent,
    "predicate": _chk_predicate,
}


# -- the engine -----------------------------------------------------------------------------------


def _reason(rule: str, message: str, ref: str | None, policy: bool = False) -> dict[str, Any]:
    return {"rule": rule, "message": message, "ref": ref, "policy": policy}


class VxDelegateRules:
    """The VX delegate's support checks for one BSP, parsed from a rules file."""

    def __init__(self, rules: dict[str, Any], origin: str = "imx8mp_rules.json"):
        self.rules = rules
        self.origin = origin
        self.name: str = rules["target"]
        self.generic: dict[str, Any] = rules["generic"]
        self.ops: dict[str, Any] = rules["ops"]
        self.custom_ops: dict[str, Any] = rules.get("custom_ops", {})
        self.policy: dict[str, Any] = rules["policy"]
        self.validate()

    # .. validation ................................................................................
    def validate(self) -> None:
        """Every check type and predicate the rules name exists (fail at load, not mid-report)."""
        problems = []
        for op, spec in self.ops.items():
            for c in spec.get("checks", []):
                kind = c.get("type")
                if kind not in CHECKS:
                    problems.append(f"{op}: unknown check type {kind!r}")
                elif kind == "predicate" and c.get("fn") not in PREDICATES:
                    problems.append(f"{op}: unknown predicate {c.get('fn')!r}")
        for key in ("G1", "G3", "G4", "G8", "G10"):
            if key not in self.generic:
                problems.append(f"generic rule {key} missing")
        if problems:
            raise UsageError(f"{self.origin}: invalid target rules: " + "; ".join(problems))

    def describe(self) -> dict[str, Any]:
        src = self.rules["source"]
        base = src["repos"][src["baseline"]]
        return {
            "name": self.name,
            "title": self.rules["title"],
            "rules": {
                "bsp": src["bsp"],
                "baseline": {k: base[k] for k in ("repo", "branch", "commit", "date") if k in base},
                "line_refs": src["line_refs"],
                "sources": {k: {f: v[f] for f in ("repo", "branch", "commit", "date") if f in v}
                            for k, v in sorted(src["repos"].items())},
                "compiled": src["compiled"],
                "reference": src["reference"],
                "registered_builtins": len(self.ops),
                "registered_custom": sorted(k for k, v in self.custom_ops.items() if v.get("supported")),
            },
            "policy": {
                "float_ops_on_cpu": bool(self.policy["float_ops_on_cpu"]),
                "rule": self.policy.get("rule", "G5"),
                "note": self.policy["text"],
                "boundary_ops": list(self.policy.get("boundary_ops", [])),
            },
            "caveats": [src["caveat"], self.generic["G12"]["note"], self.generic["G2"]["note"]],
        }

    # .. per-op ....................................................................................
    def is_float_op(self, op: Operator, sg: Subgraph) -> bool:
        ftypes = set(self.policy["float_types"])
        ins = [_t(sg, i) for i in op.inputs if i >= 0]
        outs = [_t(sg, i) for i in op.outputs if i >= 0]
        tensors = [t for t in ins + outs if t is not None]
        if not any(t.type_name in ftypes for t in tensors):
            return False
        if op.name in self.policy.get("boundary_ops", []) and ins and outs and ins[0] and outs[0]:
            i0, o0 = ins[0], outs[0]
            if op.name == "QUANTIZE" and i0.type_name in ftypes and o0.is_quantized \
                    and o0.type_name not in ftypes:
                return False
            if op.name == "DEQUANTIZE" and not i0.is_constant and i0.is_quantized \
                    and i0.type_name not in ftypes:
                return False
        return True

    def check(self, op: Operator, sg: Subgraph) -> tuple[list[dict[str, Any]], list[str]]:
        """(reasons the op stays on the CPU, notes) for one operator instance."""
        g = self.generic
        reasons: list[dict[str, Any]] = []
        notes: list[str] = []

        # G1 registration
        if op.name == "CUSTOM":
            spec = self.custom_ops.get(op.custom_code or "")
            if spec is None:
                return [_reason("G1", f"custom op {op.custom_code!r}: {g['G1']['custom_text']}",
                                g["G1"]["ref"])], notes
            if not spec.get("supported", False):
                return [_reason("G1", f"custom op {op.custom_code!r}: {spec.get('text', 'not supported')}",
                                spec.get("ref"))], notes
            op_spec: dict[str, Any] = {}
        else:
            op_spec = self.ops.get(op.name)  # type: ignore[assignment]
            if op_spec is None:
                return [_reason("G1", f"{op.name} is {g['G1']['text']}", g["G1"]["ref"])], notes

        # G3 inputs
        g3 = g["G3"]
        for k, idx in enumerate(op.inputs):
            t = _t(sg, idx) if idx >= 0 else None
            if t is None:
                continue
            w = f"input {k} {_name(t)}"
            rej = g3["reject_input_types"]
            if t.type_name in rej and not (t.type_name == "INT64" and op.name in g3.get("int64_exempt_ops", [])):
                reasons.append(_reason("G3", f"{w} is {t.type_name}: {t.type_name.lower()} inputs are rejected",
                                       rej[t.type_name]))
            if len(t.shape) > g3["max_input_rank"]:
                reasons.append(_reason("G3", f"{w} has rank {len(t.shape)} > {g3['max_input_rank']}",
                                       g3.get("max_input_rank_ref", g3["ref"])))
            if g3.get("reject_zero_dims") and any(d == 0 for d in t.shape):
                reasons.append(_reason("G3", f"{w} has a zero-sized dimension {list(t.shape)}",
                                       g3.get("zero_dims_ref", g3["ref"])))
            big = [d for d in t.shape[1:] if d > g3["max_non_first_dim"]]
            if big:
                reasons.append(_reason("G3", f"{w} has a non-first dimension {big[0]} > "
                                       f"{g3['max_non_first_dim']} (shape {list(t.shape)})",
                                       g3.get("max_non_first_dim_ref", g3["ref"])))

        # G4 outputs
        g4 = g["G4"]
        for k, idx in enumerate(op.outputs):
            t = _t(sg, idx)
            if t is None:
                continue
            w = f"output {k} {_name(t)}"
            if t.type_name in g4["reject_output_types"]:
                reasons.append(_reason("G4", f"{w} is {t.type_name}: {t.type_name.lower()} outputs are rejected",
                                       g4["ref"]))
            if g4.get("reject_zero_dims") and any(d == 0 for d in t.shape):
                reasons.append(_reason("G4", f"{w} has a zero-sized dimension {list(t.shape)}", g4["ref"]))

        # G8 hybrid
        g8 = g["G8"]
        if op.name in g8["ops"]:
            a, f = sg.input_of(op, g8["input"]), sg.input_of(op, g8["filter"])
            if a is not None and f is not None and a.type_name != f.type_name:
                reasons.append(_reason("G8", f"hybrid op: input is {a.type_name} but the filter is "
                                       f"{f.type_name} (input dtype != filter dtype is rejected)", g8["ref"]))

        # G10 rank-0 outputs, constant parameters, dynamic outputs
        g10 = g["G10"]
        if op.name in g10["rank0_output_ops"]:
            o0 = _output(op, sg, 0)
            if o0 is not None and len(o0.shape) == 0:
                reasons.append(_reason("G10", f"output 0 {_name(o0)} has rank 0 (treated as a dynamic shape)",
                                       g10["rank0_output_ops"][op.name]))
        cspec = g10["constant_inputs"].get(op.name)
        if cspec:
            for k in cspec["inputs"]:
                t = sg.input_of(op, k) if _present(op, k) else None
                if t is not None and not t.is_constant:
                    reasons.append(_reason("G10", f"{cspec['what']} input {k} {_name(t)} is not a constant "
                                           "(the delegate requires a constant parameter)", cspec["ref"]))
        dspec = g10.get("dynamic_output_ops", {}).get(op.name)
        if dspec:
            for k in dspec["inputs"]:
                t = sg.input_of(op, k) if _present(op, k) else None
                if t is not None and not t.is_constant:
                    reasons.append(_reason("G10", f"{dspec['what']} input {k} {_name(t)} is not a constant: "
                                           f"{g10['dynamic_output_text']}", dspec["ref"]))

        # the op's own constraints
        for c in op_spec.get("checks", []):
            msg = CHECKS[c["type"]](op, sg, c)
            if msg:
                reasons.append(_reason("op", f"{op.name}: {msg}", c.get("ref")))

        # notes that do not reject (G6 unmapped types, G13 unmapped fused activations)
        mapped = set(g.get("G6", {}).get("mapped_types", []))
        if mapped:
            odd = sorted({t.type_name for t in (_t(sg, i) for i in (*op.inputs, *op.outputs) if i >= 0)
                          if t is not None and t.type_name not in mapped and t.type_name not in ("INT64", "STRING")})
            if odd:
                notes.append(f"G6: {', '.join(odd)}: {g['G6']['text']}")
        act = op.options.get("fused_activation_function")
        g13 = g.get("G13")
        if g13 and act is not None and act not in g13["supported"]:
            notes.append(f"G13: fused activation {act}: {g13['text']}")

        # policy (G5)
        if self.policy["float_ops_on_cpu"] and self.is_float_op(op, sg):
            reasons.append(_reason(self.policy.get("rule", "G5"), self.policy["text"], None, policy=True))
        return reasons, notes

    # .. whole model ...............................................................................
    def predict(self, model: Model) -> dict[str, Any]:
        out = self.describe()
        subgraphs = []
        cpu_types: Counter[str] = Counter()
        rule_counts: Counter[str] = Counter()
        totals = Counter()
        dynamic_ops = 0
        for sg in model.subgraphs:
            rows = []
            for op in sg.operators:
                reasons, notes = self.check(op, sg)
                placement = "CPU" if reasons else "NPU"
                delegate_only = "CPU" if any(not r["policy"] for r in reasons) else "NPU"
                rows.append({"index": op.index, "op": op.key, "placement": placement,
                             "reasons": reasons, "notes": notes, "_delegate": delegate_only})
                if placement == "CPU":
                    cpu_types[op.key] += 1
                    for r in reasons:
                        rule_counts[r["rule"]] += 1
                if any(t is not None and t.is_dynamic for t in
                       (_t(sg, i) for i in (*op.inputs, *op.outputs) if i >= 0)):
                    dynamic_ops += 1
            parts = partitions([r["placement"] for r in rows])
            parts_delegate = partitions([r["_delegate"] for r in rows])
            npu = sum(r["placement"] == "NPU" for r in rows)
            npu_delegate = sum(r["_delegate"] == "NPU" for r in rows)
            for r in rows:
                del r["_delegate"]
            totals.update(operators=len(rows), npu=npu, partitions=parts, npu_delegate=npu_delegate,
                          partitions_delegate=parts_delegate)
            subgraphs.append({"index": sg.index, "name": sg.name, "operators": len(rows), "npu": npu,
                              "cpu": len(rows) - npu, "partitions": parts, "ops": rows})
        n, npu = totals["operators"], totals["npu"]
        out["summary"] = {
            "operators": n,
            "npu": npu,
            "cpu": n - npu,
            "partitions": totals["partitions"],
            "fully_npu": n > 0 and npu == n,
            "cpu_ops_by_type": dict(sorted(cpu_types.items())),
            "cpu_reasons_by_rule": dict(sorted(rule_counts.items())),
            "ops_with_dynamic_dims": dynamic_ops,
            "without_policy": {"npu": totals["npu_delegate"], "cpu": n - totals["npu_delegate"],
                               "partitions": totals["partitions_delegate"]},
        }
        out["subgraphs"] = subgraphs
        return out


def partitions(placements: list[str]) -> int:
    """G11: the number of contiguous runs of ``NPU`` in execution order."""
    count, prev = 0, None
    for p in placements:
        if p == "NPU" and prev != "NPU":
            count += 1
        prev = p
    return count


def load(path: str | Path | None = None) -> VxDelegateRules:
    """The i.MX8MP rules: the bundled file, or another rules file (e.g. a newer BSP's)."""
    if path is None:
        return _bundled()
    return _load_file(Path(path))


@functools.lru_cache(maxsize=1)
def _bundled() -> VxDelegateRules:
    return _load_file(RULES_FILE)


def _load_file(path: Path) -> VxDelegateRules:
    try:
        with open(path, encoding="utf-8") as fh:
            rules = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path.name}: cannot read target rules ({exc})") from None
    return VxDelegateRules(rules, origin=path.name)
