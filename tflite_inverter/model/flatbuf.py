"""A bounds-checked FlatBuffers decoder driven by the parsed schema.

Why our own walker rather than only the generated ``tflite`` classes: the generated Python code trusts
the bytes. An offset that points outside the file raises a bare ``IndexError``/``struct.error``, a
negative offset silently reads from the end, and a hostile vector length can make a loop run for
hours. This module checks every offset and length before it reads (as the C++ ``flatbuffers::Verifier``
does), bounds the recursion depth and the number of objects decoded (so shared sub-objects cannot
blow up the work), and reports each problem as :class:`InvalidModelError` with a path such as
``Model.subgraphs[0].operators[12].inputs``.

Byte vectors (``[ubyte]``: weight buffers, custom options) are returned as :class:`ByteSpan` (offset and
length into the file), never copied. Other scalar vectors are zero-copy numpy views.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidModelError
from .schema import SCALAR_FORMATS, Schema, TableDef, TypeRef

MAX_DEPTH = 64
_NP_DTYPES = {
    "bool": np.dtype("?"),
    "byte": np.dtype("i1"), "int8": np.dtype("i1"),
    "ubyte": np.dtype("u1"), "uint8": np.dtype("u1"),
    "short": np.dtype("<i2"), "int16": np.dtype("<i2"),
    "ushort": np.dtype("<u2"), "uint16": np.dtype("<u2"),
    "int": np.dtype("<i4"), "int32": np.dtype("<i4"),
    "uint": np.dtype("<u4"), "uint32": np.dtype("<u4"),
    "float": np.dtype("<f4"), "float32": np.dtype("<f4"),
    "long": np.dtype("<i8"), "int64": np.dtype("<i8"),
    "ulong": np.dtype("<u8"), "uint64": np.dtype("<u8"),
    "double": np.dtype("<f8"), "float64": np.dtype("<f8"),
}


@dataclass(frozen=True)
class ByteSpan:
    """A run of bytes inside the file: ``length`` bytes starting at ``offset``."""

    offset: int
    length: int


@dataclass(frozen=True)
class UnionValue:
    """A decoded union: the member's table name (``None`` for NONE) and its fields."""

    type_name: str | None
    type_index: int
    value: dict[str, Any] | None


class FlatbufferDecoder:
    """Decodes a whole flatbuffer into nested dicts, validating every read.

    ``max_objects`` bounds the number of tables, vectors and strings decoded. A well-formed file stores
    each object once and every object costs at least 4 bytes, so a budget proportional to the file
    size never trips on real files but stops DAG-shaped hostile files whose shared sub-objects would
    otherwise be decoded again and again.
    """

    def __init__(self, buf: Any, schema: Schema, size: int | None = None):
        self.buf = buf
        self.n = len(buf) if size is None else size
        self.schema = schema
        self.objects = 0
        self.max_objects = self.n // 4 + 1024
        # Bytes of vectors and strings decoded. Each byte of a well-formed file belongs to at most one
        # of them; shared offsets (legal, but rare) are allowed a few-fold before we stop, so a small
        # file whose many offsets point at one huge vector cannot multiply memory or time.
        self.decoded_bytes = 0
        self.max_decoded_bytes = 4 * self.n + (1 << 20)

    # -- primitive reads -------------------------------------------------------------------------
    def _fail(self, path: str, why: str) -> InvalidModelError:
        return InvalidModelError(f"corrupted flatbuffer at {path}: {why}")

    def _read(self, fmt: str, size: int, pos: int, path: str) -> Any:
        if pos < 0 or pos + size > self.n:
            raise self._fail(path, f"reading {size} bytes at offset {pos} runs past the end of the "
                                   f"{self.n}-byte file")
        return struct.unpack_from("<" + fmt, self.buf, pos)[0]

    def _deref(self, pos: int, path: str) -> int:
        """Follow the uoffset stored at ``pos``; the target must lie inside the file."""
        rel = self._read("I", 4, pos, path)
        target = pos + rel
        if target + 4 > self.n:
            raise self._fail(path, f"offset {rel} at byte {pos} points to byte {target}, outside the "
                                   f"{self.n}-byte file")
        return target

    def _count(self, path: str) -> None:
        self.objects += 1
        if self.objects > self.max_objects:
            raise self._fail(path, f"more than {self.max_objects} objects in a {self.n}-byte file "
                                   "(shared or looping offsets)")

    # -- objects --------------------------------------------------------------------------------
    def root(self) -> dict[str, Any]:
        """Decode the root table (after checking size and file identifier)."""
        if self.n < 8:
            raise InvalidModelError(f"file is {self.n} bytes; a TFLite flatbuffer has at least 8")
        ident = bytes(self.buf[4:8])
        want = self.schema.file_identifier.encode()
        if ident != want:
            raise InvalidModelError(
                f"not a TFLite model: file identifier is {ident!r}, expected {want!r} at bytes 4-8")
        return self.table(self._deref(0, "root"), self.schema.tables[self.schema.root_type],
                          self.schema.root_type, 0)

    def table(self, t: int, tdef: TableDef, path: str, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise self._fail(path, f"nesting deeper than {MAX_DEPTH}")
        self._count(path)
        soff = self._read("i", 4, t, path)
        vt = t - soff
        if vt < 0 or vt + 4 > self.n:
            raise self._fail(path, f"vtable offset {soff} of the table at byte {t} points outside the file")
        vt_size = self._read("H", 2, vt, path)
        obj_size = self._read("H", 2, vt + 2, path)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.n:
            raise self._fail(path, f"vtable at byte {vt} declares an impossible size {vt_size}")
        if t + obj_size > self.n:
            raise self._fail(path, f"table at byte {t} declares size {obj_size}, past the end of the file")
        out: dict[str, Any] = {}
        for f in tdef.fields:
            if f.deprecated:
                continue
            fpath = f"{path}.{f.name}"
            if f.type.kind == "union":
                tpos = self._field_pos(t, vt, vt_size, obj_size, f.slot, 1, fpath)
                type_index = 0 if tpos is None else self._read("B", 1, tpos, fpath)
                vpos = self._field_pos(t, vt, vt_size, obj_size, f.slot + 1, 4, fpath)
                out[f.name] = self._union(f.type.name, type_index, vpos, fpath, depth)
                continue
            size = 4 if f.type.kind in ("string", "table", "vector") else SCALAR_FORMATS[
                self._scalar_of(f.type)][1]
            pos = self._field_pos(t, vt, vt_size, obj_size, f.slot, size, fpath)
            if pos is None:
                out[f.name] = f.default
                continue
            out[f.name] = self.value(pos, f.type, fpath, depth)
        return out

    def _field_pos(self, t: int, vt: int, vt_size: int, obj_size: int, slot: int, size: int,
                   path: str) -> int | None:
        entry = 4 + 2 * slot
        if entry + 2 > vt_size:
            return None
        fo = self._read("H", 2, vt + entry, path)
        if fo == 0:
            return None
        if fo + size > obj_size:
            raise self._fail(path, f"field offset {fo} (+{size} bytes) lies outside its {obj_size}-byte table")
        return t + fo

    def _scalar_of(self, tr: TypeRef) -> str:
        if tr.kind == "enum":
            return self.schema.enums[tr.name].base
        return tr.name

    def _union(self, union: str, type_index: int, vpos: int | None, path: str, depth: int) -> UnionValue:
        if type_index == 0 or vpos is None:
            return UnionValue(None, 0, None)
        members = self.schema.unions[union].members
        if type_index > len(members):
            # A newer schema's options; the rebuilder reports it as unsupported, by number.
            return UnionValue(None, type_index, None)
        name = members[type_index - 1]
        target = self._deref(vpos, path)
        return UnionValue(name, type_index, self.table(target, self.schema.tables[name], path, depth + 1))

    def value(self, pos: int, tr: TypeRef, path: str, depth: int) -> Any:
        kind = tr.kind
        if kind in ("scalar", "enum"):
            fmt, size = SCALAR_FORMATS[self._scalar_of(tr)]
            return self._read(fmt, size, pos, path)
        if kind == "table":
            return self.table(self._deref(pos, path), self.schema.tables[tr.name], path, depth + 1)
        if kind == "string":
            return self.string(self._deref(pos, path), path)
        if kind == "vector":
            return self.vector(self._deref(pos, path), tr.element, path, depth)
        raise self._fail(path, f"unsupported field kind {kind}")

    def _vector_header(self, v: int, elem_size: int, path: str) -> tuple[int, int]:
        self._count(path)
        length = self._read("I", 4, v, path)
        end = v + 4 + length * elem_size
        if end > self.n:
            raise self._fail(path, f"vector at byte {v} declares {length} elements of {elem_size} bytes, "
                                   f"ending at byte {end}, past the end of the {self.n}-byte file")
        self.decoded_bytes += length * elem_size
        if self.decoded_bytes > self.max_decoded_bytes:
            raise self._fail(path, f"vectors and strings add up to more than {self.max_decoded_bytes} bytes in a "
                                   f"{self.n}-byte file (many offsets share one large object)")
        return v + 4, length

    def string(self, v: int, path: str) -> str:
        start, length = self._vector_header(v, 1, path)
        try:
            return bytes(self.buf[start:start + length]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail(path, f"string is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None

    def vector(self, v: int, elem: TypeRef, path: str, depth: int) -> Any:
        if elem.kind in ("scalar", "enum"):
            scalar = self._scalar_of(elem)
            dtype = _NP_DTYPES[scalar]
            start, length = self._vector_header(v, dtype.itemsize, path)
            if scalar in ("ubyte", "uint8"):
                return ByteSpan(start, length)
            return np.frombuffer(self.buf, dtype=dtype, count=length, offset=start)
        start, length = self._vector_header(v, 4, path)
        if elem.kind == "string":
            return [self.string(self._deref(start + 4 * i, f"{path}[{i}]"), f"{path}[{i}]")
                    for i in range(length)]
        if elem.kind == "table":
            tdef = self.schema.tables[elem.name]
            return [self.table(self._deref(start + 4 * i, f"{path}[{i}]"), tdef, f"{path}[{i}]", depth + 1)
                    for i in range(length)]
        raise self._fail(path, f"unsupported vector element kind {elem.kind}")


