"""The i.MX8MP (VX delegate) placement rules: the JSON data, each generic rule, op constraints, policy.

Most tests build tiny IR graphs by hand (no TensorFlow, no converter quirks) so each rule is exercised
exactly; the corpus tests check real files against known placements.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from tflite_inverter.coverage.quantkind import int8_kernel_table
from tflite_inverter.coverage.targets import available, get_target, imx8mp
from tflite_inverter.coverage.targets.imx8mp import (
    CHECKS,
    PREDICATES,
    RULES_FILE,
    VxDelegateRules,
    partitions,
)
from tflite_inverter.errors import UsageError
from tflite_inverter.model import ir
from tflite_inverter.model.reader import numpy_dtype, read_model
from tflite_inverter.model.schema import builtin_operator_codes

from .conftest import corpus_file

# -- a tiny hand-made IR builder ------------------------------------------------------------------


def T(i: int, type_name: str, shape: tuple[int, ...] | list[int], const: bool = False,
      scale: list[float] | None = None, zp: list[int] | None = None, qdim: int = 0,
      variable: bool = False) -> ir.Tensor:
    q = None
    if scale is not None:
        q = ir.Quantization(np.asarray(scale, np.float32), np.asarray(zp or [0] * len(scale), np.int64), qdim)
    span = ir.Buffer(i + 1, 0, 4, False) if const else None
    return ir.Tensor(index=i, name=f"t{i}", shape=tuple(shape), shape_signature=tuple(shape),
                     type_name=type_name, dtype=numpy_dtype(type_name), buffer=i + 1 if const else 0,
                     is_variable=variable, quantization=q, _span=span)


def Op(i: int, name: str, ins: list[int], outs: list[int], custom: str | None = None, **options) -> ir.Operator:
    return ir.Operator(index=i, opcode_index=0, name=name, version=1, inputs=tuple(ins), outputs=tuple(outs),
                       custom_code=custom, options=options)


def M(tensors: list[ir.Tensor], ops: list[ir.Operator]) -> ir.Model:
    sg = ir.Subgraph(0, "main", tuple(tensors), (0,), (len(tensors) - 1,), tuple(ops))
    return ir.Model(version=3, description="", subgraphs=(sg,), signatures=(), buffers=(), metadata=(),
                    size=0, path="/somewhere/hand.tflite")


Q8 = {"scale": [0.1], "zp": [0]}


def place(model: ir.Model, rules: VxDelegateRules | None = None) -> list[dict]:
    target = rules or imx8mp.load()
    return target.predict(model)["subgraphs"][0]["ops"]


def one(tensors: list[ir.Tensor], op: ir.Operator) -> dict:
    return place(M(tensors, [op]))[0]


def rules_of(row: dict) -> list[str]:
    return [r["rule"] for r in row["reasons"]]


def text_of(row: dict) -> str:
    return " | ".join(r["message"] for r in row["reasons"])


# -- the data -------------------------------------------------------------------------------------


def test_rules_json_names_its_source_and_every_op_code_matches_the_schema():
    rules = json.loads(RULES_FILE.read_text())
    src = rules["source"]
    assert src["bsp"] == "lf-6.6.3_1.0.0"
    assert src["repos"]["N"]["commit"] == "44aab8a50b37d55399771a2cad3fe017d3b5cdd3"
    assert src["repos"]["V"]["commit"] == "3f4759e07221e6b90bd82989b65febdaaf9ec0ea"
    assert all(re.fullmatch(r"[0-9a-f]{40}", r["commit"]) for r in src["repos"].values())
    codes = builtin_operator_codes()
    assert len(rules["ops"]) == 95  # the reg table of lf-6.1.36 .. lf-6.6.3 (and VSI main)
    wrong = {k: (v["code"], codes.get(k)) for k, v in rules["ops"].items() if codes.get(k) != v["code"]}
    assert wrong == {}
    assert all(v.get("reg", "").startswith(("V:L", "N:L")) for v in rules["ops"].values())


def test_rules_json_generic_tables_refer_to_registered_ops_and_every_check_is_known():
    rules = json.loads(RULES_FILE.read_text())
    ops, g = rules["ops"], rules["generic"]
    named = set(g["G8"]["ops"]) | set(g["G10"]["rank0_output_ops"]) | set(g["G10"]["constant_inputs"]) \
        | set(g["G10"]["dynamic_output_ops"]) | set(g["G3"]["int64_exempt_ops"])
    assert named - set(ops) == set()
    for name, spec in ops.items():
        for c in spec.get("checks", []):
            assert c["type"] in CHECKS, (name, c)
            assert c.get("ref"), (name, c)
            if c["type"] == "predicate":
                assert c["fn"] in PREDICATES, (name, c)
    assert {f"G{i}" for i in range(1, 14)} <= set(g)
    assert g["G3"]["max_input_rank"] == 6 and g["G3"]["max_non_first_dim"] == 65535
    assert set(g["G3"]["reject_input_types"]) == {"INT64", "STRING"}
    assert set(g["G4"]["reject_output_types"]) == {"INT16", "INT64"}
    assert rules["policy"]["float_ops_on_cpu"] is True


def test_unregistered_builtins_from_the_spec_are_absent():
    ops = json.loads(RULES_FILE.read_text())["ops"]
    for name in ("TILE", "COS", "PADV2", "WHILE", "IF", "LOG_SOFTMAX", "TOPK_V2", "CUSTOM", "LSTM", "SVDF"):
        assert name not in ops


def test_validation_rejects_unknown_check_types_and_predicates():
    rules = json.loads(RULES_FILE.read_text())
    bad = copy.deepcopy(rules)
    bad["ops"]["ADD"]["checks"] = [{"type": "no_such_check", "ref": "x"}]
    with pytest.raises(UsageError, match="unknown check type"):
        VxDelegateRules(bad)
    bad = copy.deepcopy(rules)
    bad["ops"]["ADD"]["checks"] = [{"type": "predicate", "fn": "nope", "ref": "x"}]
    with pytest.raises(UsageError, match="unknown predicate"):
        VxDelegateRules(bad)


def test_a_newer_bsp_is_an_edit_of_the_json(tmp_path):
    rules = json.loads(RULES_FILE.read_text())
    tensors = [T(0, "INT8", (1, 4), **Q8), T(1, "INT32", (2,), const=True), T(2, "INT8", (2, 4), **Q8)]
    model = M(tensors, [Op(0, "TILE", [0, 1], [2])])
    assert place(model)[0]["placement"] == "CPU"
    rules["ops"]["TILE"] = {"code": 69, "reg": "V:L9999"}
    rules["source"]["bsp"] = "lf-9.9.9"
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(rules))
    newer = imx8mp.load(path)
    assert newer.describe()["rules"]["bsp"] == "lf-9.9.9"
    assert place(model, newer)[0]["placement"] == "NPU"


def test_target_registry():
    assert "imx8mp" in available()
    assert get_target("imx8mp").name == "imx8mp"
    with pytest.raises(UsageError, match="unknown target"):
        get_target("nosuchnpu")


def test_int8_kernel_table_is_data_of_valid_builtin_names():
    table = int8_kernel_table()
    codes = builtin_operator_codes()
    assert "int8" in table["title"] and table["title"].startswith("TFLite builtin")
    assert set(table["ops"]) - set(codes) == set()
    assert set(table["ops"].values()) <= set(table["evidence"])
    for name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SOFTMAX", "QUANTIZE"):
        assert name in table["ops"]
    for name in ("WHILE", "SIN", "COS", "SQUARE"):
        assert name not in table["ops"]


# -- G11 partitions -------------------------------------------------------------------------------


@pytest.mark.parametrize("seq,expected", [
    ([], 0), (["CPU"], 0), (["NPU"], 1), (["NPU", "NPU"], 1), (["NPU", "CPU", "NPU"], 2),
    (["CPU", "NPU", "NPU", "CPU"], 1), (["NPU", "CPU", "CPU", "NPU", "CPU", "NPU"], 3),
])
def test_partitions_count_contiguous_npu_runs(seq, expected):
    assert partitions(seq) == expected


def test_middle_unsupported_op_splits_the_graph_in_two():
    t = [T(0, "INT8", (1, 4, 4, 2), **Q8), T(1, "INT8", (1, 4, 4, 2), **Q8), T(2, "INT32", (4,), const=True),
         T(3, "INT8", (1, 8, 4, 2), **Q8), T(4, "INT8", (1, 8, 4, 2), **Q8)]
    ops = [Op(0, "RELU", [0], [1]), Op(1, "TILE", [1, 2], [3]), Op(2, "RELU", [3], [4])]
    out = imx8mp.load().predict(M(t, ops))
    assert [o["placement"] for o in out["subgraphs"][0]["ops"]] == ["NPU", "CPU", "NPU"]
    assert out["subgraphs"][0]["partitions"] == 2
    assert out["summary"]["partitions"] == 2 and out["summary"]["cpu_ops_by_type"] == {"TILE": 1}


# -- G1 registration ------------------------------------------------------------------------------


def test_unregistered_builtin_and_custom_ops_go_to_cpu():
    t = [T(0, "INT8", (1, 4), **Q8), T(1, "INT32", (2,), const=True), T(2, "INT8", (2, 4), **Q8)]
    row = one(t, Op(0, "TILE", [0, 1], [2]))
    assert row["placement"] == "CPU" and rules_of(row) == ["G1"] and "not registered" in text_of(row)
    row = one(t[:1] + t[2:], Op(0, "CUSTOM", [0], [1], custom="MyCustomOp"))
    assert row["placement"] == "CPU" and rules_of(row) == ["G1"] and "not registered" in text_of(row)
    row = one(t[:1] + t[2:], Op(0, "CUSTOM", [0], [1], custom="TFLite_Detection_PostProcess"))
    assert row["placement"] == "CPU"
    row = one(t[:1] + t[2:], Op(0, "CUSTOM", [0], [1], custom="WRNN_BIDI_SEQGRU"))
    assert row["placement"] == "CPU" and "always returns false" in text_of(row)
    row = one(t[:1] + t[2:], Op(0, "CUSTOM", [0], [1], custom="vsi-npu"))
    assert row["placement"] == "NPU" and row["reasons"] == []


# -- G3 / G4 --------------------------------------------------------------------------------------


def test_int64_input_goes_to_cpu_with_g3_but_broadcast_to_is_exempt():
    t = [T(0, "INT32", (10,), const=True), T(1, "INT64", (3,)), T(2, "INT32", (3,))]
    row = one(t, Op(0, "GATHER", [0, 1], [2]))
    assert row["placement"] == "CPU" and rules_of(row) == ["G3"]
    assert "INT64" in text_of(row) and row["reasons"][0]["ref"] == "V:L310-314"
    t = [T(0, "INT8", (1, 4), **Q8), T(1, "INT64", (2,), const=True), T(2, "INT8", (3, 4), **Q8)]
    assert one(t, Op(0, "BROADCAST_TO", [0, 1], [2]))["placement"] == "NPU"


def test_g3_string_rank_zero_dim_and_large_dims():
    t = [T(0, "STRING", (2,)), T(1, "INT32", (2,))]
    assert rules_of(one(t, Op(0, "SHAPE", [0], [1]))) == ["G3"]
    t = [T(0, "INT8", (1,) * 7, **Q8), T(1, "INT8", (1,) * 7, **Q8)]
    row = one(t, Op(0, "RELU", [0], [1]))
    assert row["placement"] == "CPU" and "rank 7 > 6" in text_of(row)
    t = [T(0, "INT8", (1,) * 6, **Q8), T(1, "INT8", (1,) * 6, **Q8)]
    assert one(t, Op(0, "RELU", [0], [1]))["placement"] == "NPU"
    t = [T(0, "INT8", (1, 0, 4), **Q8), T(1, "INT8", (1, 4), **Q8)]
    assert "zero-sized" in text_of(one(t, Op(0, "RELU", [0], [1])))
    t = [T(0, "INT8", (1, 70000), **Q8), T(1, "INT8", (1, 70000), **Q8)]
    row = one(t, Op(0, "RELU", [0], [1]))
    assert row["placement"] == "CPU" and "70000 > 65535" in text_of(row)
    t = [T(0, "INT8", (70000, 4), **Q8), T(1, "INT8", (70000, 4), **Q8)]
    assert one(t, Op(0, "RELU", [0], [1]))["placement"] == "NPU"  # dims[0] is exempt
    t = [T(0, "INT8", (1, 65535), **Q8), T(1, "INT8", (1, 65535), **Q8)]
    assert one(t, Op(0, "RELU", [0], [1]))["placement"] == "NPU"


def test_int16_and_int64_outputs_go_to_cpu_with_g4():
    t = [T(0, "INT16", (1, 4), scale=[0.1]), T(1, "INT16", (1, 4), scale=[0.1])]
    row = one(t, Op(0, "RELU", [0], [1]))
    assert row["placement"] == "CPU" and rules_of(row) == ["G4"]
    t = [T(0, "INT8", (1, 8, 8, 4), **Q8), T(1, "INT32", (), const=True), T(2, "INT64", (1, 8, 8))]
    row = one(t, Op(0, "ARG_MAX", [0, 1], [2], output_type="INT64"))
    assert row["placement"] == "CPU" and rules_of(row) == ["G4"] and "INT64" in text_of(row)
    t[2] = T(2, "INT32", (1, 8, 8))
    assert one(t, Op(0, "ARG_MAX", [0, 1], [2], output_type="INT32"))["placement"] == "NPU"


def test_optional_absent_inputs_are_skipped():
    t = [T(0, "INT8", (1, 4), **Q8), T(1, "INT8", (3, 4), const=True, **Q8), T(2, "INT8", (1, 3), **Q8)]
    row = one(t, Op(0, "FULLY_CONNECTED", [0, 1, -1], [2], weights_format="DEFAULT"))
    assert row["placement"] == "NPU"


# -- G8 hybrid, G10 ----------------------------------------------------------------------------------


def test_hybrid_conv_and_fc_are_rejected_g8():
    t = [T(0, "FLOAT32", (1, 4, 4, 3)), T(1, "INT8", (8, 3, 3, 3), const=True, scale=[0.1] * 8, qdim=0),
         T(2, "FLOAT32", (1, 4, 4, 8))]
    row = one(t, Op(0, "CONV_2D", [0, 1, -1], [2], fused_activation_function="NONE"))
    assert row["placement"] == "CPU" and "G8" in rules_of(row) and "G5" in rules_of(row)
    t = [T(0, "FLOAT32", (1, 4)), T(1, "INT8", (3, 4), const=True, **Q8), T(2, "FLOAT32", (1, 3))]
    assert "G8" in rules_of(one(t, Op(0, "FULLY_CONNECTED", [0, 1], [2])))


def test_constant_parameter_and_rank0_rules_g10():
    q = dict(Q8)
    t = [T(0, "INT8", (2, 4), **q), T(1, "INT32", (2,)), T(2, "INT8", (4, 2), **q)]
    row = one(t, Op(0, "RESHAPE", [0, 1], [2]))
    assert row["placement"] == "CPU" and rules_of(row) == ["G10"] and "not a constant" in text_of(row)
    t[1] = T(1, "INT32", (2,), const=True)
    assert one(t, Op(0, "RESHAPE", [0, 1], [2]))["placement"] == "NPU"
    assert one([t[0], t[2]], Op(0, "RESHAPE", [0], [1]))["placement"] == "NPU"  # no shape input: ok
    t0 = [T(0, "INT8", (1,), **q), T(1, "INT32", (0,), const=True), T(2, "INT8", (), **q)]
    assert "rank 0" in text_of(one(t0, Op(0, "RESHAPE", [0, 1], [2])))
    ss = [T(0, "INT8", (1, 4, 4, 8), **q), T(1, "INT32", (4,)), T(2, "INT32", (4,), const=True),
          T(3, "INT32", (4,), const=True), T(4, "INT8", (1, 4, 4, 2), **q)]
    row = one(ss, Op(0, "STRIDED_SLICE", [0, 1, 2, 3], [4], ellipsis_mask=0, new_axis_mask=0))
    assert row["placement"] == "CPU" and "begin/end/strides" in text_of(row)
    mean = [T(0, "INT8", (1, 4, 4, 8), **q), T(1, "INT32", (2,)), T(2, "INT8", (1, 8), **q)]
    assert one(mean, Op(0, "MEAN", [0, 1], [2]))["placement"] == "CPU"
    split = [T(0, "INT32", ()), T(1, "INT8", (1, 4, 4, 8), **q), T(2, "INT8", (1, 4, 4, 4), **q),
             T(3, "INT8", (1, 4, 4, 4), **q)]
    assert "kTfLiteDynamic" in text_of(one(split, Op(0, "SPLIT", [0, 1], [2, 3], num_splits=2)))
    split[0] = T(0, "INT32", (), const=True)
    assert one(split, Op(0, "SPLIT", [0, 1], [2, 3], num_splits=2))["placement"] == "NPU"


# -- per-op constraints ---------------------------------------------------------------------------


def _ss(**opts):
    t = [T(0, "INT8", (1, 4, 4, 8), **Q8), T(1, "INT32", (4,), const=True), T(2, "INT32", (4,), const=True),
         T(3, "INT32", (4,), const=True), T(4, "INT8", (1, 4, 4, 2), **Q8)]
    base = {"begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0}
    return one(t, Op(0, "STRIDED_SLICE", [0, 1, 2, 3], [4], **{**base, **opts}))


def test_strided_slice_masks():
    assert _ss()["placement"] == "NPU"
    row = _ss(ellipsis_mask=1)
    assert row["placement"] == "CPU" and rules_of(row) == ["op"] and "ellipsis_mask=1" in text_of(row)
    row = _ss(new_axis_mask=2)
    assert row["placement"] == "CPU" and "new_axis_mask=2" in text_of(row)
    assert _ss(begin_mask=3, shrink_axis_mask=1)["placement"] == "NPU"


def test_batch_matmul_rules():
    def bmm(a: str, b: str, out: str = "FLOAT32", **opts):
        qa = Q8 if a in ("INT8", "UINT8") else {}
        qb = Q8 if b in ("INT8", "UINT8") else {}
        qo = Q8 if out in ("INT8", "UINT8") else {}
        t = [T(0, a, (2, 3, 4), **qa), T(1, b, (2, 4, 5), **qb), T(2, out, (2, 3, 5), **qo)]
        return one(t, Op(0, "BATCH_MATMUL", [0, 1], [2], **{"adj_x": False, "adj_y": False, **opts}))

    assert bmm("INT8", "INT8", "INT8")["placement"] == "NPU"
    assert bmm("INT8", "INT8", "INT8", adj_x=True)["placement"] == "NPU"
    row = bmm("INT8", "INT8", "INT8", adj_x=True, adj_y=True)
    assert row["placement"] == "CPU" and "adj_x and adj_y" in text_of(row)
    assert "INT32" in text_of(bmm("INT8", "INT8", "INT32"))
    assert "int8 input 0 with float32 input 1" in text_of(bmm("INT8", "FLOAT32"))


def test_select_rejects_quantized_and_bool_data():
    def sel(data: str, name: str = "SELECT_V2", cond_rank: int = 2):
        q = Q8 if data in ("INT8", "UINT8") else {}
        t = [T(0, "BOOL", (2, 3)[:cond_rank] if cond_rank else ()), T(1, data, (2, 3), **q),
             T(2, data, (2, 3), **q), T(3, data, (2, 3), **q)]
        return one(t, Op(0, name, [0, 1, 2], [3]))

    for dtype in ("INT8", "UINT8", "BOOL"):
        row = sel(dtype)
        assert row["placement"] == "CPU" and rules_of(row) == ["op"] and dtype in text_of(row)
    assert sel("INT8", "SELECT")["placement"] == "CPU"
    assert sel("INT32")["placement"] == "NPU"
    assert "rank" in text_of(sel("INT32", cond_rank=1))


def test_dequantize_and_quantize_rules():
    pc = {"scale": [0.1, 0.2], "zp": [0, 0]}
    row = one([T(0, "INT8", (2, 4), **pc), T(1, "FLOAT32", (2, 4))], Op(0, "DEQUANTIZE", [0], [1]))
    assert row["placement"] == "CPU" and "per-channel" in text_of(row)
    assert one([T(0, "INT8", (2, 4), **Q8), T(1, "FLOAT32", (2, 4))], Op(0, "DEQUANTIZE", [0], [1]))["placement"] == "NPU"
    row = one([T(0, "INT16", (2, 4), scale=[0.1]), T(1, "FLOAT32", (2, 4))], Op(0, "DEQUANTIZE", [0], [1]))
    assert row["placement"] == "CPU" and "int16" in text_of(row)
    row = one([T(0, "FLOAT32", (2, 4)), T(1, "INT8", (2, 4), **pc)], Op(0, "QUANTIZE", [0], [1]))
    assert row["placement"] == "CPU" and "per-channel" in text_of(row) and "G5" not in rules_of(row)
    row = one([T(0, "INT16", (2, 4), scale=[0.1]), T(1, "INT8", (2, 4), **Q8)], Op(0, "QUANTIZE", [0], [1]))
    assert row["placement"] == "CPU" and "16-bit to 8-bit" in text_of(row)
    assert one([T(0, "FLOAT32", (2, 4)), T(1, "INT8", (2, 4), **Q8)], Op(0, "QUANTIZE", [0], [1]))["placement"] == "NPU"
    assert one([T(0, "UINT8", (2, 4), **Q8), T(1, "INT8", (2, 4), **Q8)], Op(0, "QUANTIZE", [0], [1]))["placement"] == "NPU"


def test_squared_difference_per_channel_rejected():
    pc = {"scale": [0.1, 0.2], "zp": [0, 0], "qdim": 1}
    t = [T(0, "INT8", (4, 2), **pc), T(1, "INT8", (4, 2), **Q8), T(2, "INT8", (4, 2), **Q8)]
    row = one(t, Op(0, "SQUARED_DIFFERENCE", [0, 1], [2]))
    assert row["placement"] == "CPU" and "per-tensor" in text_of(row)
    t[0] = T(0, "INT8", (4, 2), **Q8)
    assert one(t, Op(0, "SQUARED_DIFFERENCE", [0, 1], [2]))["placement"] == "NPU"


def _lstm(input_type: str, cell_type: str) -> dict:
    q = Q8 if input_type in ("INT8", "UINT8") else {}
    t = [T(0, input_type, (1, 4, 3), **q)]
    t += [T(i, input_type, (2, 3), const=True, **q) for i in range(1, 18)]
    t += [T(18, input_type, (1, 2), variable=True, **q), T(19, cell_type, (1, 2), variable=True),
          T(20, input_type, (1, 4, 2), **q)]
    return one(t, Op(0, "UNIDIRECTIONAL_SEQUENCE_LSTM", list(range(20)), [20], fused_activation_function="TANH"))


def test_unidirectional_lstm_integer_only():
    row = _lstm("FLOAT32", "FLOAT32")
    assert row["placement"] == "CPU" and "op" in rules_of(row) and "float LSTMs are rejected" in text_of(row)
    assert _lstm("INT8", "INT16")["placement"] == "NPU"
    assert "cell state" in text_of(_lstm("INT8", "INT8"))


def test_sequence_rnn_rejects_quantized_weights():
    t = [T(0, "FLOAT32", (1, 4, 3)), T(1, "INT8", (2, 3), const=True, **Q8), T(2, "FLOAT32", (2, 2), const=True),
         T(3, "FLOAT32", (2,), const=True), T(4, "FLOAT32", (1, 2), variable=True), T(5, "FLOAT32", (1, 4, 2))]
    row = one(t, Op(0, "UNIDIRECTIONAL_SEQUENCE_RNN", [0, 1, 2, 3, 4], [5], fused_activation_function="TANH"))
    assert row["placement"] == "CPU" and "op" in rules_of(row) and "quantized RNN weights" in text_of(row)


def test_conv3d_dilation_and_8bit_without_quantization():
    t = [T(0, "INT8", (1, 4, 4, 4, 2), **Q8), T(1, "INT8", (3, 3, 3, 2, 4), const=True, **Q8),
         T(2, "INT8", (1, 4, 4, 4, 4), **Q8)]
    opts = {"dilation_d_factor": 1, "dilation_h_factor": 1, "dilation_w_factor": 1}
    assert one(t, Op(0, "CONV_3D", [0, 1], [2], **opts))["placement"] == "NPU"
    row = one(t, Op(0, "CONV_3D", [0, 1], [2], **{**opts, "dilation_h_factor": 2}))
    assert row["placement"] == "CPU" and "dilation_h_factor=2" in text_of(row)
    for name, extra in (("RESIZE_BILINEAR", [T(1, "INT32", (2,), const=True)]),
                        ("DEPTH_TO_SPACE", []), ("SPACE_TO_DEPTH", [])):
        ts = [T(0, "INT8", (1, 4, 4, 4))] + extra
        ts.append(T(len(ts), "INT8", (1, 8, 8, 1), **Q8))
        row = one(ts, Op(0, name, list(range(len(ts) - 1)), [len(ts) - 1], block_size=2))
        assert row["placement"] == "CPU" and "without quantization" in text_of(row), name
    split = [T(0, "INT32", (), const=True), T(1, "INT8", (1, 4, 4, 8)), T(2, "INT8", (1, 4, 4, 4), **Q8),
             T(3, "INT8", (1, 4, 4, 4), **Q8)]
    assert "without quantization" in text_of(one(split, Op(0, "SPLIT", [0, 1], [2, 3], num_splits=2)))


def test_small_op_specific_rules():
    t = [T(0, "INT32", (4,)), T(1, "INT32", (4,)), T(2, "INT32", (2, 4))]
    assert "int32 first input" in text_of(one(t, Op(0, "PACK", [0, 1], [2], values_count=2, axis=0)))
    t = [T(0, "UINT32", (4,)), T(1, "INT32", (4,))]
    assert "UINT32" in text_of(one(t, Op(0, "CAST", [0], [1])))
    t = [T(0, "INT32", (4,)), T(1, "INT32", (4,)), T(2, "INT32", (4,))]
    assert "int32 base" in text_of(one(t, Op(0, "POW", [0, 1], [2])))
    t = [T(0, "INT8", (2, 4, 4, 3), **Q8), T(1, "INT32", (4,), const=True), T(2, "INT32", (4,), const=True),
         T(3, "INT8", (1, 4, 4, 3), **Q8)]
    assert "batch dimension" in text_of(one(t, Op(0, "SLICE", [0, 1, 2], [3])))
    t[3] = T(3, "INT8", (2, 2, 4, 3), **Q8)
    assert one(t, Op(0, "SLICE", [0, 1, 2], [3]))["placement"] == "NPU"
    t = [T(0, "INT8", (1, 4, 4, 3), **Q8), T(1, "INT8", (2, 4, 4, 3), **Q8)]
    assert one(t, Op(0, "MIRROR_PAD", [0], [1], mode="REFLECT"))["placement"] == "NPU"


def test_unmapped_fused_activation_is_a_note_not_a_rejection():
    t = [T(0, "INT8", (1, 4), **Q8), T(1, "INT8", (1, 4), **Q8), T(2, "INT8", (1, 4), **Q8)]
    row = one(t, Op(0, "ADD", [0, 1], [2], fused_activation_function="SIGN_BIT"))
    assert row["placement"] == "NPU" and any("G13" in n for n in row["notes"])


# -- the float policy -----------------------------------------------------------------------------


def test_float_ops_go_to_cpu_by_policy_and_the_flag_switches_it_off():
    t = [T(0, "FLOAT32", (1, 4)), T(1, "FLOAT32", (1, 4))]
    row = one(t, Op(0, "RELU", [0], [1]))
    assert row["placement"] == "CPU" and rules_of(row) == ["G5"] and row["reasons"][0]["policy"] is True
    assert "policy" in text_of(row) and "not a delegate check" in text_of(row)
    rules = json.loads(RULES_FILE.read_text())
    rules["policy"]["float_ops_on_cpu"] = False
    out = VxDelegateRules(rules).predict(M(t, [Op(0, "RELU", [0], [1])]))
    assert out["subgraphs"][0]["ops"][0]["placement"] == "NPU"
    assert out["policy"]["float_ops_on_cpu"] is False


def test_summary_counts_what_the_policy_alone_moves():
    t = [T(0, "FLOAT32", (1, 4)), T(1, "FLOAT32", (1, 4)), T(2, "FLOAT32", (1, 4))]
    out = imx8mp.load().predict(M(t, [Op(0, "RELU", [0], [1]), Op(1, "RELU", [1], [2])]))
    s = out["summary"]
    assert (s["npu"], s["cpu"], s["partitions"]) == (0, 2, 0)
    assert s["without_policy"] == {"npu": 2, "cpu": 0, "partitions": 1}
    assert s["cpu_reasons_by_rule"] == {"G5": 2}


def test_quantize_dequantize_boundary_is_not_a_float_op():
    row = one([T(0, "INT8", (2, 4), **Q8), T(1, "FLOAT32", (2, 4))], Op(0, "DEQUANTIZE", [0], [1]))
    assert row["placement"] == "NPU"
    # a DEQUANTIZE of float16 *weights* feeds float ops: it is a float op
    row = one([T(0, "FLOAT16", (2, 4), const=True), T(1, "FLOAT32", (2, 4))], Op(0, "DEQUANTIZE", [0], [1]))
    assert row["placement"] == "CPU" and rules_of(row) == ["G5"]


# -- real files -----------------------------------------------------------------------------------

corpus = pytest.mark.corpus


def _corpus_file(name: str):
    return read_model(corpus_file(name))


@corpus
def test_corpus_uint8_mobilenet_v2_is_all_npu_in_one_partition():
    out = get_target("imx8mp").predict(_corpus_file("coral-test_data__mobilenet_v2_1.0_224_quant.tflite"))
    s = out["summary"]
    assert s["operators"] == 66 and s["npu"] == 66 and s["cpu"] == 0
    assert s["partitions"] == 1 and s["fully_npu"] is True


@corpus
def test_corpus_deeplab_argmax_int64_is_cpu():
    out = get_target("imx8mp").predict(_corpus_file("coral-test_data__deeplabv3_mnv2_dm05_pascal_quant.tflite"))
    rows = out["subgraphs"][0]["ops"]
    argmax = [r for r in rows if r["op"] == "ARG_MAX"]
    assert len(argmax) == 1 and argmax[0]["placement"] == "CPU"
    assert rules_of(argmax[0]) == ["G4"] and "INT64" in text_of(argmax[0])
    assert all(r["placement"] == "NPU" for r in rows if r["op"] != "ARG_MAX")
    assert out["summary"]["partitions"] == 1


@corpus
def test_corpus_compiled_npu_blobs_and_detection_postprocess_are_cpu():
    out = get_target("imx8mp").predict(
        _corpus_file("coral-test_data__ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_2_edgetpu.tflite"))
    cpu = {r["op"] for r in out["subgraphs"][0]["ops"] if r["placement"] == "CPU"}
    assert cpu == {"CUSTOM:edgetpu-custom-op", "CUSTOM:TFLite_Detection_PostProcess"}
