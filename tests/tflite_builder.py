"""Build TFLite flatbuffers directly, for ops and option values the TensorFlow converter never emits.

Everything is written generically from the bundled ``schema.fbs`` (``tflite_inverter.model.schema``), so any
field of any table can be set, including options newer than the ``tflite`` package's generated code:

* :func:`build_model` — a whole model from a list of tensors and a list of operators::

      model = build_model(
          tensors=[("x", [2, 3], "FLOAT32"), ("b", [2], "INT32", np.array([1, 1])), ...],
          ops=[("STRIDED_SLICE", [0, 1, 2, 3], [4], "StridedSliceOptions", {"offset": True})],
          inputs=[0], outputs=[4])

  A tensor is ``(name, shape, type_name, data_or_None, quantization_or_None, extra_fields_or_None)``
  (trailing items optional). ``quantization`` is a dict of ``QuantizationParameters`` fields
  (``{"scale": [0.1], "zero_point": [0]}``); ``extra_fields`` sets any other ``Tensor`` field
  (``{"shape_signature": [-1, 3]}``, ``{"is_variable": True}``). An operator is ``(op, inputs, outputs,
  options_table, options, custom_options, version)`` (trailing items optional) or a dict with those
  keys: ``op`` is a builtin name or ``"CUSTOM:<code>"``; ``options_table`` may be ``None`` to infer it
  from the op name (``STRIDED_SLICE`` -> ``StridedSliceOptions``); enum-valued options take names
  (``"RELU6"``) or numbers. Tables that belong to ``BuiltinOptions2`` go to ``builtin_options_2``.

* :func:`decode_model` / :func:`encode_model` / :func:`patch_model` — turn a converted model into a
  mutable dict tree, change anything, and write it back (e.g. flip one option on a converter output).

* :func:`write_table` — the generic schema-driven table writer behind both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers import number_types as N

from tflite_inverter.model.flatbuf import ByteSpan, FlatbufferDecoder, UnionValue
from tflite_inverter.model.reader import numpy_dtype
from tflite_inverter.model.schema import Schema, TableDef, TypeRef, builtin_operator_codes, bundled_schema

_FLAGS = {
    "bool": N.BoolFlags, "byte": N.Int8Flags, "int8": N.Int8Flags, "ubyte": N.Uint8Flags, "uint8": N.Uint8Flags,
    "short": N.Int16Flags, "int16": N.Int16Flags, "ushort": N.Uint16Flags, "uint16": N.Uint16Flags,
    "int": N.Int32Flags, "int32": N.Int32Flags, "uint": N.Uint32Flags, "uint32": N.Uint32Flags,
    "float": N.Float32Flags, "float32": N.Float32Flags, "long": N.Int64Flags, "int64": N.Int64Flags,
    "ulong": N.Uint64Flags, "uint64": N.Uint64Flags, "double": N.Float64Flags, "float64": N.Float64Flags,
}
_NP = {
    "bool": "?", "byte": "i1", "int8": "i1", "ubyte": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "long": "<i8", "int64": "<i8", "ulong": "<u8", "uint64": "<u8",
    "double": "<f8", "float64": "<f8",
}
#: Alignment of byte vectors (weight buffers carry ``force_align: 16`` in the schema).
BYTE_ALIGN = 16


# -- generic writer -------------------------------------------------------------------------------
def _scalar_name(schema: Schema, tr: TypeRef) -> str:
    return schema.enums[tr.name].base if tr.kind == "enum" else tr.name


def _scalar_value(schema: Schema, tr: TypeRef, v: Any, where: str) -> Any:
    """A Python number for scalar/enum type ``tr`` (enum values may be given by name)."""
    if tr.kind == "enum" and isinstance(v, str):
        values = schema.enums[tr.name].values
        if v not in values:
            raise ValueError(f"{where}: {v!r} is not a value of enum {tr.name} ({sorted(values)})")
        v = values[v]
    name = _scalar_name(schema, tr)
    if name == "bool":
        return bool(v)
    if name in ("float", "float32", "double", "float64"):
        return float(v)
    return int(v)


def _union_member(schema: Schema, union: str, v: Any, where: str) -> tuple[int, str, dict[str, Any]]:
    """A union value given as :class:`UnionValue` or ``(table_name, fields)`` -> (index, table, fields)."""
    if isinstance(v, UnionValue):
        if v.type_name is None:
            raise ValueError(f"{where}: union member {v.type_index} is unknown to the bundled schema")
        name, fields = v.type_name, v.value or {}
    else:
        name, fields = v
    members = schema.unions[union].members
    if name not in members:
        raise ValueError(f"{where}: {name!r} is not a member of union {union}")
    return members.index(name) + 1, name, dict(fields or {})


def _byte_data(v: Any, source: Any) -> bytes:
    if isinstance(v, ByteSpan):
        if source is None:
            raise ValueError("a ByteSpan needs the source buffer it points into")
        return bytes(source[v.offset:v.offset + v.length])
    if isinstance(v, np.ndarray):
        return v.tobytes()
    return bytes(v)


def _write_bytes(b: flatbuffers.Builder, data: bytes) -> int:
    """A ``[ubyte]`` vector whose data starts on a :data:`BYTE_ALIGN` boundary."""
    b.StartVector(1, len(data), BYTE_ALIGN)
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    return b.EndVector()


def _write_vector(b: flatbuffers.Builder, schema: Schema, elem: TypeRef, v: Any, where: str,
                  source: Any) -> int:
    if elem.kind in ("scalar", "enum"):
        scalar = _scalar_name(schema, elem)
        if scalar in ("ubyte", "uint8") and not isinstance(v, (list, tuple)):
            return _write_bytes(b, _byte_data(v, source))
        vals = [_scalar_value(schema, elem, x, where) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
        return b.CreateNumpyVector(np.asarray(vals, dtype=_NP[scalar]).reshape(-1))
    if elem.kind == "string":
        offs = [b.CreateString(s) for s in v]
    elif elem.kind == "table":
        offs = [write_table(b, elem.name, x, schema, f"{where}[{i}]", source) for i, x in enumerate(v)]
    else:
        raise ValueError(f"{where}: vectors of {elem.kind} are not supported")
    b.StartVector(4, len(offs), 4)
    for off in reversed(offs):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def write_table(b: flatbuffers.Builder, table: str, values: dict[str, Any], schema: Schema | None = None,
                where: str = "", source: Any = None) -> int:
    """Write ``values`` (field name -> value) as schema table ``table``; returns its offset.

    Scalars and enums (names or numbers), strings, vectors (lists/numpy; ``[ubyte]`` from bytes,
    numpy or :class:`ByteSpan` into ``source``), nested tables (dicts) and unions (``(table, dict)``
    or :class:`UnionValue`) are supported. ``None`` values are left out (the schema default applies).
    """
    schema = schema or bundled_schema()
    tdef: TableDef = schema.tables[table]
    where = where or table
    unknown = set(values) - set(tdef.by_name)
    if unknown:
        raise ValueError(f"{where}: {table} has no field(s) {sorted(unknown)}")
    if tdef.is_struct:
        raise ValueError(f"{where}: structs are not supported")
    # Offsets (strings, vectors, tables, union values) must be written before the table starts.
    offsets: dict[str, Any] = {}
    for f in tdef.fields:
        v = values.get(f.name)
        if v is None:
            continue
        fw = f"{where}.{f.name}"
        kind = f.type.kind
        if kind == "string":
            offsets[f.name] = b.CreateString(v)
        elif kind == "vector":
            offsets[f.name] = _write_vector(b, schema, f.type.element, v, fw, source)
        elif kind == "table":
            offsets[f.name] = write_table(b, f.type.name, v, schema, fw, source)
        elif kind == "union":
            idx, member, fields = _union_member(schema, f.type.name, v, fw)
            offsets[f.name] = (idx, write_table(b, member, fields, schema, fw, source))
    nslots = max((f.slot + (2 if f.type.kind == "union" else 1) for f in tdef.fields), default=0)
    b.StartObject(nslots)
    for f in tdef.fields:
        v = values.get(f.name)
        if v is None:
            continue
        kind = f.type.kind
        if kind in ("scalar", "enum"):
            x = _scalar_value(schema, f.type, v, f"{where}.{f.name}")
            b.PrependSlot(_FLAGS[_scalar_name(schema, f.type)], f.slot, x, None)
        elif kind == "union":
            idx, off = offsets[f.name]
            b.PrependUint8Slot(f.slot, idx, None)
            b.PrependUOffsetTRelativeSlot(f.slot + 1, off, 0)
        else:
            b.PrependUOffsetTRelativeSlot(f.slot, offsets[f.name], 0)
    return b.EndObject()


def encode_model(tree: dict[str, Any], source: Any = None) -> bytes:
    """A ``Model`` dict tree (as :func:`decode_model` returns, or hand-written) -> flatbuffer bytes."""
    schema = bundled_schema()
    b = flatbuffers.Builder(1024)
    root = write_table(b, schema.root_type, tree, schema, "Model", source)
    b.Finish(root, file_identifier=schema.file_identifier.encode())
    return bytes(b.Output())


def _mutable(v: Any, source: Any) -> Any:
    if isinstance(v, dict):
        return {k: _mutable(x, source) for k, x in v.items()}
    if isinstance(v, list):
        return [_mutable(x, source) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, ByteSpan):
        return bytes(source[v.offset:v.offset + v.length])
    if isinstance(v, UnionValue):
        return None if v.type_name is None else (v.type_name, _mutable(v.value or {}, source))
    return v


def decode_model(model: bytes) -> dict[str, Any]:
    """Model bytes -> a plain mutable dict tree (unions as ``(table, dict)``, byte vectors as bytes)."""
    return _mutable(FlatbufferDecoder(model, bundled_schema()).root(), model)


def patch_model(model: bytes, fn: Callable[[dict[str, Any]], Any]) -> bytes:
    """Decode ``model``, let ``fn`` mutate the tree in place, and encode the result."""
    tree = decode_model(model)
    fn(tree)
    return encode_model(tree)


def op_name_of(tree: dict[str, Any], op: dict[str, Any]) -> str:
    """The builtin name (or ``CUSTOM:<code>``) of operator dict ``op`` in a decoded ``tree``."""
    oc = tree["operator_codes"][op.get("opcode_index") or 0]
    code = max(int(oc.get("builtin_code") or 0), int(oc.get("deprecated_builtin_code") or 0))
    name = bundled_schema().enums["BuiltinOperator"].names[code]
    return f"CUSTOM:{oc.get('custom_code')}" if name == "CUSTOM" else name


def set_op_options(model: bytes, op: str, **changes: Any) -> bytes:
    """Set builtin option fields on every ``op`` operator of ``model`` (the options table must exist
    or be inferable from the op name). Raises if the model has no such operator."""
    seen = []

    def fn(tree: dict[str, Any]) -> None:
        for sg in tree.get("subgraphs") or []:
            for o in sg.get("operators") or []:
                if op_name_of(tree, o) != op:
                    continue
                table = options_table_for(op)
                key = _options_field(table)
                current = o.get(key)
                fields = dict(current[1]) if current else {}
                fields.update(changes)
                o[key] = (table if not current else current[0], fields)
                seen.append(o)

    out = patch_model(model, fn)
    if not seen:
        raise ValueError(f"the model has no {op} operator")
    return out


# -- building models from scratch ------------------------------------------------------------------
def options_table_for(op: str) -> str:
    """The options table of builtin ``op``, inferred from its name (``STRIDED_SLICE`` ->
    ``StridedSliceOptions``); pass the table explicitly where the naming differs."""
    schema = bundled_schema()
    want = op.replace("_", "").lower() + "options"
    for union in ("BuiltinOptions", "BuiltinOptions2"):
        for m in schema.unions[union].members:
            if m.lower() == want:
                return m
    raise ValueError(f"cannot infer the options table of {op}; pass it explicitly")


def _options_field(table: str) -> str:
    unions = bundled_schema().unions
    if table in unions["BuiltinOptions"].members:
        return "builtin_options"
    if table in unions["BuiltinOptions2"].members:
        return "builtin_options_2"
    raise ValueError(f"{table} is not a member of BuiltinOptions or BuiltinOptions2")


def _op_fields(entry: Any) -> dict[str, Any]:
    keys = ("op", "inputs", "outputs", "options_table", "options", "custom_options", "version")
    if isinstance(entry, dict):
        unknown = set(entry) - set(keys)
        if unknown:
            raise ValueError(f"operator entry has unknown key(s) {sorted(unknown)}")
        return dict(entry)
    if not 3 <= len(entry) <= len(keys):
        raise ValueError(f"operator entry {entry!r} must have 3 to {len(keys)} items")
    return dict(zip(keys, entry))


def _tensor_fields(entry: Any) -> dict[str, Any]:
    keys = ("name", "shape", "type", "data", "quantization", "extra")
    if isinstance(entry, dict):
        return dict(entry)
    if not 3 <= len(entry) <= len(keys):
        raise ValueError(f"tensor entry {entry!r} must have 3 to {len(keys)} items")
    return dict(zip(keys, entry))


def _tensor_bytes(data: Any, type_name: str) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    return np.ascontiguousarray(np.asarray(data, dtype=numpy_dtype(type_name))).tobytes()


def subgraph(tensors: Sequence[Any], ops: Sequence[Any], inputs: Sequence[int], outputs: Sequence[int],
             name: str = "") -> dict[str, Any]:
    """A subgraph description for :func:`build_model`'s ``subgraphs`` argument."""
    return {"tensors": list(tensors), "ops": list(ops), "inputs": list(inputs), "outputs": list(outputs),
            "name": name}


def build_model(ops: Sequence[Any] = (), tensors: Sequence[Any] = (), inputs: Sequence[int] = (),
                outputs: Sequence[int] = (), *, subgraphs: Sequence[dict[str, Any]] = (),
                signature_defs: Sequence[dict[str, Any]] | None = None, description: str = "tflite_builder",
                version: int = 3) -> bytes:
    """A complete TFLite model: subgraph 0 from ``tensors``/``ops``/``inputs``/``outputs``, then any
    further ``subgraphs`` (from :func:`subgraph`, for control flow bodies).

    Every constant tensor gets its own buffer (buffer 0 is the empty sentinel). ``signature_defs`` are
    ``SignatureDef`` dicts in schema form (``{"signature_key": ..., "subgraph_index": 0, "inputs":
    [{"name": ..., "tensor_index": ...}], "outputs": [...]}``).
    """
    codes_by_name = builtin_operator_codes()
    buffers: list[dict[str, Any]] = [{}]
    op_codes: list[dict[str, Any]] = []
    code_index: dict[tuple[str, int], int] = {}
    graphs = [subgraph(tensors, ops, inputs, outputs, "main")] + list(subgraphs)
    sg_tables = []
    for gi, g in enumerate(graphs):
        tensor_tables = []
        for entry in g["tensors"]:
            t = _tensor_fields(entry)
            table: dict[str, Any] = {"name": t["name"], "shape": [int(d) for d in t["shape"]], "type": t["type"],
                                     "buffer": 0}
            if t.get("data") is not None:
                buffers.append({"data": _tensor_bytes(t["data"], t["type"])})
                table["buffer"] = len(buffers) - 1
            if t.get("quantization") is not None:
                table["quantization"] = dict(t["quantization"])
            table.update(t.get("extra") or {})
            tensor_tables.append(table)
        op_tables = []
        for oi, entry in enumerate(g["ops"]):
            o = _op_fields(entry)
            name = o["op"]
            version_ = int(o.get("version") or 1)
            key = (name, version_)
            if key not in code_index:
                if name.startswith("CUSTOM:"):
                    oc = {"deprecated_builtin_code": codes_by_name["CUSTOM"], "builtin_code": codes_by_name["CUSTOM"],
                          "custom_code": name[len("CUSTOM:"):], "version": version_}
                else:
                    if name not in codes_by_name:
                        raise ValueError(f"subgraph {gi}, operator {oi}: unknown builtin op {name!r}")
                    code = codes_by_name[name]
                    oc = {"deprecated_builtin_code": min(code, 127), "builtin_code": code, "version": version_}
                code_index[key] = len(op_codes)
                op_codes.append(oc)
            table = {"opcode_index": code_index[key], "inputs": list(o["inputs"]), "outputs": list(o["outputs"])}
            opts = o.get("options")
            otable = o.get("options_table")
            if opts is not None or otable is not None:
                otable = otable or options_table_for(name)
                table[_options_field(otable)] = (otable, dict(opts or {}))
            if o.get("custom_options") is not None:
                table["custom_options"] = bytes(o["custom_options"])
            op_tables.append(table)
        sg_tables.append({"tensors": tensor_tables, "inputs": list(g["inputs"]), "outputs": list(g["outputs"]),
                          "operators": op_tables, "name": g.get("name") or f"subgraph_{gi}"})
    tree: dict[str, Any] = {"version": version, "operator_codes": op_codes, "subgraphs": sg_tables,
                            "description": description, "buffers": buffers}
    if signature_defs:
        tree["signature_defs"] = list(signature_defs)
    return encode_model(tree)


def string_tensor_bytes(items: Sequence[bytes | str]) -> bytes:
    """A constant STRING tensor's buffer in TFLite's layout: the count, count + 1 int32 offsets from
    the buffer start, then the bytes (pass it as a tensor's ``data``)."""
    data = [s.encode() if isinstance(s, str) else bytes(s) for s in items]
    head = 4 * (len(data) + 2)
    offsets = np.cumsum([head] + [len(s) for s in data]).astype("<i4")
    return np.int32(len(data)).astype("<i4").tobytes() + offsets.tobytes() + b"".join(data)


def single_op_model(op: str, ins: Sequence[Any], outs: Sequence[Any], options: dict[str, Any] | None = None,
                    table: str | None = None, subgraphs: Sequence[dict[str, Any]] = ()) -> bytes:
    """A model of one ``op``. ``ins``: ``(shape, type, data_or_None[, quantization])``, inputs
    without data become model inputs; ``outs``: ``(shape, type[, quantization])``; ``subgraphs``:
    further subgraphs (bodies) from :func:`subgraph`."""
    tensors, inputs = [], []
    for k, spec in enumerate(ins):
        shape, ttype, data = spec[:3]
        tensors.append((f"in{k}", shape, ttype, data, spec[3] if len(spec) > 3 else None))
        if data is None:
            inputs.append(k)
    outputs = []
    for k, spec in enumerate(outs):
        tensors.append((f"out{k}", spec[0], spec[1], None, spec[2] if len(spec) > 2 else None))
        outputs.append(len(tensors) - 1)
    return build_model(tensors=tensors, ops=[(op, list(range(len(ins))), outputs, table, options)],
                       inputs=inputs, outputs=outputs, subgraphs=subgraphs)
