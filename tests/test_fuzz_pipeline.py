"""The pipeline fuzzer's machinery (benchmarks/fuzz_pipeline.py) on a sample model, in-process.

The script runs thousands of CLI subprocesses; here a handful of its seeded mutations of
``models/int8.tflite`` go through the Python API (``convert``, one ``quantize``): every outcome must be
success or one of the project's named errors, never another exception.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from benchmarks.fuzz_pipeline import Outcome, case_rng, classify, load_target, mutate
from tflite_inverter import InverterError, convert, read_model

from .conftest import SAMPLE_DIR

SAMPLE = SAMPLE_DIR / "int8.tflite"
KINDS = ("shape", "quant", "word", "bits", "shape", "quant", "truncate")


@pytest.fixture(scope="module")
def target():
    if not SAMPLE.is_file():
        pytest.skip("run `make models` to build models/")
    return load_target(SAMPLE)


def test_locator_finds_every_tensor_shape_and_quantization_vector(target):
    model = read_model(SAMPLE)
    shaped = [t for t in model.main.tensors if t.shape]
    assert len([v for v in target.shapes if v.path.endswith(".shape")]) == len(shaped)
    assert len(target.scales) == sum(t.is_quantized for t in model.main.tensors)
    assert target.activation_shapes and len(target.activation_shapes) < len(target.shapes)
    for v in target.shapes[:5]:  # the recorded offsets hold the shape entries the reader decodes
        sg, ti = map(int, re.findall(r"\d+", v.path)[:2])
        stored = np.frombuffer(target.data, "<i4", count=v.length, offset=v.start)
        assert tuple(stored) == model.subgraphs[sg].tensors[ti].shape[:v.length] or "signature" in v.path


def test_shape_mutation_sets_a_real_shape_entry(target):
    m = mutate(target, np.random.default_rng(3), "shape")
    path, k, new = re.match(r"(\S+)\[(\d+)\] -?\d+ -> (-?\d+)", m.description).groups()
    v = next(v for v in target.shapes if v.path == path)
    assert int(np.frombuffer(m.data, "<i4", count=1, offset=v.start + 4 * int(k))[0]) == int(new)
    assert m.data != target.data and len(m.data) == len(target.data)


def test_cases_are_reproducible_from_seed_and_number(target):
    a = mutate(target, case_rng(7, "convert", 11))
    b = mutate(target, case_rng(7, "convert", 11))
    c = mutate(target, case_rng(7, "quantize", 11))
    assert a == b and a.data == b.data and c.data != a.data


def test_classify_names_each_outcome():
    assert classify(0, "", False, [])[0] == "clean"
    assert classify(4, "tflite-inverter: error: x.tflite: subgraph 0, tensor 3: bad", False, [])[0] == "clean"
    assert classify(1, "Traceback (most recent call last):\n  File ...\nValueError: boom", False, []) == (
        "traceback", "ValueError: boom")
    assert classify(-11, "", False, [])[0] == "signal"
    assert classify(None, "", True, [])[0] == "hang"
    assert classify(4, "no error line", False, [])[0] == "bad-exit"
    assert classify(0, "", False, ["/tmp/.tflite-inverter-x"])[0] == "temp-litter"
    assert Outcome("c1", "f", "bits", "m", "clean", 0, 1.0).cls == "clean"


def _run(data: bytes, tmp_path, k: int, command: str = "convert") -> str:
    src = tmp_path / f"case{k}.tflite"
    src.write_bytes(data)
    try:
        if command == "convert":
            convert(str(src), str(tmp_path / f"out{k}"))
        else:
            from tflite_inverter.quantization.pipeline import quantize

            quantize(str(src), str(tmp_path / f"q{k}.tflite"), calib="random", samples=4)
        return "ok"
    except InverterError as exc:
        return f"{type(exc).__name__} (exit {exc.exit_code})"


def _pick_cases(target, want_parsed: int, want_rejected: int) -> list:
    """Seeded mutations, most of them ones the reader accepts (so they reach rebuild, TensorFlow and
    verification), a few it rejects."""
    parsed, rejected = [], []
    for seed in range(400):
        m = mutate(target, np.random.default_rng(seed), KINDS[seed % len(KINDS)])
        try:
            read_model(m.data)
            if len(parsed) < want_parsed:
                parsed.append(m)
        except InverterError:
            if len(rejected) < want_rejected:
                rejected.append(m)
        if len(parsed) == want_parsed and len(rejected) == want_rejected:
            break
    return parsed + rejected


def test_seeded_mutations_of_a_sample_end_in_success_or_a_named_error(target, tmp_path, monkeypatch):
    # In this process (one TensorFlow import, not one child per call); the CLI runs of the script
    # exercise the child process.
    monkeypatch.setenv("TFLITE_INVERTER_IN_PROCESS", "1")
    cases = _pick_cases(target, 4, 2)
    assert len(cases) == 6 and len({m.kind for m in cases}) >= 3
    outcomes = [(m.kind, m.description[:80], _run(m.data, tmp_path, k)) for k, m in enumerate(cases)]
    outcomes.append(("quantize " + cases[0].kind, cases[0].description[:80], _run(cases[0].data, tmp_path, 99,
                                                                                  "quantize")))
    # _run lets anything but an InverterError propagate, failing the test with its traceback
    assert sum(o[2] != "ok" for o in outcomes) >= 2, outcomes
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tflite-inverter-") or p.endswith(".tmp")]
