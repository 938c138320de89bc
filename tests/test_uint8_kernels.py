"""targets/uint8_kernels.json is measured by benchmarks/probe_uint8_kernels.py: the listed ops really
run true-uint8 one-op models in the interpreter, with the float result to within 1 LSB, and an op
left out really is refused. The models are the probe's own (``one_op_model``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.probe_uint8_kernels import (
    INT8_FILE,
    UINT8_FILE,
    compare_to_float,
    one_op_model,
    probe,
    run_model,
    verdict,
)
from tflite_inverter.model.reader import read_model
from tflite_inverter.quantization.uint8_rewrite import uint8_kernel_ops

#: Weighted ops, multi-input ops, a fixed-output-scale op, an interpolating op, and GELU, which the
#: probe added to the hand-written list.
REPRESENTATIVE = ["CONV_2D", "ADD", "CONCATENATION", "SOFTMAX", "RESIZE_BILINEAR", "GELU"]


def _uint8_op(model: bytes, op: str):
    """The model's single operator, after checking it is ``op`` and every 8-bit tensor is uint8."""
    m = read_model(model)
    assert [o.name for o in m.main.operators] == [op]
    node = m.main.operators[0]
    quantized = [m.main.tensors[i] for i in (*node.inputs, *node.outputs)
                 if i >= 0 and m.main.tensors[i].type_name != "INT32"]
    assert quantized and all(t.type_name == "UINT8" for t in quantized), [t.type_name for t in quantized]
    return m, node


@pytest.mark.parametrize("op", REPRESENTATIVE)
def test_listed_op_runs_uint8_and_matches_float_within_one_lsb(op):
    assert op in uint8_kernel_ops()
    model, feeds, desc = one_op_model(op, "UINT8")
    m, node = _uint8_op(model, op)
    for i in node.inputs:
        t = m.main.tensors[i]
        if t.type_name == "UINT8":  # activations ~128, weights 128
            assert 100 <= t.quantization.zero_point[0] <= 160, (i, t.quantization)
    out = run_model(model, feeds)
    assert out[0].dtype == np.uint8 and out[0].std() > 0  # not a constant (e.g. all-saturated) output
    for seed in (0, 1):
        rows = compare_to_float(op, "UINT8", seed=seed)
        assert len(rows) == len(desc.outputs)
        for row in rows:
            assert row["lsb"] <= 1.0, (op, seed, row)


def test_conv_uint8_weights_are_asymmetric_with_zero_point_128_and_bias_is_int32():
    model, _, _ = one_op_model("CONV_2D", "UINT8")
    m, node = _uint8_op(model, "CONV_2D")
    x, w, b = (m.main.tensors[i] for i in node.inputs)
    assert w.type_name == "UINT8" and list(w.quantization.zero_point) == [128]
    assert b.type_name == "INT32"
    assert np.isclose(b.quantization.scale[0], x.quantization.scale[0] * w.quantization.scale[0])


def test_op_not_in_the_list_fails_to_prepare_while_its_int8_twin_runs():
    op = "BATCH_MATMUL"
    assert op not in uint8_kernel_ops()
    int8_model, int8_feeds, _ = one_op_model(op, "INT8")
    assert run_model(int8_model, int8_feeds)[0].dtype == np.int8
    model, feeds, _ = one_op_model(op, "UINT8")
    _uint8_op(model, op)
    with pytest.raises(RuntimeError, match="failed to prepare"):
        run_model(model, feeds)


def test_kernel_list_is_what_a_fresh_probe_measures():
    """Fails when the interpreter changed under the list: rerun
    ``python benchmarks/probe_uint8_kernels.py --write``."""
    data = json.loads(UINT8_FILE.read_text())
    assert "probe_uint8_kernels.py" in data["source"]
    old = set(data["ops"])
    ops = sorted(old | set(json.loads(INT8_FILE.read_text())["ops"]) | set(data["not_listed"]))
    table = probe(ops, verbose=False)
    measured = {op for op in ops if verdict(table[op], op in old)[0]}
    assert measured == old, {"added": sorted(measured - old), "removed": sorted(old - measured)}
    assert all(table[op]["INT8"]["status"] == "runs" for op in ops)  # every probe model is valid
