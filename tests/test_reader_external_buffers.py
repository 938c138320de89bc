"""Buffers stored after the flatbuffer (schema 3c ``Buffer.offset/size``, as models over 2 GB are
written) are read correctly: same constants, same interpreter outputs, same rebuild."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_inverter.errors import InvalidModelError
from tflite_inverter.model.reader import read_model

from .conftest import SAMPLE_DIR
from .helpers import run_interpreter, run_rebuilt
from .tflite_builder import decode_model, encode_model


def externalize(model: bytes) -> bytes:
    """Move every non-empty buffer's data behind the flatbuffer, 16-byte aligned."""
    tree = decode_model(model)
    payloads = []
    for b in tree["buffers"]:
        data = b.get("data")
        if data:
            payloads.append((b, bytes(data)))
            b["data"] = None
            b["offset"], b["size"] = 1, len(data)  # placeholders of the final width
    head = encode_model(tree)
    # Offsets are absolute; fill them in and re-encode (the vtable sizes do not change).
    pos = (len(head) + 15) // 16 * 16
    blob = bytearray()
    for b, data in payloads:
        b["offset"] = pos + len(blob)
        blob += data + b"\0" * (-len(data) % 16)
    head = encode_model(tree)
    assert (len(head) + 15) // 16 * 16 == pos
    return head + b"\0" * (pos - len(head)) + bytes(blob)


@pytest.fixture(scope="module")
def models():
    original = (SAMPLE_DIR / "float32.tflite").read_bytes()
    return original, externalize(original)


def test_external_buffers_decode_to_the_same_constants(models):
    original, external = models
    a, b = read_model(original), read_model(external)
    consts_a = {t.name: t.data() for t in a.main.tensors if t.is_constant}
    consts_b = {t.name: t.data() for t in b.main.tensors if t.is_constant}
    assert consts_a.keys() == consts_b.keys() and len(consts_a) >= 4
    assert any(buf.external for buf in b.buffers)
    for name, arr in consts_a.items():
        np.testing.assert_array_equal(consts_b[name], arr)


def test_external_buffers_run_and_rebuild_like_the_original(models):
    original, external = models
    x = [np.random.default_rng(0).uniform(-1, 1, size=(1, 32, 32, 3)).astype(np.float32)]
    ref = run_interpreter(original, x)[0]
    np.testing.assert_array_equal(run_interpreter(external, x)[0], ref)
    np.testing.assert_allclose(run_rebuilt(external, x)[0], ref, atol=1e-5)


def test_external_buffer_past_the_end_is_invalid(models):
    _, external = models
    with pytest.raises(InvalidModelError, match="runs past the end"):
        read_model(external[: len(external) - 64])
