"""Flex ops (``CUSTOM:Flex<Op>``): TensorFlow ops embedded in a TFLite model.

The custom options are a FlexBuffer vector ``[op_name, NodeDef bytes]``: the serialized
``tensorflow.NodeDef`` carries the op name and its attributes. The rebuilder decodes it and emits the
same TF op through ``tf.raw_ops`` with the op's own attributes, so the rebuilt op *is* the op the
Flex delegate would run (and converting back with ``SELECT_TF_OPS`` gives the same Flex op).

Inputs are matched to the ``OpDef``'s input arguments in order (a list argument takes ``N`` or
``len(type list)`` consecutive inputs); attributes that TensorFlow infers from the inputs (``T``,
``N``, type lists) are not passed, every other attribute is.

The check (run by ``rebuild.check_supported`` before anything is built, so ``convert`` and
``inspect`` list every problem of every op at once) parses the NodeDef against TensorFlow's
``OpDef``: the op exists, every attribute is one the op has and holds a value of the declared kind
(not a function or placeholder, which cannot be passed), every required attribute is there, the
input count matches with no input absent, and so does the output count. A Flex model therefore
loads TensorFlow's op registry even in ``inspect``.
"""

from __future__ import annotations

import keyword
from typing import Any

from flatbuffers import flexbuffers

from ..._tf import tf
from ...model.ir import Operator, Subgraph
from ..context import OpContext
from ..registry import register

_PREFIX = "Flex"


def _decode(op: Operator) -> tuple[str, bytes] | str:
    """``(op_name, node_def_bytes)`` or a problem description. The NodeDef is read as raw bytes (it is
    binary protobuf; the generic FlexBuffer decoder insists on UTF-8 strings)."""
    data = op.custom_options
    if not data:
        return "no custom options (a Flex op stores [op_name, NodeDef])"
    try:
        root = flexbuffers.GetRoot(bytearray(data))
        if not root.IsVector:
            return "custom options are not a FlexBuffer vector [op_name, NodeDef]"
        vec = root.AsVector
        if len(vec) < 2:
            return "custom options vector has fewer than 2 entries"
        name_ref, nd_ref = vec[0], vec[1]
        if not name_ref.IsString or not (nd_ref.IsString or nd_ref.IsBlob):
            return "custom options vector does not hold [string, string]"
        name = bytes(flexbuffers.String(name_ref._Indirect(), name_ref._byte_width).Bytes).decode("utf-8")
        if nd_ref.IsBlob:
            node_def = bytes(nd_ref.AsBlob)
        else:
            node_def = bytes(flexbuffers.String(nd_ref._Indirect(), nd_ref._byte_width).Bytes)
    except (IndexError, ValueError, TypeError, UnicodeDecodeError, AttributeError, KeyError) as exc:
        return f"custom options are not a valid FlexBuffer ({type(exc).__name__})"
    if op.custom_code and op.custom_code != _PREFIX + name:
        return f"custom code {op.custom_code} names a different op than its NodeDef op {name!r}"
    return name, node_def


#: ``OpDef.AttrDef.type`` -> the ``AttrValue`` field that holds such a value.
_ATTR_KIND = {"string": "s", "int": "i", "float": "f", "bool": "b", "type": "type", "shape": "shape",
              "tensor": "tensor", "func": "func"}


def _node_def(op: Operator) -> tuple[Any, Any] | str:
    """``(NodeDef, OpDef)`` of a Flex op, or the problem that keeps it from being rebuilt.

    Imports TensorFlow's op registry (the only place a TF op's attributes are defined), so checking
    a model with Flex ops loads TensorFlow.
    """
    decoded = _decode(op)
    if isinstance(decoded, str):
        return decoded
    name, raw = decoded
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.python.framework import op_def_registry

    nd = node_def_pb2.NodeDef()
    try:
        nd.ParseFromString(raw)
    except Exception as exc:  # protobuf raises its own DecodeError
        return f"NodeDef does not parse ({type(exc).__name__}: {exc})"
    op_name = nd.op or name
    op_def = op_def_registry.get(op_name)
    if op_def is None or getattr(tf.raw_ops, op_name, None) is None:
        return f"TensorFlow has no op {op_name!r}"
    defs = {a.name: a for a in op_def.attr}
    problems = []
    unknown = sorted(k for k in nd.attr if not k.startswith("_") and k not in defs)
    if unknown:
        problems.append(f"NodeDef attribute(s) {', '.join(map(repr, unknown))} are not attributes of TensorFlow's "
                        f"{op_name} (it has: {', '.join(defs) or 'none'})")
    for key, value in nd.attr.items():
        if key not in defs:
            continue
        want = "list" if defs[key].type.startswith("list(") else _ATTR_KIND.get(defs[key].type)
        kind = value.WhichOneof("value")
        if want is not None and kind != want:
            problems.append(f"NodeDef attribute {key!r} holds a {kind or 'empty'} value; {op_name} wants "
                            f"{defs[key].type}")
    inferred = _inferred_attrs(op_def)
    missing = sorted(a.name for a in op_def.attr
                     if a.name not in nd.attr and a.name not in inferred and not a.HasField("default_value"))
    if missing:
        problems.append(f"NodeDef lacks the required attribute(s) {', '.join(map(repr, missing))} of {op_name}")
    for key, value in nd.attr.items():
        if key in defs and key not in inferred and not key.startswith("_"):
            bad = _unsupported_attr(value)
            if bad:
                problems.append(f"NodeDef attribute {key!r} is {bad}, which the rebuild cannot pass to {op_name}")
    if not problems:
        count = _input_count(op_def, nd)
        if count != len(op.inputs):
            problems.append(f"{op_name} takes {count} inputs, the operator has {len(op.inputs)}")
        absent = [k for k, i in enumerate(op.inputs) if i < 0]
        if absent:
            problems.append(f"input(s) {', '.join(map(str, absent))} of {op_name} are absent")
        outs = _output_count(op_def, nd)
        if outs is not None and outs != len(op.outputs):
            problems.append(f"{op_name} gives {outs} outputs, the operator has {len(op.outputs)}")
    return "; ".join(problems) if problems else (nd, op_def)


def _unsupported_attr(v: Any) -> str | None:
    """Attribute values :func:`_attr_value` cannot turn into a ``tf.raw_ops`` argument."""
    kind = v.WhichOneof("value")
    if kind == "func" or (kind == "list" and len(v.list.func)):
        return "a function"
    if kind == "placeholder":
        return "a placeholder"
    return None


def _output_count(op_def: Any, nd: Any) -> int | None:
    """Outputs the op gives for this NodeDef (``None``: a count attribute is not in the NodeDef)."""
    n = 0
    for arg in op_def.output_arg:
        for attr in (arg.number_attr, arg.type_list_attr):
            if attr and attr not in nd.attr:
                return None
        n += _arg_count(arg, nd)
    return n


def _inferred_attrs(op_def: Any) -> set[str]:
    """Attributes TensorFlow infers from the inputs (``T``, ``N``, type lists): not passed."""
    inferred: set[str] = set()
    for arg in op_def.input_arg:
        inferred.update(a for a in (arg.type_attr, arg.number_attr, arg.type_list_attr) if a)
    return inferred


def _arg_count(arg: Any, nd: Any) -> int:
    if arg.number_attr:
        return int(nd.attr[arg.number_attr].i)
    if arg.type_list_attr:
        return len(nd.attr[arg.type_list_attr].list.type)
    return 1


def _input_count(op_def: Any, nd: Any) -> int:
    return sum(_arg_count(arg, nd) for arg in op_def.input_arg)


def _check(op: Operator, sg: Subgraph) -> list[str]:
    r = _node_def(op)
    return [r] if isinstance(r, str) else []


def _attr_value(v: Any, where: str) -> Any:
    """An ``AttrValue`` proto -> the Python value ``tf.raw_ops`` accepts."""
    kind = v.WhichOneof("value")
    if kind == "s":
        return v.s
    if kind in ("i", "f", "b"):
        return getattr(v, kind)
    if kind == "type":
        return tf.dtypes.as_dtype(v.type)
    if kind == "shape":
        return tf.TensorShape(v.shape)
    if kind == "tensor":
        return tf.make_ndarray(v.tensor)
    if kind == "list":
        lst = v.list
        if lst.type:
            return [tf.dtypes.as_dtype(t) for t in lst.type]
        if lst.shape:
            return [tf.TensorShape(s) for s in lst.shape]
        if lst.tensor:
            return [tf.make_ndarray(t) for t in lst.tensor]
        for field in ("s", "i", "f", "b"):
            if getattr(lst, field):
                return list(getattr(lst, field))
        return []
    raise ValueError(f"{where}: attribute of kind {kind!r} (functions and placeholders are not supported)")


@register("CUSTOM:Flex*", check=_check)
def flex_op(ctx: OpContext) -> list[Any]:
    checked = _node_def(ctx.op)
    if isinstance(checked, str):
        raise ctx.unsupported(checked)
    nd, op_def = checked
    fn = getattr(tf.raw_ops, op_def.name)
    inferred = _inferred_attrs(op_def)
    kwargs: dict[str, Any] = {}
    for key, value in nd.attr.items():
        if key in inferred or key.startswith("_"):
            continue
        try:
            kwargs[key] = _attr_value(value, ctx.where)
        except ValueError as exc:
            raise ctx.unsupported(str(exc)) from None
    pos = 0
    for arg in op_def.input_arg:
        count = _arg_count(arg, nd)
        vals = []
        for k in range(count):
            v = ctx.input(pos + k)
            if v is None:
                raise ctx.unsupported(f"input {pos + k} ({arg.name}) is absent")
            want = None
            if arg.type_attr and arg.type_attr in nd.attr:
                want = tf.dtypes.as_dtype(nd.attr[arg.type_attr].type)
            elif arg.type_list_attr:
                want = tf.dtypes.as_dtype(nd.attr[arg.type_list_attr].list.type[k])
            elif arg.type:
                want = tf.dtypes.as_dtype(arg.type)
            if want is not None and v.dtype != want and want not in (tf.resource, tf.variant):
                v = tf.cast(v, want)
            vals.append(v)
        pos += count
        arg_name = arg.name + "_" if keyword.iskeyword(arg.name) else arg.name
        kwargs[arg_name] = vals if (arg.number_attr or arg.type_list_attr) else vals[0]
    result = fn(**kwargs)
    outs = [result] if isinstance(result, tf.Tensor) else list(tf.nest.flatten(result))
    if len(outs) != ctx.num_outputs:
        raise ctx.unsupported(f"{nd.op} gives {len(outs)} outputs, the operator has {ctx.num_outputs}")
    return outs
