"""Guarded FlexBuffer decoding for custom-op options.

The ``flatbuffers`` runtime's FlexBuffer reader trusts its input; custom options come from an
untrusted file. This walker goes through the runtime's ``Ref`` API with a node budget (a FlexBuffer
can reference one vector many times, so naive recursion can explode) and turns every read error into
"not a FlexBuffer" (``None``): many custom ops (MediaPipe's) store raw C structs instead, and their
rebuilders parse those bytes themselves.
"""

from __future__ import annotations

import struct
from typing import Any

from flatbuffers import flexbuffers

MAX_NODES = 100_000
MAX_DEPTH = 32


class _Budget(Exception):
    pass


def decode_flexbuffer(data: bytes) -> Any:
    """Decode ``data`` as a FlexBuffer into plain Python values, or ``None`` if it is not one."""
    if len(data) < 3:
        return None
    count = [0]

    def walk(ref: Any, depth: int) -> Any:
        count[0] += 1
        if count[0] > MAX_NODES or depth > MAX_DEPTH:
            raise _Budget
        if ref.IsNull:
            return None
        if ref.IsBool:
            return ref.AsBool
        if ref.IsInt:
            return ref.AsInt
        if ref.IsFloat:
            return ref.AsFloat
        if ref.IsKey:
            return ref.AsKey
        if ref.IsString:
            try:
                return ref.AsString
            except UnicodeDecodeError:  # e.g. a serialized NodeDef inside Flex options
                return bytes(ref.AsStringBytes)
        if ref.IsBlob:
            return bytes(ref.AsBlob)
        if ref.IsMap:
            m = ref.AsMap
            keys = m.Keys
            values = m.Values
            return {walk(keys[i], depth + 1): walk(values[i], depth + 1) for i in range(len(keys))}
        if ref.IsTypedVector or ref.IsFixedTypedVector or ref.IsVector:
            vec = ref.AsTypedVector if ref.IsTypedVector else (
                ref.AsFixedTypedVector if ref.IsFixedTypedVector else ref.AsVector)
            if len(vec) > MAX_NODES:
                raise _Budget
            return [walk(vec[i], depth + 1) for i in range(len(vec))]
        raise ValueError("unknown FlexBuffer type")

    try:
        return walk(flexbuffers.GetRoot(bytearray(data)), 0)
    except (_Budget, IndexError, KeyError, ValueError, TypeError, struct.error, UnicodeDecodeError,
            OverflowError, RecursionError, AttributeError):
        return None
