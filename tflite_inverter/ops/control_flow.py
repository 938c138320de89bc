"""Control flow and resource variables: WHILE, IF, CALL, CALL_ONCE, STABLEHLO_COMPOSITE, VAR_HANDLE,
READ_VARIABLE, ASSIGN_VARIABLE.

Subgraph-calling ops run the called subgraph through ``ctx.run_subgraph`` inside ``tf.while_loop`` /
``tf.cond`` bodies (which the converter turns back into WHILE / IF with their own subgraphs) or inline
(CALL, STABLEHLO_COMPOSITE: the decomposition *is* the semantics).

Resource variables are module state: one ``tf.Variable`` per ``(container, shared_name)``, shared by
every subgraph and signature as TFLite shares them per interpreter. A RESOURCE tensor is carried in
the graph as the variable's real resource handle, so READ/ASSIGN work wherever the handle flows
(loop variables, branch inputs) and TensorFlow's automatic control dependencies keep reads and writes
in program order. The variable's dtype and shape come from the tensors the model assigns to it and
reads from it (TFLite has no declaration of them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Model, Operator, Subgraph, Tensor
from .context import OpContext, value_dtype
from .registry import register


# -- helpers -----------------------------------------------------------------------------------------
def _value_dtype(t: Tensor) -> Any:

    return value_dtype(t)


def _subgraph(ctx: OpContext, key: str) -> int:
    """The subgraph index named by option ``key``, checked against the model."""
    idx = ctx.options.get(key)
    n = len(ctx.builder.model.subgraphs)
    if idx is None or not 0 <= int(idx) < n:
        raise ctx.unsupported(f"{key} {idx!r} does not name one of the model's {n} subgraphs")
    if int(idx) == ctx.subgraph.index:
        raise ctx.unsupported(f"{key} {idx} calls the subgraph the op is in (infinite recursion)")
    return int(idx)


def _cast_all(values: list[Any], dtypes: list[Any]) -> list[Any]:
    return [v if v.dtype == d or d in (tf.resource, tf.variant) else tf.cast(v, d) for v, d in zip(values, dtypes)]


def _call(ctx: OpContext, index: int, inputs: list[Any]) -> list[Any]:
    """Run subgraph ``index`` inline and return one value per op output (cast to the IR dtypes)."""
    sg = ctx.builder.model.subgraphs[index]
    if len(sg.outputs) != ctx.num_outputs:
        raise ctx.unsupported(f"subgraph {index} has {len(sg.outputs)} outputs, the op has {ctx.num_outputs}")
    outs = ctx.run_subgraph(index, inputs)
    return _cast_all(outs, [ctx.out_dtype(k) for k in range(ctx.num_outputs)])


def _shape_of(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape_signature or t.shape)


def _merge_shapes(shapes: list[tuple[int | None, ...] | None]) -> Any:
    """The most specific ``tf.TensorShape`` compatible with every shape (``None``/-1 = unknown)."""
    known = [s for s in shapes if s is not None]
    if not known or any(len(s) != len(known[0]) for s in known):
        return tf.TensorShape(None)
    dims = []
    for col in zip(*known):
        vals = {d for d in col if d is not None and d >= 0}
        dims.append(vals.pop() if len(vals) == 1 and all(d is not None and d >= 0 for d in col) else None)
    return tf.TensorShape(dims)


# -- WHILE / IF / CALL / composites ----------------------------------------------------------------------
@register("WHILE")
def while_(ctx: OpContext) -> list[Any]:
    """``tf.while_loop`` over the cond/body subgraphs.

    A loop variable keeps a static dimension only where the body's input, the body's output, the
    op's output and the initial value all agree; any -1 in a shape_signature or a dimension the body
    changes becomes ``None`` in the shape invariant. Iterations run strictly in order
    (``parallel_iterations=1``) as in TFLite, since bodies may read and write resource variables.
    """
    cond_i = _subgraph(ctx, "cond_subgraph_index")
    body_i = _subgraph(ctx, "body_subgraph_index")
    model = ctx.builder.model
    body, cond = model.subgraphs[body_i], model.subgraphs[cond_i]
    n = ctx.num_inputs
    if len(body.inputs) != n or len(body.outputs) != n or len(cond.inputs) != n or ctx.num_outputs != n:
        raise ctx.unsupported(f"loop variable counts disagree: op {n} in / {ctx.num_outputs} out, body "
                              f"{len(body.inputs)} in / {len(body.outputs)} out, cond {len(cond.inputs)} in")
    init = list(ctx.inputs)
    if any(v is None for v in init):
        raise ctx.unsupported("a loop variable input is absent (-1)")
    dtypes = [v.dtype for v in init]

    def invariant(k: int, relax: bool) -> Any:
        v = init[k]
        if v.dtype in (tf.resource, tf.variant):
            return v.shape
        own = tuple(None if d is None else d for d in v.shape.as_list()) if v.shape.rank is not None else None
        if relax:
            return tf.TensorShape(None) if own is None else tf.TensorShape([None] * len(own))
        return _merge_shapes([own, _shape_of(body.tensors[body.inputs[k]]),
                              _shape_of(body.tensors[body.outputs[k]]), _shape_of(ctx.out_tensor(k))])

    def cond_fn(*vs: Any) -> Any:
        r = ctx.run_subgraph(cond_i, list(vs))[0]
        if r.dtype != tf.bool:
            r = tf.not_equal(r, tf.zeros_like(r))
        if r.shape.rank == 0:
            return r  # (a reshape + slice would come back from the converter as two extra ops)
        return tf.reshape(r, [-1])[0]  # TFLite reads the first element

    def body_fn(*vs: Any) -> list[Any]:
        return _cast_all(ctx.run_subgraph(body_i, list(vs)), dtypes)

    for relax in (False, True):
        try:
            out = tf.while_loop(cond_fn, body_fn, init, shape_invariants=[invariant(k, relax) for k in range(n)],
                                parallel_iterations=1)
            break
        except ValueError as exc:
            # The IR claimed a static shape the body does not keep: retry with every dimension free.
            if relax or "shape" not in str(exc):
                raise
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    return _cast_all(out, [ctx.out_dtype(k) for k in range(n)])


@register("IF")
def if_(ctx: OpContext) -> list[Any]:
    """``tf.cond`` on the first element of input 0; the other inputs go to the chosen branch."""
    then_i = _subgraph(ctx, "then_subgraph_index")
    else_i = _subgraph(ctx, "else_subgraph_index")
    pred = ctx.input(0)
    if pred.dtype != tf.bool:
        pred = tf.not_equal(pred, tf.zeros_like(pred))
    pred = tf.reshape(pred, [-1])[0]
    args = [ctx.input(i) for i in range(1, ctx.num_inputs)]
    model = ctx.builder.model
    for idx in (then_i, else_i):
        if len(model.subgraphs[idx].inputs) != len(args):
            raise ctx.unsupported(f"subgraph {idx} takes {len(model.subgraphs[idx].inputs)} inputs, IF passes "
                                  f"{len(args)}")
    out = tf.cond(pred, lambda: _call(ctx, then_i, args), lambda: _call(ctx, else_i, args))
    if ctx.num_outputs == 0:
        return []
    return list(out) if isinstance(out, (list, tuple)) else [out]


@register("CALL")
def call(ctx: OpContext) -> list[Any]:
    """CALL runs ``subgraph`` with the op's inputs (inlined: no state of its own)."""
    return _call(ctx, _subgraph(ctx, "subgraph"), list(ctx.inputs))


@register("STABLEHLO_COMPOSITE")
def stablehlo_composite(ctx: OpContext) -> list[Any]:
    """A composite is its decomposition subgraph applied to the op's inputs (the name and
    composite_attributes only describe it; the decomposition is what TFLite runs)."""
    return _call(ctx, _subgraph(ctx, "decomposition_subgraph_index"), list(ctx.inputs))


@register("CALL_ONCE")
def call_once(ctx: OpContext) -> list[Any]:
    """Run the init subgraph on the first call of the module only.

    TFLite keeps one "initialized" flag per init subgraph for the interpreter's life, shared by all
    signatures; here it is a boolean module variable keyed by the init subgraph index.
    """
    idx = _subgraph(ctx, "init_subgraph_index")
    sg = ctx.builder.model.subgraphs[idx]
    if sg.inputs or sg.outputs or ctx.num_inputs or ctx.num_outputs:
        raise ctx.unsupported(f"CALL_ONCE and its init subgraph {idx} must have no inputs or outputs")
    if _static_initializer(sg) is not None:
        return []  # its constants are the variables' initial values (see _resource_variable)
    done = ctx.builder.resource(("call_once", idx),
                                lambda: tf.Variable(False, trainable=False, name=f"call_once_{idx}_done"))

    def first() -> Any:
        ctx.run_subgraph(idx, [])
        done.assign(True)
        return tf.constant(True)

    tf.cond(done.read_value(), lambda: tf.constant(False), first)
    return []


# -- resource variables ----------------------------------------------------------------------------
def _resource_key(op: Operator) -> tuple[str, str]:
    return (op.options.get("container") or "", op.options.get("shared_name") or "")


def _static_initializer(sg: Subgraph) -> dict[tuple[str, str], Tensor] | None:
    """The constants an init subgraph assigns to variables, when that is all it does.

    The converter writes variable initialisation as a CALL_ONCE subgraph of VAR_HANDLEs and
    ASSIGN_VARIABLEs of constants. Such a subgraph is deterministic and reads nothing, so running it
    on the first call is the same as starting the variables at those values: the rebuild does that,
    and the converter turns the initial values back into the same CALL_ONCE subgraph (a run-once
    ``tf.cond`` would come back as an extra IF). ``None`` when the subgraph does anything else.
    """
    handles: dict[int, tuple[str, str]] = {}
    values: dict[tuple[str, str], Tensor] = {}
    for op in sg.operators:
        if op.name == "VAR_HANDLE" and len(op.outputs) == 1:
            handles[op.outputs[0]] = _resource_key(op)
        elif op.name == "ASSIGN_VARIABLE" and len(op.inputs) == 2 and op.inputs[0] in handles:
            value = sg.tensors[op.inputs[1]] if op.inputs[1] >= 0 else None
            if value is None or not value.is_constant or value.type_name in ("STRING", "RESOURCE", "VARIANT"):
                return None
            values[handles[op.inputs[0]]] = value
        else:
            return None
    return values


def _initial_values(model: Model) -> dict[tuple[str, str], tuple[Subgraph, Tensor]]:
    """Every variable's initial value (a constant, with its subgraph) from the model's static
    CALL_ONCE initialisers."""
    out: dict[tuple[str, str], tuple[Subgraph, Tensor]] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            idx = op.options.get("init_subgraph_index") if op.name == "CALL_ONCE" else None
            if idx is not None and 0 <= int(idx) < len(model.subgraphs):
                init_sg = model.subgraphs[int(idx)]
                found = _static_initializer(init_sg)
                out.update({k: (init_sg, t) for k, t in (found or {}).items()})
    return out


def _variable_specs(model: Model) -> dict[tuple[str, str], list[Tensor]]:
    """For each (container, shared_name): the tensors assigned to it and read from it anywhere."""
    specs: dict[tuple[str, str], list[Tensor]] = {}
    for sg in model.subgraphs:
        handles = {op.outputs[0]: _resource_key(op) for op in sg.operators
                   if op.name == "VAR_HANDLE" and op.outputs}
        for op in sg.operators:
            if op.name == "ASSIGN_VARIABLE" and len(op.inputs) > 1 and op.inputs[0] in handles:
                specs.setdefault(handles[op.inputs[0]], []).insert(0, sg.tensors[op.inputs[1]])
            elif op.name == "READ_VARIABLE" and op.inputs and op.outputs and op.inputs[0] in handles:
                specs.setdefault(handles[op.inputs[0]], []).append(sg.tensors[op.outputs[0]])
    return specs


def _builder_cache(builder: Any) -> dict[str, Any]:
    """Per-build memo for this module (the model analysis is done once per builder)."""
    cache = builder.__dict__.get("_control_flow_cache")
    if cache is None:
        cache = builder.__dict__["_control_flow_cache"] = {}
    return cache


def _resource_variable(ctx: OpContext, key: tuple[str, str]) -> Any:
    cache = _builder_cache(ctx.builder)
    if "specs" not in cache:
        cache["specs"] = _variable_specs(ctx.builder.model)
    tensors = cache["specs"].get(key)
    if not tensors:
        raise ctx.unsupported(f"resource variable {key[1]!r} is never assigned or read, so its dtype and shape "
                              "are unknown")
    dtype = _value_dtype(tensors[0])  # an assigned value when there is one (assignments sort first)
    shape = _merge_shapes([_shape_of(t) for t in tensors])
    if "initial" not in cache:
        cache["initial"] = _initial_values(ctx.builder.model)
    init = cache["initial"].get(key)

    def create() -> Any:
        if init is not None:
            value = ctx.builder.const_array(init[1], ctx.where, init[0]).astype(dtype.as_numpy_dtype)
        else:
            value = np.zeros([d or 0 for d in shape.as_list()] if shape.rank is not None else [],
                             dtype=dtype.as_numpy_dtype)
        name = "var_" + "".join(c if c.isalnum() else "_" for c in (key[1] or "unnamed"))
        return tf.Variable(value, shape=shape, dtype=dtype, trainable=False, name=name)

    return ctx.builder.resource(("resource_variable",) + key, create)


def _check_var_handle(op: Operator, sg: Subgraph) -> list[str]:
    return [] if len(op.outputs) == 1 else [f"VAR_HANDLE has {len(op.outputs)} outputs, expected 1"]


@register("VAR_HANDLE", check=_check_var_handle)
def var_handle(ctx: OpContext) -> list[Any]:
    """The handle of the module variable for (container, shared_name)."""
    return [_resource_variable(ctx, _resource_key(ctx.op)).handle]


@register("READ_VARIABLE")
def read_variable(ctx: OpContext) -> list[Any]:
    """The variable's current value (its dtype is the one its readers and writers have in the IR)."""
    return [tf.raw_ops.ReadVariableOp(resource=ctx.input(0), dtype=ctx.out_dtype(0))]


@register("ASSIGN_VARIABLE")
def assign_variable(ctx: OpContext) -> list[Any]:
    """Overwrite the variable; later reads (in program order) see the new value."""
    tf.raw_ops.AssignVariableOp(resource=ctx.input(0), value=ctx.input(1))
    return []
