"""The bundled TFLite schema (``schema.fbs``), parsed at run time.

Why parse the ``.fbs`` instead of relying only on generated code: the schema is the single source of
truth for op codes (codes newer than the ``tflite`` package, e.g. 209 ``STABLEHLO_CASE``, are still
named), for every options table (so no option is silently unknown), and for the table layouts the
reader's bounds-checking decoder walks. No ``flatc`` is needed.

Only the subset of the FlatBuffers IDL that ``schema.fbs`` uses is supported: ``namespace``,
``file_identifier``, ``file_extension``, ``root_type``, ``attribute``, ``enum``, ``union``,
``table`` and ``struct`` declarations, field defaults and ``(deprecated)`` attributes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources

SCALAR_FORMATS: dict[str, tuple[str, int]] = {
    # IDL type -> (struct format, size in bytes)
    "bool": ("?", 1),
    "byte": ("b", 1),
    "int8": ("b", 1),
    "ubyte": ("B", 1),
    "uint8": ("B", 1),
    "short": ("h", 2),
    "int16": ("h", 2),
    "ushort": ("H", 2),
    "uint16": ("H", 2),
    "int": ("i", 4),
    "int32": ("i", 4),
    "uint": ("I", 4),
    "uint32": ("I", 4),
    "float": ("f", 4),
    "float32": ("f", 4),
    "long": ("q", 8),
    "int64": ("q", 8),
    "ulong": ("Q", 8),
    "uint64": ("Q", 8),
    "double": ("d", 8),
    "float64": ("d", 8),
}


class SchemaError(Exception):
    """The bundled schema could not be parsed (a packaging bug, never a user error)."""


@dataclass(frozen=True)
class TypeRef:
    """A field's type. ``kind`` is scalar, enum, string, table, union or vector."""

    kind: str
    name: str  # scalar IDL name, or the enum/table/union name; for vectors the element's name
    element: TypeRef | None = None  # for vectors

    @property
    def scalar(self) -> str:
        return self.name


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: TypeRef
    slot: int  # vtable slot; a union field occupies two (type at slot, value at slot + 1)
    default: object = None
    deprecated: bool = False


@dataclass(frozen=True)
class TableDef:
    name: str
    fields: tuple[FieldDef, ...]
    is_struct: bool = False

    @functools.cached_property
    def by_name(self) -> dict[str, FieldDef]:
        return {f.name: f for f in self.fields}


@dataclass(frozen=True)
class EnumDef:
    name: str
    base: str
    values: dict[str, int]
    names: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnionDef:
    name: str
    members: tuple[str, ...]  # index 0 is NONE; member i (1-based) is members[i - 1]


@dataclass(frozen=True)
class Schema:
    namespace: str
    file_identifier: str
    root_type: str
    enums: dict[str, EnumDef]
    unions: dict[str, UnionDef]
    tables: dict[str, TableDef]

    def enum_name(self, enum: str, value: int) -> str:
        """The name of ``value`` in ``enum``, or ``"<enum>_<value>"`` for a value the schema lacks."""
        e = self.enums[enum]
        return e.names.get(value, f"UNKNOWN_{enum.upper()}_{value}")


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>[-+]?(?:0x[0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>[{}\[\]():;=,])
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[str]:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SchemaError(f"schema.fbs: cannot tokenize near {text[pos:pos + 40]!r}")
        tokens.append(m.group(m.lastgroup))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]):
        self.t = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def next(self) -> str:
        if self.i >= len(self.t):
            raise SchemaError("schema.fbs: unexpected end")
        tok = self.t[self.i]
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        got = self.next()
        if got != tok:
            raise SchemaError(f"schema.fbs: expected {tok!r}, got {got!r} (token {self.i})")

    def attributes(self) -> dict[str, str | None]:
        attrs: dict[str, str | None] = {}
        if self.peek() != "(":
            return attrs
        self.next()
        while self.peek() != ")":
            key = self.next()
            value = None
            if self.peek() == ":":
                self.next()
                value = self.next()
            attrs[key] = value
            if self.peek() == ",":
                self.next()
        self.expect(")")
        return attrs


def _number(tok: str) -> int | float:
    if tok.lower().startswith(("0x", "-0x", "+0x")):
        return int(tok, 16)
    try:
        return int(tok)
    except ValueError:
        return float(tok)


def parse_schema(text: str) -> Schema:
    """Parse FlatBuffers IDL text (the subset ``schema.fbs`` uses) into a :class:`Schema`."""
    p = _Parser(_tokenize(text))
    namespace = file_identifier = root_type = ""
    enums: dict[str, EnumDef] = {}
    unions: dict[str, UnionDef] = {}
    raw_tables: list[tuple[str, bool, list[tuple[str, str, str | None, dict]]]] = []
    while p.peek() is not None:
        kw = p.next()
        if kw in ("namespace", "root_type", "file_extension", "attribute", "include"):
            value = p.next()
            p.expect(";")
            if kw == "namespace":
                namespace = value
            elif kw == "root_type":
                root_type = value
        elif kw == "file_identifier":
            file_identifier = p.next().strip('"')
            p.expect(";")
        elif kw == "enum":
            name = p.next()
            p.expect(":")
            base = p.next()
            p.attributes()
            p.expect("{")
            values: dict[str, int] = {}
            nxt = 0
            while p.peek() != "}":
                vname = p.next()
                if p.peek() == "=":
                    p.next()
                    nxt = int(_number(p.next()))
                p.attributes()
                values[vname] = nxt
                nxt += 1
                if p.peek() == ",":
                    p.next()
            p.expect("}")
            names: dict[int, str] = {}
            for vname, v in values.items():
                names.setdefault(v, vname)
            enums[name] = EnumDef(name, base, values, names)
        elif kw == "union":
            name = p.next()
            p.attributes()
            p.expect("{")
            members: list[str] = []
            while p.peek() != "}":
                members.append(p.next())
                p.attributes()
                if p.peek() == ",":
                    p.next()
            p.expect("}")
            unions[name] = UnionDef(name, tuple(members))
        elif kw in ("table", "struct"):
            name = p.next()
            p.attributes()
            p.expect("{")
            fields: list[tuple[str, str, str | None, dict]] = []
            while p.peek() != "}":
                fname = p.next()
                p.expect(":")
                if p.peek() == "[":
                    p.next()
                    ftype = "[" + p.next() + "]"
                    p.expect("]")
                else:
                    ftype = p.next()
                default = None
                if p.peek() == "=":
                    p.next()
                    default = p.next()
                attrs = p.attributes()
                p.expect(";")
                fields.append((fname, ftype, default, attrs))
            p.expect("}")
            raw_tables.append((name, kw == "struct", fields))
        else:
            raise SchemaError(f"schema.fbs: unexpected token {kw!r}")

    def typeref(tname: str) -> TypeRef:
        if tname.startswith("["):
            inner = typeref(tname[1:-1])
            return TypeRef("vector", inner.name, inner)
        if tname in SCALAR_FORMATS:
            return TypeRef("scalar", tname)
        if tname == "string":
            return TypeRef("string", "string")
        if tname in enums:
            return TypeRef("enum", tname)
        if tname in unions:
            return TypeRef("union", tname)
        return TypeRef("table", tname)

    tables: dict[str, TableDef] = {}
    for name, is_struct, fields in raw_tables:
        defs: list[FieldDef] = []
        slot = 0
        for fname, ftype, default, attrs in fields:
            tr = typeref(ftype)
            value: object = None
            if default is not None:
                if tr.kind == "enum":
                    value = enums[tr.name].values[default] if default in enums[tr.name].values else int(
                        _number(default))
                elif default in ("true", "false"):
                    value = default == "true"
                elif default != "null":
                    value = _number(default)
            elif tr.kind == "scalar":
                value = False if tr.name == "bool" else (0.0 if tr.name in ("float", "double") else 0)
            elif tr.kind == "enum":
                value = 0
            defs.append(FieldDef(fname, tr, slot, value, "deprecated" in attrs))
            slot += 2 if tr.kind == "union" else 1
        tables[name] = TableDef(name, tuple(defs), is_struct)
    for t in tables.values():
        for f in t.fields:
            ref = f.type.element or f.type
            if ref.kind == "table" and ref.name not in tables:
                raise SchemaError(f"schema.fbs: {t.name}.{f.name} refers to unknown type {ref.name}")
    return Schema(namespace, file_identifier, root_type, enums, unions, tables)


@functools.lru_cache(maxsize=1)
def bundled_schema() -> Schema:
    """The schema shipped with the package (identical to the repository's ``schema/schema.fbs``)."""
    text = resources.files("tflite_inverter.model").joinpath("schema.fbs").read_text(encoding="utf-8")
    return parse_schema(text)


@functools.lru_cache(maxsize=1)
def builtin_operator_names() -> dict[int, str]:
    """Op code -> op name, from the schema's ``BuiltinOperator`` enum."""
    return dict(bundled_schema().enums["BuiltinOperator"].names)


@functools.lru_cache(maxsize=1)
def builtin_operator_codes() -> dict[str, int]:
    """Op name -> op code."""
    return dict(bundled_schema().enums["BuiltinOperator"].values)


def op_name(code: int) -> str:
    """Name of a builtin op code; codes the schema lacks are named ``UNKNOWN_BUILTIN_<code>``."""
    return builtin_operator_names().get(code, f"UNKNOWN_BUILTIN_{code}")
