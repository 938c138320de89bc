"""The bundled schema is the source of truth for op codes; the tflite package must agree with it."""

from __future__ import annotations

import filecmp

import tflite

from tflite_inverter.model.schema import builtin_operator_codes, bundled_schema, op_name

from .conftest import ROOT


def test_bundled_schema_copies_are_identical():
    assert filecmp.cmp(ROOT / "schema" / "schema.fbs", ROOT / "tflite_inverter" / "model" / "schema.fbs", shallow=False)


def test_schema_names_codes_newer_than_the_tflite_package():
    assert op_name(209) == "STABLEHLO_CASE"
    assert op_name(3) == "CONV_2D"
    assert op_name(100000) == "UNKNOWN_BUILTIN_100000"


def test_tflite_package_agrees_with_schema_on_every_shared_code():
    ours = builtin_operator_codes()
    theirs = {k: v for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    shared = set(ours) & set(theirs)
    assert len(shared) > 150
    mismatched = {k: (ours[k], theirs[k]) for k in shared if ours[k] != theirs[k]}
    assert mismatched == {}
    # every code the package knows is named by the schema (possibly under a newer name)
    assert set(theirs.values()) <= set(ours.values())


def test_schema_tables_describe_the_model_root():
    s = bundled_schema()
    assert s.root_type == "Model" and s.file_identifier == "TFL3"
    conv = s.tables["Conv2DOptions"].by_name
    assert conv["dilation_w_factor"].default == 1
    assert conv["fused_activation_function"].type.name == "ActivationFunctionType"
