"""The inspect report: contents, quantization kinds, NPU placement on converter-built models, the three
output formats, determinism, the CLI, no TensorFlow import, and the real corpus."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tflite_inverter.cli.main import main
from tflite_inverter.coverage.report import build_report, render_report
from tflite_inverter.errors import UsageError
from tflite_inverter.model.reader import read_model

from .conftest import ROOT, corpus_files

PY = sys.executable

# == converter-built models ========================================================================


def _convert(tf, fn, specs, mode: str = "float") -> bytes:
    module = tf.Module()
    module.f = tf.function(fn, input_signature=list(specs), autograph=False)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
    if mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(8):
                yield [rng.uniform(-1, 1, size=[d or 1 for d in s.shape]).astype(np.float32) for s in specs]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny models, converted once per session and written to files (name -> path)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(7)
    w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 4)).astype(np.float32))
    dense = tf.constant(rng.normal(0, 0.1, (8 * 8 * 8, 16)).astype(np.float32))  # 8192 weights: quantized
    img = [tf.TensorSpec([1, 8, 8, 3], tf.float32)]

    def convnet(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        y = tf.nn.conv2d(y, w2, 1, "SAME")
        return tf.nn.softmax(tf.reshape(y, [1, -1]))

    def densenet(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        return tf.matmul(tf.reshape(y, [1, -1]), dense)

    def tiled(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        y = tf.tile(y, [1, 2, 1, 1])
        return tf.nn.conv2d(y, w2, 1, "SAME")

    def argmaxes(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        return tf.math.argmax(y, axis=-1, output_type=tf.int64), tf.math.argmax(y, axis=-1, output_type=tf.int32)

    def sliced(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        return y[:, :, :, 2:6]

    table = tf.constant(np.arange(10, dtype=np.int32))
    built = {
        "float": _convert(tf, convnet, img),
        "fp16": _convert(tf, convnet, img, "fp16"),
        "dynamic": _convert(tf, densenet, img, "dynamic"),
        "int8": _convert(tf, convnet, img, "int8"),
        "int8_tile": _convert(tf, tiled, img, "int8"),
        "int8_argmax": _convert(tf, argmaxes, img, "int8"),
        "int8_slice": _convert(tf, sliced, img, "int8"),
        "gather_int64": _convert(tf, lambda i: tf.gather(table, i), [tf.TensorSpec([3], tf.int64)]),
        "dynamic_batch": _convert(tf, lambda x: tf.nn.relu(tf.matmul(x, tf.ones([4, 2]))),
                                  [tf.TensorSpec([None, 4], tf.float32)]),
    }
    out = tmp_path_factory.mktemp("report_models")
    paths = {}
    for name, data in built.items():
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def report_of(path: Path, target: str | None = None) -> dict:
    return build_report(read_model(path), target=target)


def placements(rep: dict, sg: int = 0) -> list[tuple[str, str]]:
    return [(o["op"], o["placement"]) for o in rep["target"]["subgraphs"][sg]["ops"]]


# == contents ======================================================================================


def test_histogram_counts_equal_the_interpreters_op_list(models):
    from ai_edge_litert.interpreter import Interpreter

    for name in ("float", "fp16", "int8", "int8_tile", "dynamic"):
        rep = report_of(models[name])
        it = Interpreter(model_path=str(models[name]))
        expected = Counter(d["op_name"] for d in it._get_ops_details())
        hist = rep["subgraphs"][0]["op_histogram"]
        assert hist == dict(expected), name
        assert rep["model"]["operators"] == sum(expected.values())
        assert {k: v["count"] for k, v in rep["op_types"].items()} == dict(expected)


def test_model_fields(models):
    rep = report_of(models["int8"])
    m = rep["model"]
    assert m["file"] == "int8.tflite"
    assert m["size_bytes"] == models["int8"].stat().st_size
    assert m["schema_version"] == 3 and m["subgraphs"] == 1
    assert "min_runtime_version" in m["metadata"]
    sig = rep["signatures"][0]
    assert sig["key"] == "serving_default" and sig["subgraph"] == 0
    (inp,) = sig["inputs"]
    assert inp["signature_name"] == "x" and inp["dtype"] == "INT8" and inp["shape"] == [1, 8, 8, 3]
    q = inp["quantization"]
    assert q["per_channel"] is False and q["channels"] == 1 and len(q["scale"]) == 1
    assert isinstance(q["zero_point"][0], int)


def test_per_channel_quantization_reports_its_channel_count(models):
    m = read_model(models["int8"])
    sg = m.subgraphs[0]
    conv = next(op for op in sg.operators if op.name == "CONV_2D")
    filt = sg.tensors[conv.inputs[1]]
    from tflite_inverter.coverage.report import _tensor_info

    info = _tensor_info(sg, filt.index)
    assert info["quantization"]["per_channel"] is True
    assert info["quantization"]["channels"] == filt.shape[0] == 8


def test_dynamic_dims_come_from_the_shape_signature(models):
    rep = report_of(models["dynamic_batch"], "imx8mp")
    (inp,) = rep["signatures"][0]["inputs"]
    assert inp["shape"] == [-1, 4] and inp["dynamic"] is True
    text = render_report(rep, "text")
    assert "[?,4]" in text
    assert rep["target"]["summary"]["ops_with_dynamic_dims"] >= 1


def test_quantization_kinds(models):
    def kind(name: str, op: str) -> str:
        return report_of(models[name])["op_types"][op]["quantization"]

    assert kind("float", "CONV_2D") == "float"
    assert kind("fp16", "CONV_2D") == "fp16_weights"
    assert kind("fp16", "DEQUANTIZE") == "fp16_weights"
    assert kind("dynamic", "FULLY_CONNECTED") == "hybrid"
    assert kind("int8", "CONV_2D") == "int8_per_channel"
    assert kind("int8", "SOFTMAX") == "int8_per_tensor"
    rep = report_of(models["fp16"])
    assert rep["op_types"]["SOFTMAX"]["quantization"] == "float"
    assert rep["quantization_summary"]["fp16_weights"] >= 3


def test_int8_kernel_and_rebuild_columns_are_data_driven(models):
    from tflite_inverter.ops import registry

    rep = report_of(models["int8_tile"])
    assert rep["op_types"]["CONV_2D"]["int8_kernel"] is True
    sg = read_model(models["int8_tile"]).subgraphs[0]
    for op in sg.operators:
        ok, why = registry.support(op, sg)
        entry = rep["op_types"][op.key]["rebuild"]
        assert entry["supported"] == ok
        if not ok:
            assert why in entry["reasons"]


def test_unsupported_op_says_why(models):
    sg = read_model(models["int8_tile"]).subgraphs[0]
    tile = next(op for op in sg.operators if op.name == "TILE")
    vsi = dataclasses.replace(tile, name="CUSTOM", custom_code="vsi-npu")
    m = read_model(models["int8_tile"])
    sg2 = dataclasses.replace(m.subgraphs[0], operators=tuple(
        vsi if o.index == tile.index else o for o in m.subgraphs[0].operators))
    rep = build_report(dataclasses.replace(m, subgraphs=(sg2,)))
    entry = rep["op_types"]["CUSTOM:vsi-npu"]
    assert entry["rebuild"]["supported"] is False
    assert any("VeriSilicon" in r for r in entry["rebuild"]["reasons"])
    assert entry["int8_kernel"] is None and entry["builtin"] is False


# == imx8mp placement on converted models ==========================================================


def test_full_int8_conv_model_is_all_npu(models):
    rep = report_of(models["int8"], "imx8mp")
    assert all(p == "NPU" for _, p in placements(rep))
    assert sum(op == "CONV_2D" for op, _ in placements(rep)) == 2
    s = rep["target"]["summary"]
    assert s["partitions"] == 1 and s["fully_npu"] is True and s["cpu"] == 0


def test_float_model_is_cpu_by_policy(models):
    rep = report_of(models["float"], "imx8mp")
    rows = rep["target"]["subgraphs"][0]["ops"]
    convs = [r for r in rows if r["op"] == "CONV_2D"]
    assert len(convs) == 2 and all(r["placement"] == "CPU" for r in convs)
    for r in convs:
        assert [x["rule"] for x in r["reasons"]] == ["G5"]
        assert r["reasons"][0]["policy"] is True and "policy" in r["reasons"][0]["message"]
    assert rep["target"]["policy"]["float_ops_on_cpu"] is True
    assert rep["target"]["summary"]["without_policy"]["cpu"] == 0
    text = render_report(rep, "text")
    assert "POLICY" in text and "not a delegate check" in text and "G5" in text


def test_middle_unsupported_op_gives_two_partitions(models):
    rep = report_of(models["int8_tile"], "imx8mp")
    assert placements(rep) == [("CONV_2D", "NPU"), ("TILE", "CPU"), ("CONV_2D", "NPU")]
    assert rep["target"]["summary"]["partitions"] == 2
    assert rep["target"]["subgraphs"][0]["partitions"] == 2
    tile = rep["target"]["subgraphs"][0]["ops"][1]
    assert tile["reasons"][0]["rule"] == "G1" and "not registered" in tile["reasons"][0]["message"]


def test_argmax_int64_output_is_cpu_int32_is_npu(models):
    rep = report_of(models["int8_argmax"], "imx8mp")
    rows = [r for r in rep["target"]["subgraphs"][0]["ops"] if r["op"] == "ARG_MAX"]
    m = read_model(models["int8_argmax"])
    sg = m.subgraphs[0]
    by_type = {sg.tensors[op.outputs[0]].type_name: op.index for op in sg.operators if op.name == "ARG_MAX"}
    assert set(by_type) == {"INT64", "INT32"}
    row = {r["index"]: r for r in rows}
    assert row[by_type["INT64"]]["placement"] == "CPU"
    assert row[by_type["INT64"]]["reasons"][0]["rule"] == "G4"
    assert row[by_type["INT32"]]["placement"] == "NPU"


def test_int64_input_is_cpu_with_g3(models):
    rep = report_of(models["gather_int64"], "imx8mp")
    (row,) = rep["target"]["subgraphs"][0]["ops"]
    assert row["op"] == "GATHER" and row["placement"] == "CPU"
    assert [r["rule"] for r in row["reasons"]] == ["G3"] and "INT64" in row["reasons"][0]["message"]


def test_strided_slice_with_ellipsis_mask_is_cpu(models):
    m = read_model(models["int8_slice"])
    sg = m.subgraphs[0]
    ss = next(op for op in sg.operators if op.name == "STRIDED_SLICE")
    rep = build_report(m, "imx8mp")
    assert dict(placements(rep))["STRIDED_SLICE"] == "NPU"
    patched = dataclasses.replace(ss, options={**ss.options, "ellipsis_mask": 1})
    sg2 = dataclasses.replace(sg, operators=tuple(patched if o is ss else o for o in sg.operators))
    rep = build_report(dataclasses.replace(m, subgraphs=(sg2,)), "imx8mp")
    row = rep["target"]["subgraphs"][0]["ops"][ss.index]
    assert row["placement"] == "CPU" and "ellipsis_mask" in row["reasons"][0]["message"]


def test_target_section_names_the_rules_source(models):
    t = report_of(models["int8"], "imx8mp")["target"]
    assert t["name"] == "imx8mp"
    assert t["rules"]["bsp"] == "lf-6.6.3_1.0.0"
    assert t["rules"]["baseline"]["commit"] == "44aab8a50b37d55399771a2cad3fe017d3b5cdd3"
    assert t["rules"]["registered_builtins"] == 95
    assert report_of(models["int8"])["target"] is None


# == formats =======================================================================================


def test_text_tables_are_aligned_and_name_every_op(models):
    rep = report_of(models["int8_tile"], "imx8mp")
    text = render_report(rep, "text")
    for op in ("CONV_2D", "TILE"):
        assert op in text
    lines = text.splitlines()
    start = lines.index("Op histogram")
    table = []
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        table.append(ln)
    assert len(table) >= 4 and len({len(ln) for ln in table}) == 1  # right-aligned count column
    h = next(i for i, ln in enumerate(lines) if ln.strip().startswith("subgraph") and "placement" in ln)
    col = lines[h].index("placement")
    rows = []
    for ln in lines[h + 2:]:
        if not ln.strip():
            break
        rows.append(ln)
    assert [ln[col:col + 3] for ln in rows] == ["NPU", "CPU", "NPU"]
    assert "not registered" in rows[1]


def test_markdown_uses_tables(models):
    md = render_report(report_of(models["int8_tile"], "imx8mp"), "markdown")
    assert "| op | count |" in md and "|---|---:|" in md
    assert "| subgraph | # | op | placement | reason |" in md
    assert any(ln.startswith("| ") and "TILE" in ln and "CPU" in ln for ln in md.splitlines())
    assert md.startswith("## Model int8_tile.tflite")


def test_json_parses_and_has_no_absolute_path(models):
    out = render_report(report_of(models["int8_tile"], "imx8mp"), "json")
    data = json.loads(out)
    assert data["model"]["file"] == "int8_tile.tflite"
    assert str(models["int8_tile"].parent) not in out
    assert out.endswith("\n")


def test_json_is_byte_identical_across_processes(models):
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        r = subprocess.run([PY, "-m", "tflite_inverter", "inspect", str(models["int8_argmax"]), "--format", "json",
                            "--target", "imx8mp"], capture_output=True, env=env, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        outs.append(r.stdout)
    assert outs[0] == outs[1]
    json.loads(outs[0])


# objects whose keys are data (op keys, kind names, rule ids, source letters), not field names
_DATA_KEYED = {"op_types", "op_histogram", "quantization_instances", "quantization_summary", "cpu_ops_by_type",
               "cpu_reasons_by_rule", "sources.N", "evidence"}


def _field_names(v, parent: str = "") -> set[str]:
    names: set[str] = set()
    if isinstance(v, dict):
        data_keyed = parent in _DATA_KEYED
        for k, x in v.items():
            if not data_keyed:
                names.add(k)
            names |= _field_names(x, "sources.N" if parent == "sources" and k in ("N", "V") else
                                  (k if not data_keyed else f"{parent}.*"))
    elif isinstance(v, list):
        for x in v:
            names |= _field_names(x, parent)
    return names


def test_every_json_field_is_documented(models):
    doc = (ROOT / "docs" / "report-json.md").read_text()
    seen: set[str] = set()
    for name in ("int8_tile", "fp16", "dynamic_batch", "int8_argmax"):
        seen |= _field_names(report_of(models[name], "imx8mp"))
    missing = sorted(k for k in seen if f"`{k}`" not in doc)
    assert missing == []


def test_unknown_format_is_a_usage_error(models):
    with pytest.raises(UsageError):
        render_report(report_of(models["int8"]), "xml")


def test_report_does_not_import_tensorflow(models):
    code = (
        "import sys\n"
        "from tflite_inverter.model.reader import read_model\n"
        "from tflite_inverter.coverage.report import build_report, render_report\n"
        f"r = build_report(read_model({str(models['int8_tile'])!r}), target='imx8mp')\n"
        "for f in ('text', 'markdown', 'json'): render_report(r, f)\n"
        "from tflite_inverter.cli.main import main\n"
        f"main(['inspect', {str(models['fp16'])!r}, '--target', 'imx8mp'])\n"
        "print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-FREE')\n"
    )
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "TF-FREE"


# == CLI ===========================================================================================


def test_cli_json(models, capsys):
    assert main(["inspect", str(models["int8"]), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "tflite-inverter-report" and data["target"] is None


def test_cli_text_contains_op_names(models, capsys):
    assert main(["inspect", str(models["int8_tile"]), "--target", "imx8mp"]) == 0
    out = capsys.readouterr().out
    for op in ("CONV_2D", "TILE", "NPU", "CPU"):
        assert op in out


def test_cli_missing_file_exits_3(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.tflite")]) == 3
    err = capsys.readouterr().err
    assert "nope.tflite" in err and "no such file" in err


# == the real corpus ===============================================================================


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_inspect_never_raises(path):
    rep = build_report(read_model(path), target="imx8mp")
    for fmt in ("text", "markdown"):
        assert render_report(rep, fmt).strip()
    data = json.loads(render_report(rep, "json"))
    assert data["model"]["file"] == path.name
    n = data["model"]["operators"]
    assert sum(sum(sg["op_histogram"].values()) for sg in data["subgraphs"]) == n
    s = data["target"]["summary"]
    assert s["operators"] == n and s["npu"] + s["cpu"] == n
    for sg in data["target"]["subgraphs"]:
        for row in sg["ops"]:
            assert (row["placement"] == "CPU") == bool(row["reasons"])


def test_every_builtin_of_the_schema_is_rebuilt_or_has_a_stated_reason():
    """No builtin op falls through to a bare "no rebuilder": each is registered, refused or listed
    with the reason it is not rebuilt (e.g. no runtime kernel)."""
    from tflite_inverter.model.schema import builtin_operator_names
    from tflite_inverter.ops import registry

    known = set(registry.registered()) | set(registry.REFUSED) | set(registry.NOT_YET)
    markers = {"CUSTOM", "PLACEHOLDER_FOR_GREATER_OP_CODES"}  # not operators
    missing = sorted(n for n in builtin_operator_names().values() if n not in known | markers)
    assert missing == []
