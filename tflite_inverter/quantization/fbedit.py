"""Editing a .tflite flatbuffer: the one rewriting mechanism of the quantization stages.

Every rewrite of a converted model (true uint8, the source's weights and op versions, the drop-in
interface) goes through TensorFlow's object API (``schema_py_generated`` via ``flatbuffer_utils``):
:func:`unpack` turns the bytes into mutable ``ModelT`` objects that round-trip every field, with
weight buffers as numpy views of the input bytes (no copy until written); :func:`pack` writes them
back. Packing copies each buffer once into the new file, aligned to 16 bytes as the schema's
``Buffer.data (force_align: 16)`` asks (the generated ``BufferT.Pack`` ignores the attribute; the
converter honours it, and some kernels and delegates read weights in place), and appends
``trailer`` after the flatbuffer (where TFLite Support keeps the associated-files zip).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``force_align`` of ``Buffer.data`` in ``schema.fbs``.
BUFFER_ALIGN = 16


def unpack(blob: bytes | bytearray) -> Any:
    """The mutable object tree (``ModelT``) of a .tflite."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    return fu.convert_bytearray_to_object(blob if isinstance(blob, bytearray) else bytearray(blob))


def _aligned_buffer_class() -> type:
    from tensorflow.lite.python import schema_py_generated as fb

    class AlignedBufferT(fb.BufferT):  # type: ignore[misc,name-defined]
        def Pack(self, builder: Any) -> int:  # noqa: N802 - the generated API's name
            data = None
            if self.data is not None:
                arr = np.asarray(self.data, dtype=np.uint8).reshape(-1)
                builder.StartVector(1, arr.size, BUFFER_ALIGN)
                builder.head -= arr.size
                builder.Bytes[builder.head:builder.head + arr.size] = arr.tobytes()
                data = builder.EndVector()
            fb.BufferStart(builder)
            if data is not None:
                fb.BufferAddData(builder, data)
            fb.BufferAddOffset(builder, self.offset)
            fb.BufferAddSize(builder, self.size)
            return fb.BufferEnd(builder)

    return AlignedBufferT


def pack(model: Any, trailer: bytes = b"") -> bytes:
    """The bytes of ``model`` (a ``ModelT``), weight buffers 16-byte aligned, then ``trailer``."""
    import flatbuffers

    cls = _aligned_buffer_class()
    originals = model.buffers
    aligned = []
    for b in originals or []:
        a = cls()
        a.__dict__.update(b.__dict__)
        aligned.append(a)
    model.buffers = aligned if originals is not None else None
    try:
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output()) + bytes(trailer)
    finally:
        model.buffers = originals
