"""Untrusted input: every bad file ends in InvalidModelError (or ModelFileError for path problems).

Each case must either raise one of those two errors or parse into a model whose constants and custom
options can be read, within 2 s and without a big allocation. Hangs are cut by an alarm and reported
as failures; other exception types are reported with the case's reproducer (file, byte offsets, values).
"""

from __future__ import annotations

import importlib
import signal
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest

from tflite_inverter import InvalidModelError, ModelFileError, read_model
from tflite_inverter.model import ir, reader

from .conftest import corpus_files, sample_files

MAX_SECONDS = 2.0
MAX_PEAK_BYTES = 50 * 2**20
HANG_SECONDS = 20  # an alarm stops a runaway case long before pytest would


# -- running one case ------------------------------------------------------------------------------


class Hang(Exception):
    pass


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _exercise(model: ir.Model) -> None:
    """Touch what a parsed model promises to deliver: every constant, custom option and metadata."""
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_constant:
                t.data()
        for op in sg.operators:
            _ = op.custom_options
            _ = op.flex_options
    for name, _ in model.metadata:
        model.metadata_bytes(name)


@dataclass
class Outcome:
    label: str
    result: str  # "parsed", "invalid", "file-error" or "BUG: <type>"
    seconds: float
    peak: int
    message: str = ""
    trace: str = ""


def run_case(label: str, source: Any, hang_seconds: float = HANG_SECONDS) -> Outcome:
    """Read ``source`` (bytes or a path) the way a user would; classify what happened."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    try:
        with _alarm(hang_seconds):
            _exercise(read_model(source))
        result, message, trace = "parsed", "", ""
    except InvalidModelError as exc:
        result, message, trace = "invalid", str(exc), ""
    except ModelFileError as exc:
        result, message, trace = "file-error", str(exc), ""
    except BaseException as exc:  # noqa: BLE001 - anything else is the bug this file hunts
        if isinstance(exc, KeyboardInterrupt):
            raise
        result, message, trace = f"BUG: {type(exc).__name__}", str(exc)[:300], traceback.format_exc(limit=-6)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - base
    return Outcome(label, result, seconds, peak, message, trace)


@pytest.fixture(autouse=True, scope="module")
def _traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def problems(outcomes: list[Outcome], allowed: tuple[str, ...] = ("parsed", "invalid")) -> list[str]:
    out = []
    for o in outcomes:
        if o.result not in allowed:
            out.append(f"{o.label}: {o.result}: {o.message}\n{o.trace}")
        elif o.seconds >= MAX_SECONDS:
            out.append(f"{o.label}: took {o.seconds:.2f} s")
        elif o.peak >= MAX_PEAK_BYTES:
            out.append(f"{o.label}: allocated {o.peak / 2**20:.1f} MB")
    return out


def _summary(capsys: pytest.CaptureFixture[str], what: str, outcomes: list[Outcome]) -> None:
    with capsys.disabled():
        counts = Counter(o.result for o in outcomes)
        slowest = max(outcomes, key=lambda o: o.seconds)
        print(f"\n[{what}] {len(outcomes)} cases: {dict(counts)}; slowest {slowest.seconds * 1000:.1f} ms "
              f"({slowest.label}); peak {max(o.peak for o in outcomes) / 2**20:.2f} MB")


# -- truncation and random byte flips over the sample models ---------------------------------------


def truncation_points(n: int) -> list[int]:
    return sorted({0, 4, 8, *(n * k // 17 for k in range(1, 17))} - {n})


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_truncated_sample_is_rejected_or_parsed(path: Path, capsys):
    data = path.read_bytes()
    points = truncation_points(len(data))
    assert len(points) == 19
    outcomes = [run_case(f"{path.name}[:{k}]", data[:k]) for k in points]
    _summary(capsys, f"truncated {path.name}", outcomes)
    assert problems(outcomes) == []
    # The cut-off root table or its vectors cannot be read: almost every truncation is rejected.
    assert sum(o.result == "invalid" for o in outcomes) >= 17
    for o in outcomes[:3]:  # 0, 4, 8 bytes
        assert o.result == "invalid"
    assert "8" in outcomes[0].message  # "file is 0 bytes; a TFLite flatbuffer has at least 8"


def _structure_bytes(data: bytes) -> np.ndarray:
    """Offsets outside any constant's data: flips there hit tables, vtables, offsets and vectors."""
    keep = np.ones(len(data), bool)
    for b in read_model(data).buffers:
        keep[b.offset:b.offset + b.size] = False
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class Flip:
    name: str
    positions: tuple[int, ...]
    xors: tuple[int, ...]

    def apply(self, data: bytes) -> bytes:
        buf = bytearray(data)
        for p, x in zip(self.positions, self.xors, strict=True):
            buf[p] ^= x
        return bytes(buf)

    @property
    def label(self) -> str:
        return f"{self.name} with bytes " + ", ".join(f"[{p}]^=0x{x:02x}" for p, x in zip(self.positions, self.xors,
                                                                                        strict=True))


def flip_cases(files: list[Path], count: int, seed: int) -> list[Flip]:
    """``count`` seeded cases, each flipping 1-8 bytes; 3 in 4 aim at the flatbuffer structure."""
    rng = np.random.default_rng(seed)
    blobs = {p.name: p.read_bytes() for p in files}
    structure = {name: _structure_bytes(b) for name, b in blobs.items()}
    names = sorted(blobs)
    cases = []
    for _ in range(count):
        name = names[int(rng.integers(len(names)))]
        k = int(rng.integers(1, 9))
        pool = structure[name] if rng.random() < 0.75 else np.arange(len(blobs[name]))
        positions = tuple(int(p) for p in rng.choice(pool, size=min(k, pool.size), replace=False))
        xors = tuple(int(x) for x in rng.integers(1, 256, size=len(positions)))
        cases.append(Flip(name, positions, xors))
    return cases


def test_random_byte_flips_are_rejected_or_parsed(capsys):
    files = sample_files()
    assert len(files) == 9, "run `make models` to build models/"
    cases = flip_cases(files, 300, 1234)
    blobs = {p.name: p.read_bytes() for p in files}
    outcomes = [run_case(c.label, c.apply(blobs[c.name])) for c in cases]
    _summary(capsys, "byte flips over the samples", outcomes)
    assert problems(outcomes) == []
    # the flips reach the checks: a good share of the cases is rejected, each with a located message
    rejected = [o for o in outcomes if o.result == "invalid"]
    assert len(rejected) >= 60
    assert all(o.message for o in rejected)


@pytest.mark.corpus
def test_random_byte_flips_over_small_corpus_files_are_rejected_or_parsed(capsys):
    """Corpus files bring what the samples lack: custom ops with FlexBuffer options, sparsity, strings."""
    small = [p for p in corpus_files() if p.stat().st_size <= 16_384]
    if not small:
        pytest.skip("no corpus files")
    blobs = {p.name: p.read_bytes() for p in small}
    cases = flip_cases(small, 200, 4321)
    outcomes = [run_case(c.label, c.apply(blobs[c.name])) for c in cases]
    _summary(capsys, "byte flips over small corpus files", outcomes)
    assert problems(outcomes) == []


# -- hand-built flatbuffers ------------------------------------------------------------------------


def _fb(module: str) -> Any:
    return importlib.import_module(f"tflite.{module}")


def _ivec(b: flatbuffers.Builder, values: list[int]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=np.int32))


ADD, WHILE, FLOAT32 = 0, 119, 0


def build_model(subgraphs: list[dict[str, Any]], opcodes: tuple[int, ...] = (ADD,),
                buffers: tuple[bytes, ...] = (b"",), identifier: bytes = b"TFL3") -> bytes:
    """A TFLite flatbuffer written table by table with the ``tflite`` package's builder functions.

    ``subgraphs``: dicts with ``tensors`` (dicts: shape, buffer, type, signature), ``inputs``, ``outputs`` and
    ``operators`` (dicts: opcode, inputs, outputs, optionally ``while``: (cond, body)).
    """
    T, SG, OP, OC, M, BUF, WO = (_fb(n) for n in ("Tensor", "SubGraph", "Operator", "OperatorCode", "Model",
                                                  "Buffer", "WhileOptions"))
    b = flatbuffers.Builder(1024)
    buf_offs = []
    for data in buffers:
        vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
        BUF.BufferStart(b)
        if vec is not None:
            BUF.BufferAddData(b, vec)
        buf_offs.append(BUF.BufferEnd(b))
    code_offs = []
    for code in opcodes:
        OC.OperatorCodeStart(b)
        OC.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        OC.OperatorCodeAddBuiltinCode(b, code)
        OC.OperatorCodeAddVersion(b, 1)
        code_offs.append(OC.OperatorCodeEnd(b))
    sg_offs = []
    for si, sg in enumerate(subgraphs):
        t_offs = []
        for ti, t in enumerate(sg["tensors"]):
            name = b.CreateString(f"t{si}_{ti}")
            shape = _ivec(b, t.get("shape", [1]))
            signature = _ivec(b, t["signature"]) if "signature" in t else None
            T.TensorStart(b)
            T.TensorAddShape(b, shape)
            if signature is not None:
                T.TensorAddShapeSignature(b, signature)
            T.TensorAddType(b, t.get("type", FLOAT32))
            T.TensorAddBuffer(b, t.get("buffer", 0))
            T.TensorAddName(b, name)
            t_offs.append(T.TensorEnd(b))
        op_offs = []
        for op in sg.get("operators", []):
            ins, outs = _ivec(b, op["inputs"]), _ivec(b, op["outputs"])
            opts = None
            if "while" in op:
                WO.WhileOptionsStart(b)
                WO.WhileOptionsAddCondSubgraphIndex(b, op["while"][0])
                WO.WhileOptionsAddBodySubgraphIndex(b, op["while"][1])
                opts = WO.WhileOptionsEnd(b)
            OP.OperatorStart(b)
            OP.OperatorAddOpcodeIndex(b, op["opcode"])
            OP.OperatorAddInputs(b, ins)
            OP.OperatorAddOutputs(b, outs)
            if opts is not None:
                OP.OperatorAddBuiltinOptionsType(b, _fb("BuiltinOptions").BuiltinOptions.WhileOptions)
                OP.OperatorAddBuiltinOptions(b, opts)
            op_offs.append(OP.OperatorEnd(b))
        tvec = _table_vector(b, t_offs)
        ovec = _table_vector(b, op_offs)
        ins, outs = _ivec(b, sg["inputs"]), _ivec(b, sg["outputs"])
        SG.SubGraphStart(b)
        SG.SubGraphAddTensors(b, tvec)
        SG.SubGraphAddOperators(b, ovec)
        SG.SubGraphAddInputs(b, ins)
        SG.SubGraphAddOutputs(b, outs)
        sg_offs.append(SG.SubGraphEnd(b))
    codes, sgs, bufs = _table_vector(b, code_offs), _table_vector(b, sg_offs), _table_vector(b, buf_offs)
    desc = b.CreateString("hand-built")
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes)
    M.ModelAddSubgraphs(b, sgs)
    M.ModelAddDescription(b, desc)
    M.ModelAddBuffers(b, bufs)
    b.Finish(M.ModelEnd(b), file_identifier=identifier)
    return bytes(b.Output())


def _table_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def add_graph(**op_overrides: Any) -> dict[str, Any]:
    """One ADD of two float32[2] inputs; keyword arguments replace the operator's fields."""
    op = {"opcode": 0, "inputs": [0, 1], "outputs": [2], **op_overrides}
    return {"tensors": [{"shape": [2]}] * 3, "inputs": [0, 1], "outputs": [2], "operators": [op]}


def while_graphs(cond: int, body: int) -> list[dict[str, Any]]:
    """Subgraph 0 holds a WHILE(cond, body) over one float32 scalar; 1 and 2 are plain ADD graphs."""
    main = {"tensors": [{"shape": []}] * 2, "inputs": [0], "outputs": [1],
            "operators": [{"opcode": 1, "inputs": [0], "outputs": [1], "while": (cond, body)}]}
    return [main, add_graph(), add_graph()]


def expect_invalid(data: bytes, label: str) -> str:
    o = run_case(label, data)
    assert o.result == "invalid", f"{label}: {o.result} {o.message}\n{o.trace}"
    assert o.seconds < MAX_SECONDS and o.peak < MAX_PEAK_BYTES
    return o.message


def test_hand_built_baseline_model_parses():
    m = read_model(build_model([add_graph()], buffers=(b"", b"\0" * 8)))
    assert [op.name for op in m.main.operators] == ["ADD"]
    assert [t.shape for t in m.main.tensors] == [(2,), (2,), (2,)]
    assert m.description == "hand-built" and len(m.buffers) == 2
    wm = read_model(build_model(while_graphs(1, 2), opcodes=(ADD, WHILE)))
    assert wm.main.operators[0].options == {"cond_subgraph_index": 1, "body_subgraph_index": 2}


def test_operator_input_out_of_range_names_subgraph_operator_and_tensor_count():
    msg = expect_invalid(build_model([add_graph(inputs=[0, 7])]), "input index 7 of 3 tensors")
    assert "subgraph 0" in msg and "operator 0" in msg
    assert "tensor 7" in msg and "3 tensors" in msg


def test_operator_output_negative_index_other_than_minus_one_is_rejected():
    msg = expect_invalid(build_model([add_graph(outputs=[-2])]), "output index -2")
    assert "operator 0" in msg and "tensor -2" in msg


def test_opcode_index_out_of_range_is_rejected():
    msg = expect_invalid(build_model([add_graph(opcode=3)]), "op code index 3 of 1")
    assert "op code index 3" in msg and "1 operator codes" in msg and "operator 0" in msg


def test_tensor_referencing_a_missing_buffer_is_rejected():
    graph = add_graph()
    graph["tensors"] = [{"shape": [2]}, {"shape": [2], "buffer": 5}, {"shape": [2]}]
    msg = expect_invalid(build_model([graph], buffers=(b"", b"\0" * 8)), "tensor 1 -> buffer 5 of 2")
    assert "tensor 1" in msg and "buffer 5" in msg and "2 buffers" in msg


def test_while_body_subgraph_out_of_range_is_rejected():
    msg = expect_invalid(build_model(while_graphs(1, 9), opcodes=(ADD, WHILE)), "WHILE body 9 of 3")
    assert "body_subgraph_index" in msg and "subgraph 9" in msg and "3 subgraphs" in msg


def test_while_body_referring_to_its_own_subgraph_is_a_cycle():
    msg = expect_invalid(build_model(while_graphs(1, 0), opcodes=(ADD, WHILE)), "WHILE body = own subgraph")
    assert "cycle" in msg and "0 -> 0" in msg


def test_while_cycle_through_another_subgraph_is_rejected():
    graphs = while_graphs(1, 2)
    graphs[2] = while_graphs(1, 0)[0]  # the body runs a WHILE whose body is subgraph 0 again
    msg = expect_invalid(build_model(graphs, opcodes=(ADD, WHILE)), "WHILE 0 -> 2 -> 0")
    assert "cycle" in msg and "0 -> 2 -> 0" in msg


def test_huge_constant_backed_by_tiny_buffer_is_rejected_without_allocating():
    graph = add_graph()
    graph["tensors"] = [{"shape": [2]}, {"shape": [2**15, 2**15], "buffer": 1}, {"shape": [2]}]
    data = build_model([graph], buffers=(b"", b"\0" * 16))
    o = run_case("2^30-element float32 constant in 16 bytes", data)
    assert o.result == "invalid", o
    assert str(4 * 2**30) in o.message and "holds 16" in o.message
    assert o.seconds < 0.5
    assert o.peak < MAX_PEAK_BYTES


def test_activation_of_2_to_the_40_elements_is_rejected_by_the_element_bound():
    """Activations have no bytes to check against: their declared element count is bounded instead."""
    graph = add_graph()
    graph["tensors"] = [{"shape": [2]}, {"shape": [2]}, {"shape": [0, 2**20, 2**20]}]
    msg = expect_invalid(build_model([graph]), "2^40-element activation")
    assert "subgraph 0, tensor 2" in msg and str(2**40) in msg and str(reader.MAX_ELEMENTS) in msg


def test_shape_signature_disagreeing_with_the_shape_is_rejected():
    """A static signature dimension other than the shape's made rebuilt inputs 2^20 times larger than the
    interpreter's (the signature decides the SavedModel's input spec)."""
    graph = add_graph()
    graph["tensors"] = [{"shape": [1, 2], "signature": [2**20, 2]}, {"shape": [1, 2]}, {"shape": [1, 2]}]
    msg = expect_invalid(build_model([graph]), "signature [2^20, 2] on shape [1, 2]")
    assert "subgraph 0, tensor 0" in msg and "[1048576, 2]" in msg and "[1, 2]" in msg
    graph["tensors"][0] = {"shape": [1, 2], "signature": [-1, 2]}
    assert read_model(build_model([graph])).main.tensors[0].shape_signature == (-1, 2)


def test_a_tensor_of_max_elements_is_accepted():
    graph = add_graph()
    graph["tensors"] = [{"shape": [2]}, {"shape": [2]}, {"shape": [reader.MAX_ELEMENTS]}]
    assert read_model(build_model([graph])).main.tensors[2].shape == (reader.MAX_ELEMENTS,)


def shared_object_model(tensors: int, name_bytes: int, operators: int, op_inputs: int) -> bytes:
    """A small file whose tables all point at ONE big shared object (legal in a flatbuffer).

    ``tensors`` tensor-table offsets all point at one tensor whose name is ``name_bytes`` long;
    ``operators`` operator-table offsets all point at one ADD whose inputs vector has ``op_inputs``
    zeros. A decoder that copies each shared object again per reference does work and allocates memory
    proportional to (references x object size), not to the file size.
    """
    T, SG, OP, OC, M, BUF = (_fb(n) for n in ("Tensor", "SubGraph", "Operator", "OperatorCode", "Model",
                                              "Buffer"))
    b = flatbuffers.Builder(1024)
    BUF.BufferStart(b)
    buf0 = BUF.BufferEnd(b)
    OC.OperatorCodeStart(b)
    OC.OperatorCodeAddBuiltinCode(b, ADD)
    code = OC.OperatorCodeEnd(b)
    name, shape = b.CreateString("n" * name_bytes), _ivec(b, [2])
    T.TensorStart(b)
    T.TensorAddShape(b, shape)
    T.TensorAddName(b, name)
    tensor = T.TensorEnd(b)
    ins, outs = b.CreateNumpyVector(np.zeros(op_inputs, np.int32)), _ivec(b, [2])
    OP.OperatorStart(b)
    OP.OperatorAddOpcodeIndex(b, 0)
    OP.OperatorAddInputs(b, ins)
    OP.OperatorAddOutputs(b, outs)
    op = OP.OperatorEnd(b)
    tvec, ovec = _table_vector(b, [tensor] * max(3, tensors)), _table_vector(b, [op] * operators)
    sin, sout = _ivec(b, [0, 1]), _ivec(b, [2])
    SG.SubGraphStart(b)
    SG.SubGraphAddTensors(b, tvec)
    SG.SubGraphAddOperators(b, ovec)
    SG.SubGraphAddInputs(b, sin)
    SG.SubGraphAddOutputs(b, sout)
    sg = SG.SubGraphEnd(b)
    codes, sgs, bufs = _table_vector(b, [code]), _table_vector(b, [sg]), _table_vector(b, [buf0])
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes)
    M.ModelAddSubgraphs(b, sgs)
    M.ModelAddBuffers(b, bufs)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_shared_object_model_parses_when_small():
    m = read_model(shared_object_model(tensors=4, name_bytes=8, operators=3, op_inputs=2))
    assert len(m.main.tensors) == 4 and all(t.name == "n" * 8 for t in m.main.tensors)
    assert [op.inputs for op in m.main.operators] == [(0, 0)] * 3


def test_tensors_sharing_one_huge_name_do_not_multiply_memory():
    data = shared_object_model(tensors=128, name_bytes=2**20, operators=1, op_inputs=2)
    assert len(data) < 2**20 + 4096
    o = run_case("128 tensors sharing a 1 MB name", data, hang_seconds=5)
    assert o.result in ("parsed", "invalid"), o
    assert o.peak < MAX_PEAK_BYTES, f"{o.peak / 2**20:.0f} MB allocated for a {len(data)}-byte file"
    assert o.seconds < MAX_SECONDS


def test_operators_sharing_one_huge_inputs_vector_stay_fast():
    data = shared_object_model(tensors=3, name_bytes=1, operators=64, op_inputs=2**20)
    assert len(data) < 4 * 2**20 + 4096
    o = run_case("64 ops sharing a 1M-element inputs vector", data, hang_seconds=3)
    assert o.result in ("parsed", "invalid"), o
    assert o.seconds < MAX_SECONDS
    assert o.peak < MAX_PEAK_BYTES


# -- paths and identifiers -------------------------------------------------------------------------


PNG = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + b"\0" * 64


def test_empty_file_is_a_file_error(tmp_path):
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        read_model(p)


def test_directory_is_a_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="directory"):
        read_model(tmp_path)


def test_missing_path_is_a_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        read_model(tmp_path / "nope.tflite")
    with pytest.raises(ModelFileError):
        read_model(str(tmp_path / "nope.tflite"))


@pytest.mark.parametrize("as_file", [True, False], ids=["file", "bytes"])
def test_png_is_rejected_for_its_file_identifier(tmp_path, as_file):
    source: Any = PNG
    if as_file:
        source = tmp_path / "image.tflite"
        source.write_bytes(PNG)
    with pytest.raises(InvalidModelError, match="file identifier"):
        read_model(source)


def test_wrong_identifier_on_an_otherwise_valid_model_is_rejected():
    data = build_model([add_graph()], identifier=b"TFL2")
    msg = expect_invalid(data, "identifier TFL2")
    assert "file identifier" in msg and "TFL2" in msg


def test_path_errors_and_invalid_bytes_are_distinct_error_kinds(tmp_path):
    assert issubclass(ModelFileError, Exception) and not issubclass(ModelFileError, InvalidModelError)
    p = tmp_path / "short.tflite"
    p.write_bytes(b"TFL3")
    o = run_case("4-byte file", p)
    assert o.result == "invalid" and str(p) in o.message



# -- quantization parameters the interpreter's arithmetic cannot use -------------------------------


def _quantized_add(scale: float, zero_point: int, type_name: str = "INT8") -> bytes:
    from .tflite_builder import build_model as build

    q = {"scale": [0.5], "zero_point": [0]}
    bad = {"scale": [scale], "zero_point": [zero_point]}
    return build(tensors=[("a", [2], type_name, None, q), ("b", [2], type_name, None, bad),
                          ("y", [2], type_name, None, q)],
                 ops=[("ADD", [0, 1], [2])], inputs=[0, 1], outputs=[2])


def test_well_formed_quantization_parses():
    t = read_model(_quantized_add(0.25, -3)).main.tensors[1]
    assert float(t.quantization.scale[0]) == 0.25 and int(t.quantization.zero_point[0]) == -3


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), float("-inf"), 0.0, -0.5])
def test_non_finite_or_non_positive_scale_is_rejected_naming_the_tensor(scale):
    # A NaN scale used to reach the rebuild (ValueError: cannot convert float NaN to integer).
    msg = expect_invalid(_quantized_add(scale, 0), f"scale {scale}")
    assert "subgraph 0, tensor 1 ('b')" in msg and "scale 0 is" in msg and "finite and positive" in msg


@pytest.mark.parametrize(("type_name", "zero_point"), [("INT8", 128), ("INT8", -129), ("UINT8", -1),
                                                       ("INT16", 2**15), ("INT32", 2**40)])
def test_zero_point_outside_the_storage_type_is_rejected(type_name, zero_point):
    msg = expect_invalid(_quantized_add(0.5, zero_point, type_name), f"{type_name} zero point {zero_point}")
    assert "subgraph 0, tensor 1 ('b')" in msg and str(zero_point) in msg and type_name in msg
