"""Meaningful verification inputs for non-quantized integer inputs, derived from the graph.

A random integer is rarely a valid index, count or shape. For each non-quantized integer model
input, :func:`derive_rules` follows the tensor to the ops that consume it (through the pass-through
ops ``RESHAPE``/``SQUEEZE``/``EXPAND_DIMS`` input 0 and integer-to-integer ``CAST``) and derives
the values the consumer accepts. Ranges are inclusive; ``d(T, j)`` is dim ``j`` of tensor ``T``'s
static shape. The rules, by consumer (op, input position):

* ``GATHER`` indices (1): ``[0, d(params, axis) - 1]``, ``axis`` from the op (negative counted
  from the end; ``batch_dims`` does not change the indexed dim).
* ``GATHER_ND`` indices (1): column ``j`` of the last dim in ``[0, d(params, j) - 1]``.
* ``EMBEDDING_LOOKUP`` ids (0): ``[0, d(value, 0) - 1]``.
* ``SCATTER_ND`` indices (0): column ``j`` in ``[0, shape[j] - 1]`` (``shape``: the constant input
  2, else the output's static shape); its shape input (2): exactly the output's static shape.
* ``ONE_HOT`` indices (0): ``[0, depth - 1]`` (constant depth); depth (1): ``[1, 4]``.
* ``WHILE`` operand ``i`` that the cond subgraph compares (``LESS``, ``LESS_EQUAL``, ``GREATER``,
  ``GREATER_EQUAL`` reading its input ``i``): a loop bound, ``[1, 4]`` (at least one iteration,
  few).
* ``SEGMENT_SUM`` segment ids (1): ``[0, 3]``, sorted (ascending over the flattened input).
* ``UNSORTED_SEGMENT_{SUM,PROD,MAX,MIN}`` ids (1): ``[0, n - 1]`` with constant ``num_segments``
  n (else ``[0, 3]``); ``num_segments`` (2): exactly 4.
* ``TOPK_V2`` k (1): ``[1, d(input, -1)]``.
* ``RESHAPE`` shape (1): exactly the output's static shape (else the input's).
* ``BROADCAST_TO`` shape (1): exactly the output's static shape.
* ``SLICE`` begin (1): column ``j`` in ``[0, (d(input, j) - 1) // 2]``; size (2): column ``j`` in
  ``[1, ceil(d(input, j) / 2)]`` (so begin + size never passes the end).
* ``DYNAMIC_UPDATE_SLICE`` start indices (2): column ``j`` in
  ``[0, d(operand, j) - d(update, j)]``.
* ``FILL`` dims (0): ``[1, 4]``; ``TILE`` multiples (1): ``[1, 3]``; ``PAD``/``PADV2``/``MIRROR_PAD``
  paddings (1): ``[0, 2]`` (``MIRROR_PAD``: ``[0, 1]``).

Per-column rules apply only when the path from the input has no reshaping op (else the tightest
column bound applies to every element). An input consumed by several ops gets the intersection of
their ranges; exact values combine with nothing else. Every other integer input (an unknown
consumer, e.g. arithmetic or a custom op) is random in ``[0, 3]``; bool inputs are random
``False``/``True``. Quantized integer inputs are not governed here (they are random over their
dtype's full range, see :func:`.verify.random_inputs`).

What happens when the interpreter still rejects the inputs is :func:`.reference.reference_outputs`'s
business: it never substitutes values silently (the verification is reported as weak).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import ir

#: An integer input no rule covers: random in this inclusive range.
DEFAULT_RANGE = (0, 3)
#: Loop bounds, counts and depths: at least 1, few.
COUNT_RANGE = (1, 4)
#: num_segments of an UNSORTED_SEGMENT_* op when it is a model input (every default id fits).
NUM_SEGMENTS = 4

_PASS_THROUGH = {"RESHAPE": True, "SQUEEZE": True, "EXPAND_DIMS": True, "CAST": False}  # op -> reshapes?
_COMPARE = ("LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL")


@dataclass
class IntRule:
    """The values one integer input is fed: ``low``..``high`` (inclusive; per last-dim column when
    arrays), sorted if ``sorted``, or exactly ``values``; ``why`` says which rule, for reports."""

    low: np.ndarray
    high: np.ndarray
    why: str
    sorted: bool = False
    values: np.ndarray | None = None
    derived: bool = True  # False: no consumer rule applied (DEFAULT_RANGE)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        low, high = self.low, self.high
        if self.values is not None:
            if np.asarray(self.values).size == int(np.prod(shape)):
                return np.asarray(self.values, dtype).reshape(shape)
            low, high = np.array(DEFAULT_RANGE[0]), np.array(DEFAULT_RANGE[1])  # fed at another shape
        if low.ndim and (not shape or shape[-1] != low.shape[0]):
            low, high = np.array(low.max()), np.array(high.min())
        a = rng.integers(low, high, size=shape, endpoint=True)
        if self.sorted:
            a = np.sort(a.ravel()).reshape(shape)
        return a.astype(dtype)

    def describe(self) -> str:
        if self.values is not None:
            return f"{self.why}: exactly {np.asarray(self.values).tolist()}"
        rng = (f"[{int(self.low)}, {int(self.high)}]" if not self.low.ndim else
               "per column " + ", ".join(f"[{int(a)}, {int(b)}]" for a, b in zip(self.low, self.high)))
        return f"{self.why}: {rng}" + (", sorted" if self.sorted else "")


def _rng_rule(low: int | list[int], high: int | list[int], why: str, **kw: object) -> IntRule:
    return IntRule(np.asarray(low, np.int64), np.asarray(high, np.int64), why, **kw)  # type: ignore[arg-type]


def _static(t: ir.Tensor | None) -> tuple[int, ...] | None:
    if t is None:
        return None
    dims = tuple(t.shape_signature or t.shape)
    return dims if all(d >= 0 for d in dims) and len(dims) == len(t.shape) else None


def _const(sg: ir.Subgraph, i: int) -> np.ndarray | None:
    if i < 0 or not sg.tensors[i].is_constant:
        return None
    try:
        return np.asarray(sg.tensors[i].data())
    except Exception:  # noqa: BLE001 - an unreadable constant: no rule
        return None


def _columns(dims: list[int], why: str, reshaped: bool, low: int = 0, offset: list[int] | None = None
             ) -> IntRule | None:
    """Per-column ``[low, dims[j] - 1 - offset[j]]`` (collapsed to one range after a reshape)."""
    offset = offset or [0] * len(dims)
    high = [d - 1 - o for d, o in zip(dims, offset)]
    if not high or min(high) < low:
        return None
    if reshaped or len(high) == 1:
        return _rng_rule(low, min(high), why)
    return _rng_rule([low] * len(high), high, why)


def _consumer_rule(model: ir.Model, sg: ir.Subgraph, op: ir.Operator, pos: int, reshaped: bool) -> IntRule | None:
    """The rule the consumer ``op`` imposes on its input ``pos`` (None: no rule known)."""
    name, opts = op.name, op.options or {}
    out = sg.tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
    if name == "GATHER" and pos == 1:
        params = _static(sg.input_of(op, 0))
        if params:
            axis = int(opts.get("axis", 0))
            axis = axis + len(params) if axis < 0 else axis
            if 0 <= axis < len(params) and params[axis] > 0:
                return _rng_rule(0, params[axis] - 1, f"GATHER indices within dim {axis} of the params")
    elif name == "GATHER_ND" and pos == 1:
        params, idx = _static(sg.input_of(op, 0)), _static(sg.input_of(op, 1))
        if params and idx and 0 < idx[-1] <= len(params):
            return _columns(list(params[:idx[-1]]), "GATHER_ND indices within the params' dims", reshaped)
    elif name == "EMBEDDING_LOOKUP" and pos == 0:
        value = _static(sg.input_of(op, 1))
        if value and value[0] > 0:
            return _rng_rule(0, value[0] - 1, "EMBEDDING_LOOKUP ids within the table's rows")
    elif name == "SCATTER_ND" and pos == 0:
        shape = _const(sg, op.inputs[2]) if len(op.inputs) > 2 else None
        dims = [int(d) for d in shape.ravel()] if shape is not None else list(_static(out) or [])
        idx = _static(sg.input_of(op, 0))
        if dims and idx and 0 < idx[-1] <= len(dims):
            return _columns(dims[:idx[-1]], "SCATTER_ND indices within the output's dims", reshaped)
    elif name in ("SCATTER_ND", "RESHAPE", "BROADCAST_TO") and pos == (2 if name == "SCATTER_ND" else 1):
        shape = _static(out) or (_static(sg.input_of(op, 0)) if name == "RESHAPE" else None)
        if shape is not None:
            return IntRule(np.array(0), np.array(0), f"{name} shape: the output's shape", values=np.array(shape))
    elif name == "ONE_HOT" and pos == 0:
        depth = _const(sg, op.inputs[1]) if len(op.inputs) > 1 else None
        if depth is not None and depth.size == 1 and int(depth.ravel()[0]) > 0:
            return _rng_rule(0, int(depth.ravel()[0]) - 1, "ONE_HOT indices within the depth")
    elif name == "ONE_HOT" and pos == 1:
        return _rng_rule(*COUNT_RANGE, "ONE_HOT depth")
    elif name == "WHILE":
        cond = model.subgraphs[int(opts.get("cond_subgraph_index", -1))] if "cond_subgraph_index" in opts else None
        if cond is not None and pos < len(cond.inputs):
            ci = cond.inputs[pos]
            if any(o.name in _COMPARE and ci in o.inputs for o in cond.operators):
                return _rng_rule(*COUNT_RANGE, "WHILE loop bound (compared by the loop condition)")
    elif name == "SEGMENT_SUM" and pos == 1:
        return _rng_rule(*DEFAULT_RANGE, "SEGMENT_SUM segment ids", sorted=True)
    elif name.startswith("UNSORTED_SEGMENT_") and pos == 1:
        n = _const(sg, op.inputs[2]) if len(op.inputs) > 2 else None
        if n is not None and n.size == 1 and int(n.ravel()[0]) > 0:
            return _rng_rule(0, int(n.ravel()[0]) - 1, f"{name} segment ids within num_segments")
        return _rng_rule(*DEFAULT_RANGE, f"{name} segment ids within num_segments {NUM_SEGMENTS}")
    elif name.startswith("UNSORTED_SEGMENT_") and pos == 2:
        return _rng_rule(NUM_SEGMENTS, NUM_SEGMENTS, f"{name} num_segments")
    elif name == "TOPK_V2" and pos == 1:
        x = _static(sg.input_of(op, 0))
        if x and x[-1] > 0:
            return _rng_rule(1, x[-1], "TOPK_V2 k within the last dim")
    elif name == "SLICE" and pos in (1, 2):
        x = _static(sg.input_of(op, 0))
        if x and min(x, default=0) > 0:
            if pos == 1:
                return _rng_rule([0] * len(x), [(d - 1) // 2 for d in x], "SLICE begin in the first half")
            return _rng_rule([1] * len(x), [(d + 1) // 2 for d in x], "SLICE size within half the dim")
    elif name == "DYNAMIC_UPDATE_SLICE" and pos == 2:
        operand, update = _static(sg.input_of(op, 0)), _static(sg.input_of(op, 1))
        if operand and update and len(operand) == len(update):
            return _columns(list(operand), "DYNAMIC_UPDATE_SLICE start where the update fits", reshaped,
                            offset=[u - 1 for u in update])
    elif name == "FILL" and pos == 0:
        return _rng_rule(*COUNT_RANGE, "FILL dims")
    elif name == "TILE" and pos == 1:
        return _rng_rule(1, 3, "TILE multiples")
    elif name in ("PAD", "PADV2", "MIRROR_PAD") and pos == 1:
        return _rng_rule(0, 1 if name == "MIRROR_PAD" else 2, f"{name} paddings")
    return None


def _consumers(model: ir.Model, sg: ir.Subgraph, index: int, reshaped: bool = False, depth: int = 0
               ) -> list[tuple[ir.Operator, int, bool]]:
    """(op, input position, reshaped on the way) of every non-pass-through op reading ``index``."""
    found: list[tuple[ir.Operator, int, bool]] = []
    for op in sg.operators:
        for pos, i in enumerate(op.inputs):
            if i != index:
                continue
            out = sg.tensors[op.outputs[0]] if op.outputs and op.outputs[0] >= 0 else None
            if (op.name in _PASS_THROUGH and pos == 0 and out is not None and out.dtype.kind in "iu"
                    and not out.is_quantized and depth < 8):
                found += _consumers(model, sg, op.outputs[0], reshaped or _PASS_THROUGH[op.name], depth + 1)
            else:
                found.append((op, pos, reshaped))
    return found


def _intersect(rules: list[IntRule]) -> IntRule | None:
    if len(rules) == 1:
        return rules[0]
    if any(r.values is not None for r in rules):
        return None  # exact values combine with nothing
    low = np.max(np.broadcast_arrays(*[r.low for r in rules]), axis=0)
    high = np.min(np.broadcast_arrays(*[r.high for r in rules]), axis=0)
    if np.any(low > high):
        return None
    return IntRule(low, high, " and ".join(dict.fromkeys(r.why for r in rules)), sorted=any(r.sorted for r in rules))


def derive_rule(model: ir.Model, sg: ir.Subgraph, t: ir.Tensor) -> IntRule | None:
    """The rule for model input ``t`` of ``sg`` (None: not a non-quantized integer input)."""
    if t.dtype.kind not in "iu" or t.is_quantized:
        return None
    consumers = _consumers(model, sg, t.index)
    rules = [_consumer_rule(model, sg, op, pos, reshaped) for op, pos, reshaped in consumers]
    known = [r for r in rules if r is not None]
    rule = _intersect(known) if known else None
    if rule is not None:
        return rule
    ops = ", ".join(dict.fromkeys(f"{op.key if hasattr(op, 'key') else op.name} input {pos}"
                                  for op, pos, _ in consumers)) or "no op"
    why = f"no rule for its consumer ({ops})" if not known else "its consumers' rules conflict"
    return _rng_rule(*DEFAULT_RANGE, why, derived=False)


def derive_rules(model: ir.Model, subgraph_index: int, tensors: list[ir.Tensor]) -> list[IntRule | None]:
    """One rule per input (None for inputs that are not non-quantized integers)."""
    sg = model.subgraphs[subgraph_index]
    return [derive_rule(model, sg, t) for t in tensors]
