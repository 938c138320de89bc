"""``quantize`` without data on an already-quantized source: requantize with the source's own ranges.

The round trip must be lossless for an unchanged graph: every constant bit-identical to the source's
(data, scales, zero points), every activation with the source's scale and zero point, outputs within
1 LSB of the source's. Checked here independently of the report ``quantize`` writes: the models are
re-read, their ops paired by data flow, and every intermediate tensor of both models is compared in
the interpreter.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from tests.conftest import CORPUS_DIR, SAMPLE_DIR
from tests.helpers import tf, to_tflite
from tflite_inverter.cli.quantize import add_quantize
from tflite_inverter.errors import InterpreterError, UsageError
from tflite_inverter.model.reader import read_model
from tflite_inverter.quantization.matching import match_graphs
from tflite_inverter.quantization.pipeline import quantize

SAMPLES = ["int8.tflite", "int8_uint8_io.tflite", "per_tensor_int8.tflite"]
RANGE = {"INT8": (-128, 127), "UINT8": (0, 255)}


def _interpreter(blob: bytes, preserve: bool = False):
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():  # preserve_all_tensors "is for debugging": it is, here
        warnings.simplefilter("ignore", UserWarning)
        # the built-in kernels only: a delegate keeps its intermediates to itself
        it = Interpreter(model_content=blob, experimental_preserve_all_tensors=preserve,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def _seeded_inputs(model, n: int, seed: int = 7) -> list[list[np.ndarray]]:
    """Integer inputs uniform over every code (float inputs: uniform over the QUANTIZE's range)."""
    rng = np.random.default_rng(seed)
    sg = model.main
    out = []
    for _ in range(n):
        sample = []
        for ti in sg.inputs:
            t = sg.tensors[ti]
            if t.type_name in RANGE:
                sample.append(rng.integers(*RANGE[t.type_name], size=t.shape, endpoint=True).astype(t.dtype))
            else:
                q = next(sg.tensors[o.outputs[0]].quantization for o in sg.operators
                         if o.name == "QUANTIZE" and o.inputs[0] == ti)
                lo, hi = (float(q.scale[0]) * (v - int(q.zero_point[0])) for v in (-128, 127))
                sample.append(rng.uniform(lo, hi, t.shape).astype(np.float32))
        out.append(sample)
    return out


def _run_all(blob: bytes, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Every tensor of subgraph 0 after one run (the interpreter keeps the intermediates)."""
    it = _interpreter(blob, preserve=True)
    for d, a in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], a)
    it.invoke()
    return {d["index"]: it.get_tensor(d["index"]) for d in it.get_tensor_details()
            if d["index"] is not None and not d["name"].startswith("<")}


def _real(a: np.ndarray, t) -> np.ndarray:
    if t.is_quantized and a.dtype.kind in "iu":
        return float(t.quantization.scale[0]) * (a.astype(np.float64) - int(t.quantization.zero_point[0]))
    return a.astype(np.float64)


def _lsb(t) -> float:
    return float(t.quantization.scale[0]) if t.is_quantized else 0.0


def _input_pairs(src, res) -> list[tuple[int, int]]:
    """(source, result) model inputs: ``quantize`` gives the result the source's interface (the
    same input order and names, the same SignatureDefs), so they pair by name, and a result without
    SignatureDef (as its source) by position."""
    if not res.signatures:
        assert not src.signatures
        assert [res.main.tensors[i].name for i in res.main.inputs] == [src.main.tensors[i].name
                                                                       for i in src.main.inputs]
        return list(zip(src.main.inputs, res.main.inputs))
    names = dict(src.signatures[0].inputs)
    got = dict(res.signatures[0].inputs)
    assert set(got) == set(names), (got, names)
    return [(names[n], got[n]) for n in names]


def _pairs(src, res):
    """The ops of ``res`` paired with the source's by data flow."""
    return match_graphs(src.main, res.main, _input_pairs(src, res))


def _activation_param_mismatches(src, res, match) -> list[str]:
    """Matched ops' outputs whose type, scale or zero point differ from the source's."""
    bad = []
    for s, r in match.pairs:
        for a, b in zip(src.main.operators[s].outputs, res.main.operators[r].outputs):
            ta, tb = src.main.tensors[a], res.main.tensors[b]
            qa, qb = ta.quantization, tb.quantization
            same = ta.type_name == tb.type_name and (
                (qa is None and qb is None) or (qa is not None and qb is not None
                                                and qa.scale.tobytes() == qb.scale.tobytes()
                                                and qa.zero_point.tolist() == qb.zero_point.tolist()))
            if not same:
                bad.append(f"{ta.name}: {ta.type_name} {qa and qa.scale} {qa and qa.zero_point} -> "
                           f"{tb.type_name} {qb and qb.scale} {qb and qb.zero_point}")
    return bad


def _option_mismatches(src, res, match) -> list[str]:
    """Matched ops whose options differ. The converter writes RESHAPE without ReshapeOptions (the
    shape is its constant second input, compared with the weights) where some sources also record
    ``new_shape`` there: not a difference."""
    out = []
    for s, r in match.pairs:
        a, b = src.main.operators[s].options, res.main.operators[r].options
        if src.main.operators[s].name == "RESHAPE":
            a, b = ({k: v for k, v in o.items() if k != "new_shape"} for o in (a, b))
        if a != b:
            out.append(f"{src.main.where(src.main.operators[s])}: {a} -> {b}")
    return out


def _version_mismatches(src, res, match) -> list[str]:
    return [f"{src.main.where(src.main.operators[s])}: version {src.main.operators[s].version} -> "
            f"{res.main.operators[r].version}" for s, r in match.pairs
            if src.main.operators[s].version != res.main.operators[r].version]


def _intermediate_lsb(src_blob: bytes, res_blob: bytes, src, res, match, n: int = 3) -> float:
    """Max difference, in source LSBs, over every matched op output, on ``n`` seeded inputs."""
    worst, compared, varied = 0.0, 0, 0
    order = dict((r, src.main.inputs.index(s)) for s, r in _input_pairs(src, res))
    for sample in _seeded_inputs(src, n):
        a_all, b_all = _run_all(src_blob, sample), _run_all(res_blob, [sample[order[r]] for r in res.main.inputs])
        for s, r in match.pairs:
            for a, b in zip(src.main.operators[s].outputs, res.main.operators[r].outputs):
                ta, tb = src.main.tensors[a], res.main.tensors[b]
                if not ta.is_quantized:
                    continue
                d = np.abs(_real(a_all[a], ta) - _real(b_all[b], tb)).max() / _lsb(ta)
                worst = max(worst, float(d))
                compared += 1
                varied += int(np.ptp(a_all[a].astype(np.float64)) > 0)
    # the comparison saw real data: every op output compared, most of them not constant
    assert compared == n * sum(len(src.main.operators[s].outputs) for s, _ in match.pairs
                               if src.main.tensors[src.main.operators[s].outputs[0]].is_quantized)
    assert varied >= compared // 2, (varied, compared)
    return worst


def _roundtrip(src_path, tmp_path, **kw):
    out = tmp_path / "reuse.tflite"
    rep = tmp_path / "reuse.json"
    r = quantize(str(src_path), str(out), report=str(rep), **kw)
    return r, out, json.loads(rep.read_text())


# -- the repository's quantized samples -----------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLES)
def test_reuse_source_ranges_is_a_lossless_round_trip(name, tmp_path):
    src_path = SAMPLE_DIR / name
    r, out, rep = _roundtrip(src_path, tmp_path)
    src, res = read_model(str(src_path)), read_model(str(out))
    src_blob, res_blob = src_path.read_bytes(), out.read_bytes()

    # the report: source ranges, weights identical, outputs within 1 LSB of the SOURCE
    assert rep["calibration"]["kind"] == "source ranges" and rep["accuracy"]["reference"] == "source"
    assert rep["weights_identical"] is True and r.weights_check["compared"] == r.weights_check["source_constants"]
    (acc,) = r.accuracy
    assert acc["max_lsb"] <= 1 and acc["within_1_lsb"] == 1.0, acc
    assert r.fully_integer and r.graph_match["complete"]
    assert rep["activations_check"]["identical"] is True, rep["activations_check"]

    # same form: I/O types, op set, per-channel iff the source was
    io = lambda m: [m.main.tensors[i].type_name for i in (*m.main.inputs, *m.main.outputs)]  # noqa: E731
    assert io(res) == io(src)
    assert sorted(o.key for o in res.main.operators) == sorted(o.key for o in src.main.operators)
    per_channel = lambda m: any(t.is_quantized and t.quantization.per_channel for t in m.main.tensors)  # noqa: E731
    assert per_channel(res) == per_channel(src)
    assert r.granularity == ("per-channel" if per_channel(src) else "per-tensor")

    # independently of the report: every op paired, same options, same activation parameters
    match = _pairs(src, res)
    assert match.complete and len(match.pairs) == len(src.main.operators), match
    assert _option_mismatches(src, res, match) == []
    assert _version_mismatches(src, res, match) == []
    assert _activation_param_mismatches(src, res, match) == []
    for s, rr in match.pairs:  # every constant bit for bit
        for a, b in zip(src.main.operators[s].inputs, res.main.operators[rr].inputs):
            if a >= 0 and src.main.tensors[a].is_constant:
                ta, tb = src.main.tensors[a], res.main.tensors[b]
                assert ta.raw().tobytes() == tb.raw().tobytes(), ta.name
                assert ta.is_quantized == tb.is_quantized, ta.name
                if ta.is_quantized:
                    assert ta.quantization.scale.tobytes() == tb.quantization.scale.tobytes(), ta.name
                    assert ta.quantization.zero_point.tolist() == tb.quantization.zero_point.tolist(), ta.name

    # ... and every intermediate tensor of the result within 1 LSB of the source's, in the interpreter
    assert _intermediate_lsb(src_blob, res_blob, src, res, match) <= 1.0


def test_legacy_all_uint8_source_stays_uint8(tmp_path):
    """An all-uint8 source (the per-tensor sample rewritten as uint8: weights zero point 128)."""
    from tflite_inverter.quantization.uint8_rewrite import int8_to_uint8

    legacy = tmp_path / "legacy_uint8.tflite"
    legacy.write_bytes(int8_to_uint8((SAMPLE_DIR / "per_tensor_int8.tflite").read_bytes()))
    r, out, rep = _roundtrip(legacy, tmp_path)
    src, res = read_model(str(legacy)), read_model(str(out))
    assert r.dtype == "uint8" and r.granularity == "per-tensor" and r.io == {"input": "uint8", "output": "uint8"}
    assert {t.type_name for t in res.main.tensors} == {"UINT8", "INT32"}
    assert rep["weights_identical"] is True
    match = _pairs(src, res)
    assert match.complete and _activation_param_mismatches(src, res, match) == []
    assert r.accuracy[0]["max_lsb"] <= 1
    assert _intermediate_lsb(legacy.read_bytes(), out.read_bytes(), src, res, match) <= 1.0


def test_per_tensor_int8_source_to_uint8_is_lossless(tmp_path):
    r, out, rep = _roundtrip(SAMPLE_DIR / "per_tensor_int8.tflite", tmp_path, dtype="uint8")
    res = read_model(str(out))
    assert {t.type_name for t in res.main.tensors} == {"UINT8", "INT32"}
    assert r.io == {"input": "uint8", "output": "uint8"}  # the source's int8 I/O in its uint8 form
    check = rep["weights_check"]
    assert check["identical"] is False and check["equivalent"] is True
    assert all("uint8 form" in d["equivalent"] for d in check["differing"])
    assert r.accuracy[0]["max_lsb"] <= 1 and r.accuracy[0]["within_1_lsb"] == 1.0
    assert not r.warnings


def test_float_io_request_wraps_the_same_integer_graph(tmp_path):
    r, out, rep = _roundtrip(SAMPLE_DIR / "int8.tflite", tmp_path, io="float32")
    names = [o.name for o in read_model(str(out)).main.operators]
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE"
    assert rep["weights_identical"] and r.graph_match["extra_result_ops"] and r.graph_match["complete"]
    assert r.accuracy[0]["max_lsb"] <= 1


def test_int8_float_io_source_keeps_float_io(tmp_path):
    """A source with float I/O around int8 kernels (QUANTIZE in, DEQUANTIZE out)."""
    rng = np.random.default_rng(3)
    k = tf.constant(rng.normal(0, 0.3, (3, 3, 2, 4)).astype(np.float32))
    b = tf.constant(rng.normal(0, 0.1, 4).astype(np.float32))
    spec = tf.TensorSpec([1, 8, 8, 2], tf.float32)
    blob = to_tflite(lambda x: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, 1, "SAME"), b)), [spec],
                     "int8_float_io")
    src_path = tmp_path / "fio.tflite"
    src_path.write_bytes(blob)
    src = read_model(blob)
    assert [o.name for o in src.main.operators] == ["QUANTIZE", "CONV_2D", "DEQUANTIZE"]
    r, out, rep = _roundtrip(src_path, tmp_path)
    res = read_model(str(out))
    assert r.io == {"input": "float32", "output": "float32"}
    assert [o.name for o in res.main.operators] == ["QUANTIZE", "CONV_2D", "DEQUANTIZE"]
    assert rep["weights_identical"] is True
    match = _pairs(src, res)
    assert match.complete and _activation_param_mismatches(src, res, match) == []
    (acc,) = r.accuracy
    assert acc["lsb"] is not None and acc["max_lsb"] <= 1 and acc["within_1_lsb"] == 1.0


# -- refusals -------------------------------------------------------------------------------------
def test_int16x8_source_is_refused_naming_the_tensor(tmp_path):
    spec = tf.TensorSpec([1, 4, 4, 2], tf.float32)
    blob = to_tflite(lambda x: tf.nn.relu(x * 2.0 + 1.0), [spec], "int16x8")
    src = read_model(blob)
    int16 = [t.name for t in src.main.tensors if t.type_name == "INT16" and not t.is_constant]
    assert int16
    path = tmp_path / "i16.tflite"
    path.write_bytes(blob)
    with pytest.raises(UsageError, match=r"activation '.*' \(subgraph 0, tensor \d+\) is INT16; .*pass --calib DATA"):
        quantize(str(path), str(tmp_path / "x.tflite"))
    with pytest.raises(UsageError, match="--dtype int16x8 needs calibration data"):
        quantize(str(path), str(tmp_path / "x.tflite"), dtype="int16x8")
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("kw,match", [
    (dict(dtype="uint8"), "has per-channel weights: reusing its ranges keeps them"),
    (dict(granularity="per-tensor"), "has per-channel weights"),
    (dict(target="imx8mp-nnapi"), "has per-channel weights"),
    (dict(samples=4), "--samples applies to --calib data"),
    (dict(mean="0", std="1"), "--mean, --std apply to --calib data"),
])
def test_options_that_need_data_are_refused_without_it(tmp_path, kw, match):
    with pytest.raises(UsageError, match=match):
        quantize(str(SAMPLE_DIR / "int8.tflite"), str(tmp_path / "x.tflite"), **kw)


def test_other_weight_form_is_requantized_by_the_converter_and_reported(tmp_path):
    """--granularity per-channel on a per-tensor source: the activations keep the source's
    ranges, the weights get new per-channel scales, and the report says the weights differ."""
    r, out, rep = _roundtrip(SAMPLE_DIR / "per_tensor_int8.tflite", tmp_path, granularity="per-channel")
    assert "new per-channel scales" in rep["calibration"]["weights"]
    assert rep["weights_identical"] is False and len(rep["weights_check"]["differing"]) == 6
    src, res = read_model(str(SAMPLE_DIR / "per_tensor_int8.tflite")), read_model(str(out))
    assert _activation_param_mismatches(src, res, _pairs(src, res)) == []
    assert r.accuracy[0]["max_lsb"] <= 2  # new weight rounding: small differences, no longer lossless


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_without_calib_reuses_the_source_ranges(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="tflite-inverter")
    add_quantize(p.add_subparsers(dest="command"))
    out = tmp_path / "x.tflite"
    args = p.parse_args(["quantize", str(SAMPLE_DIR / "int8.tflite"), "-o", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "calibration: source ranges" in text and "accuracy vs the SOURCE model" in text
    assert "weights: identical to the source's" in text and "max LSB" in text
    assert "int8 model written to" in text and out.exists()


# -- the real corpus ------------------------------------------------------------------------------
CORPUS = {
    # name: the dtype the round trip must keep. Every one of these holds the full round trip.
    "ai-edge-quantizer-git__conv_fc_mnist_srq_a8w8": "int8",
    "tflite-micro__hello_world_int8": "int8",
    "coral-test_data__mobilenet_v1_0.25_128_quant": "uint8",  # legacy all-uint8
    "coral-test_data__mobilenet_v2_1.0_224_quant": "uint8",  # legacy all-uint8
    "tflite-micro__person_detect": "int8",  # the interpreter refuses the source (see below)
    "nxp-mcuxsdk-examples__cifarnet_quant_int8": "int8",  # float output behind DEQUANTIZE
    "coral-test_data__tf2_mobilenet_v2_1.0_224_ptq": "int8",  # uint8 I/O around int8
    "tflite-micro__micro_speech_quantized": "int8",
    "coral-test_data__mobilenet_quant_v1_224_head_layers": "uint8",  # legacy all-uint8
    "coral-test_data__split_concat": "uint8",  # legacy all-uint8, 5 outputs
    "litert-git__fc_qat": "int8",
    "litert-git__pc_conv": "int8",  # float I/O around int8 kernels
    "nxp-mcuxsdk-examples__ds_cnn_s": "int8",
    # explicit PADs before VALID convolutions: they stay PADs (the rebuilt PadV2 is not folded into the
    # convolution by the converter and comes back as PAD, see converter_fixups)
    "tflite-micro__mobilenet_v2_quantized_1x3x224x224": "int8",
}


def _fix_bias_axes(blob: bytes) -> bytes:
    """person_detect's per-channel biases record quantized_dimension 3 on rank-1 tensors, which the
    interpreter refuses; the same file with 0 there (what our reader reads) can serve as reference."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.convert_bytearray_to_object(bytearray(blob))
    for sg in m.subgraphs:
        for t in sg.tensors:
            if t.quantization is not None and t.quantization.quantizedDimension >= len(t.shape):
                t.quantization.quantizedDimension = 0
    return bytes(fu.convert_object_to_bytearray(m))


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_round_trip(name, tmp_path, record_property):
    path = CORPUS_DIR / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    if name == "tflite-micro__person_detect":  # the interpreter refuses the source: written, exit 7
        with pytest.raises(InterpreterError, match="could not be checked .*outputs_within_1_lsb.*still written") as err:
            _roundtrip(path, tmp_path)
        r, out = err.value.result, tmp_path / "reuse.tflite"
        rep = json.loads((tmp_path / "reuse.json").read_text())
        assert rep["passed"] is False
    else:
        r, out, rep = _roundtrip(path, tmp_path)
    src, res = read_model(str(path)), read_model(str(out))
    assert r.dtype == CORPUS[name]
    assert rep["weights_identical"] is True, rep["weights_check"]
    assert r.fully_integer and r.graph_match["complete"], r.graph_match
    assert rep["activations_check"]["identical"] is True, rep["activations_check"]
    match = _pairs(src, res)
    assert _activation_param_mismatches(src, res, match) == []
    assert _option_mismatches(src, res, match) == []
    assert "PAD)" not in {s.split("(")[-1] for s in r.graph_match["skipped_source_ops"]}
    if r.dtype == "uint8":  # legacy all-uint8: the source's op versions (1), not the converter's int8 ones
        assert _version_mismatches(src, res, match) == [] and r.graph_match["op_versions_restored"] > 0
    src_blob = path.read_bytes()
    if name == "tflite-micro__person_detect":
        assert r.accuracy == [] and "not evaluated" in r.evaluated_on  # the source does not load
        src_blob = _fix_bias_axes(src_blob)
        worst = _intermediate_lsb(src_blob, out.read_bytes(), src, res, match, n=2)
        record_property("max_lsb_all_tensors_vs_fixed_source", worst)
        assert worst <= 1.0
        return
    assert len(r.accuracy) == len(src.main.outputs)
    for acc in r.accuracy:
        record_property(f"max_lsb[{acc['output']}]", acc["max_lsb"])
        record_property(f"within_1_lsb[{acc['output']}]", acc["within_1_lsb"])
        assert acc["max_lsb"] <= 1 and acc["within_1_lsb"] == 1.0, acc
    worst = _intermediate_lsb(src_blob, out.read_bytes(), src, res, match, n=2)  # every op output too
    record_property("max_lsb_all_tensors", worst)
    assert worst <= 1.0


@pytest.mark.corpus
@pytest.mark.parametrize("name,match", [
    # float ops in the middle: the source records no range for their tensors
    ("ai-edge-quantizer-git__partly_quantized_mnist", r"7 op\(s\) compute in float in the source"),
    # int16 LSTM intermediates
    ("coral-test_data__keras_lstm_mnist_ptq", r"activation 'tfl.pseudo_qconst1' \(subgraph 0, tensor \d+\) is INT16"),
])
def test_corpus_sources_without_8bit_ranges_are_refused(name, match, tmp_path):
    path = CORPUS_DIR / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with pytest.raises(UsageError, match=match + ".*pass --calib DATA"):
        quantize(str(path), str(tmp_path / "x.tflite"))


def test_weights_the_converter_transformed_are_not_replaced(tmp_path):
    """The restore step replaces a constant only where the converter's own quantization agrees with
    the source's within half a step of each, and per op all or nothing (a weight's scale and its
    bias's go together). Here the "converted" model is the per-channel sample with its CONV_2D
    filter negated: that op keeps the converter's constants, the others take the source's."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    from tflite_inverter.quantization.matching import compare_constants
    from tflite_inverter.quantization.reuse import _restore_source_weights

    src = read_model(str(SAMPLE_DIR / "per_tensor_int8.tflite"))
    obj = fu.convert_bytearray_to_object(bytearray((SAMPLE_DIR / "int8.tflite").read_bytes()))
    sg = obj.subgraphs[0]
    conv = next(op for op in sg.operators if obj.operatorCodes[op.opcodeIndex].builtinCode == 3)  # CONV_2D
    buf = obj.buffers[sg.tensors[conv.inputs[1]].buffer]
    buf.data = (-np.asarray(buf.data, np.uint8).view(np.int8).astype(np.int16)).clip(-127, 127).astype(
        np.int8).view(np.uint8)
    blob = bytes(fu.convert_object_to_bytearray(obj))
    res = read_model(blob)
    match = _pairs(src, res)
    assert match.complete
    restored, rep = _restore_source_weights(blob, src.main, res, match)
    assert rep["restored"] == 4 and rep["already_identical"] == 0, rep  # DEPTHWISE and FC: filter + bias
    assert len(rep["not_restored"]) == 2, rep
    why = {d["name"]: d["why"] for d in rep["not_restored"]}
    conv_src = next(op for op in src.main.operators if op.name == "CONV_2D")
    w_name, b_name = (src.main.tensors[i].name for i in conv_src.inputs[1:3])
    assert "beyond half a step" in why[w_name] and "the converter transformed it" in why[w_name]
    assert why[b_name].startswith("another input of the op")
    check = compare_constants(src.main, read_model(restored).main, match)
    assert sorted(d["name"] for d in check["differing"]) == sorted([w_name, b_name])
