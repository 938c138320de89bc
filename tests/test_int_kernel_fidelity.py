"""targets/int_kernel_fidelity.json is measured, not written by hand: a fresh run of
benchmarks/probe_int_kernels.py over every op x dtype x variant must give the stored table, row for
row, so the table can never drift from the code (``python benchmarks/probe_int_kernels.py --write``
regenerates it after a kernel change). The rows are the same with TensorFlow's oneDNN rewrites on and
off (measured), so the comparison runs under the machine's default setting.

The probe itself is checked against a case it must measure as off: MUL's builtin fixed-point result
differs from XNNPACK's float requantization, and a rebuild that rounded differently would show.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import probe_int_kernels as probe


@pytest.fixture(scope="module")
def stored():
    return json.loads(probe.OUT_FILE.read_text())


def test_the_stored_table_is_what_the_code_measures(stored):
    rows = probe.measure(probe.cases(probe.probed_ops()), workers=1, verbose=False)
    changed = {k: (stored["rows"].get(k), v) for k, v in rows.items() if stored["rows"].get(k) != v}
    gone = sorted(set(stored["rows"]) - set(rows))
    assert not changed and not gone, (
        f"{len(changed)} rows differ, {len(gone)} gone: run python benchmarks/probe_int_kernels.py --write "
        f"({dict(list(changed.items())[:5])})")
    assert stored["summary"] == probe.summary(rows)
    assert stored["ops_per_dtype"] == probe.summary_per_dtype(rows)


def test_ops_are_counted_by_their_worst_variant():
    rows = {"A/INT8/base": {"status": "exact", "max_lsb": 0.0}, "A/INT8/relu": {"status": "off", "max_lsb": 1.0},
            "B/INT8/base": {"status": "exact", "max_lsb": 0.0}, "B/INT8/x": {"status": "off", "max_lsb": 7.0},
            "B/INT8/y": {"status": "off", "max_lsb": 1.0}, "C/INT8/base": {"status": "kernel refuses"},
            "D/INT16/base": {"status": "refused"}, "D/INT16/x": {"status": "exact", "max_lsb": 0.0},
            "E/INT16/base": {"status": "exact", "max_lsb": 0.0}}
    assert probe.summary_per_dtype(rows) == {
        "INT8": {"exact": 0, "within 1 LSB": 1, "refused": 0, "off": 1},
        "INT16": {"exact": 1, "within 1 LSB": 0, "refused": 1, "off": 0}}


def test_every_probed_op_has_a_base_row_in_each_dtype(stored):
    for op in probe.probed_ops():
        for dtype in probe.DTYPES:
            assert f"{op}/{dtype}/base" in stored["rows"], (op, dtype)


def test_the_comparison_counts_lsb_and_sees_a_shape_mismatch():
    ref = [[np.array([0, 5, -3], np.int8)]]
    assert probe._compare(ref, [[np.array([0, 5, -3], np.int8)]])["max_lsb"] == 0
    off = probe._compare(ref, [[np.array([1, 5, -6], np.int8)]])
    assert off["max_lsb"] == 3 and abs(off["within_1"] - 2 / 3) < 1e-9
    assert probe._compare(ref, [[np.array([0, 5], np.int8)]])["max_lsb"] is None


def test_variants_change_the_model_they_claim_to():
    base, b0 = probe.case_model("ADD", "INT8", "base")
    scaled, b1 = probe.case_model("ADD", "INT8", "out_scale_x3")
    assert b1.quant[b1.outputs[0]][0] == pytest.approx(3 * b0.quant[b0.outputs[0]][0])
    _, bb = probe.case_model("ADD", "INT8", "broadcast")
    assert bb.tensors[bb.inputs[1]][1] == [1, 1, 1, 3]
    assert probe.case_model("RESHAPE", "INT8", "relu") is None  # no fused activation: not a case


# -- convert names the kernels of a model the table does not prove exact ----------------------------
def _one_op(op: str, dtype: str, out_q: dict) -> bytes:
    from .tflite_builder import build_model

    q = {"scale": [1.0 / 3000], "zero_point": [0]} if dtype == "INT16" else {"scale": [0.05], "zero_point": [3]}
    tensors = [("x", [1, 64], dtype, None, q), ("y", [1, 64], dtype, None, out_q)]
    return build_model(tensors=tensors, ops=[(op, [0], [1], None, None)], inputs=[0], outputs=[1])


_AN_OFF_ROW = {("LOGISTIC", "INT16"): [("base", 1.0)]}  # the stored table has none left: one as it looked


def test_unproven_kernels_are_read_from_the_table_by_op_and_dtype(monkeypatch):
    from tflite_inverter.coverage import fidelity
    from tflite_inverter.coverage.fidelity import unproven_kernels
    from tflite_inverter.model.reader import read_model

    stored = json.loads(probe.OUT_FILE.read_text())["rows"]
    assert set(fidelity._off_rows()) == {tuple(k.split("/")[:2]) for k, r in stored.items() if r["status"] == "off"}
    monkeypatch.setattr(fidelity, "_off_rows", lambda: _AN_OFF_ROW)
    lines = unproven_kernels(read_model(_one_op("LOGISTIC", "INT16", {"scale": [1.0 / 32768], "zero_point": [0]})))
    assert len(lines) == 1 and lines[0].startswith("LOGISTIC INT16 (x1): up to 1 LSB")
    assert unproven_kernels(read_model(_one_op("LOGISTIC", "INT8", {"scale": [1.0 / 256], "zero_point": [-128]}))) == []


def test_convert_says_which_kernels_are_not_proven_exact(tmp_path, monkeypatch):
    """With an off row in the table, the TensorFlow part of ``convert`` (its child's function, run here
    so that the table can be replaced) names the kernel in the note and in the JSON; a real convert of the
    same model now has no such note, as no row is off."""
    from tflite_inverter.conversion.pipeline import _build_and_verify, convert
    from tflite_inverter.coverage import fidelity

    path = tmp_path / "logistic16.tflite"
    path.write_bytes(_one_op("LOGISTIC", "INT16", {"scale": [1.0 / 32768], "zero_point": [0]}))
    assert "not proven exact" not in convert(str(path), str(tmp_path / "sm")).note
    monkeypatch.setattr(fidelity, "_off_rows", lambda: _AN_OFF_ROW)
    result, _ = _build_and_verify(str(path), str(tmp_path / "sm2"), float_io=False, fake_quant=True, inputs=None,
                                  tolerance=None, verify=True)
    assert "quantized kernels not proven exact" in result.note and "LOGISTIC INT16" in result.note
    assert "quantized kernels not proven exact" in json.dumps(result.to_json())
