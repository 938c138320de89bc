"""StableHLO builtins against the TFLite interpreter.

TFLiteConverter does not emit these ops from TensorFlow, so every model is written directly with
``tests/tflite_builder.py``: one operator, plus body/branch subgraphs where the op names one. Each
test runs the interpreter and the rebuilt graph on the same inputs; integer outputs must be equal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_inverter.coverage.report import build_report
from tflite_inverter.errors import UnsupportedOpError
from tflite_inverter.model.reader import read_model
from tflite_inverter.ops import registry
from tflite_inverter.rebuild import check_supported

from .helpers import assert_float_close, op_names, run_interpreter, run_rebuilt
from .tflite_builder import build_model, single_op_model, subgraph

_rng = np.random.default_rng(0)
_NP = {"FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8, "BOOL": np.bool_,
       "UINT8": np.uint8}


def single_op(op: str, ins: list, out: tuple, options: dict | None, subgraphs: list | None = None) -> bytes:
    """:func:`single_op_model` with one output, checked to hold exactly ``op``."""
    model = single_op_model(op, ins, [out], options, subgraphs=subgraphs or [])
    assert op_names(model) == [op]
    return model


def q(scale: float, zp: int) -> dict:
    return {"scale": [scale], "zero_point": [zp]}


def body(op: str | None, ttype: str = "FLOAT32") -> dict:
    """A body subgraph of two scalars: one ``op`` on them, or none (returns the second: "replace")."""
    tensors = [("a", [], ttype), ("b", [], ttype), ("c", [], ttype)]
    if op is None:
        return subgraph(tensors[:2], [], [0, 1], [1], "body")
    return subgraph(tensors, [(op, [0, 1], [2])], [0, 1], [2], "body")


def assert_same(model: bytes, inputs: list, atol: float = 1e-5) -> float:
    """Rebuilt == interpreter (integers exactly, floats within ``atol``); also checks the outputs are
    not all equal to one value so a test cannot pass on a degenerate result."""
    ref = run_interpreter(model, inputs)
    err = assert_float_close(model, inputs, rtol=0.0, atol=atol)
    assert any(r.size == 0 or np.unique(r).size > 1 for r in ref)
    return err


def assert_quantized_exact(model: bytes, inputs: list) -> None:
    ref = run_interpreter(model, inputs)
    got = run_rebuilt(model, inputs)
    for r, g in zip(ref, got):
        assert r.dtype == g.dtype and r.shape == g.shape
        np.testing.assert_array_equal(g, r)


def data(shape: list[int], ttype: str, low: int = -50, high: int = 50) -> np.ndarray:
    if ttype == "FLOAT32":
        return _rng.uniform(-2, 2, size=shape).astype(np.float32)
    if ttype == "BOOL":
        return _rng.integers(0, 2, size=shape).astype(bool)
    return _rng.integers(low, high, size=shape).astype(_NP[ttype])


# -- which STABLEHLO ops TFLite runs --------------------------------------------------------------------
def test_ops_without_kernel_are_reported_with_the_reason():
    model = read_model(single_op("STABLEHLO_TRANSPOSE", [([2, 4], "FLOAT32", None)], ([4, 2], "FLOAT32"),
                                 {"permutation": [1, 0]}))
    op = model.main.operators[0]
    ok, why = registry.support(op, model.main)
    assert not ok and "no kernel in the TFLite runtime" in why and "STABLEHLO_TRANSPOSE" in why


def test_every_stablehlo_builtin_is_rebuilt_or_explained():
    from tflite_inverter.model.schema import builtin_operator_codes

    registry.load_all()
    names = [n for n in builtin_operator_codes() if n.startswith("STABLEHLO_")]
    missing = [n for n in names if registry.find(n) is None and n not in registry.NOT_YET]
    assert not missing


# -- STABLEHLO_AND -----------------------------------------------------------------------------------
@pytest.mark.parametrize("ttype", ["BOOL", "INT32", "INT8", "UINT8"])
def test_and_is_logical_for_bool_and_bitwise_for_integers(ttype):
    shape = [3, 4]
    model = single_op("STABLEHLO_AND", [(shape, ttype, None), (shape, ttype, None)], (shape, ttype), None)
    low, high = (0, 255) if ttype == "UINT8" else (-100, 100)
    assert_same(model, [data(shape, ttype, low, high), data(shape, ttype, low, high)])


def test_and_on_floats_is_refused_by_name():
    model = read_model(single_op("STABLEHLO_AND", [([2], "FLOAT32", None), ([2], "FLOAT32", None)],
                                 ([2], "FLOAT32"), None))
    ok, why = registry.support(model.main.operators[0], model.main)
    assert not ok and "FLOAT32" in why


# -- STABLEHLO_PAD -----------------------------------------------------------------------------------
def pad_out_shape(shape, low, high, interior):
    return [(n - 1) * (k + 1) + 1 + lo + hi for n, lo, hi, k in zip(shape, low, high, interior)]


_PADS = [  # (shape, low, high, interior)
    ([2, 3], [1, 2], [0, 1], [0, 0]),  # edge only: tf.pad
    ([2, 3], [1, -1], [0, 2], [1, 2]),  # interior + crop that eats interior padding
    ([3, 4], [-1, 0], [-2, 1], [2, 0]),
    ([4, 3], [-3, 1], [1, -2], [2, 1]),  # crops deeper than one interior step
    ([2, 3, 4], [0, 1, -1], [1, 0, -1], [0, 1, 1]),
    ([5], [-2], [-1], [0]),  # crop only
]


@pytest.mark.parametrize("shape,low,high,interior", _PADS)
@pytest.mark.parametrize("ttype", ["FLOAT32", "INT32"])
def test_pad_edge_negative_and_interior_padding(shape, low, high, interior, ttype):
    pv = np.array(7, dtype=_NP[ttype])
    model = single_op("STABLEHLO_PAD", [(shape, ttype, None), ([], ttype, pv)],
                      (pad_out_shape(shape, low, high, interior), ttype),
                      {"edge_padding_low": low, "edge_padding_high": high, "interior_padding": interior})
    assert_same(model, [data(shape, ttype)])


def test_pad_value_as_model_input():
    shape, low, high, interior = [2, 3], [1, 0], [0, 1], [1, 1]
    model = single_op("STABLEHLO_PAD", [(shape, "FLOAT32", None), ([], "FLOAT32", None)],
                      (pad_out_shape(shape, low, high, interior), "FLOAT32"),
                      {"edge_padding_low": low, "edge_padding_high": high, "interior_padding": interior})
    assert_same(model, [data(shape, "FLOAT32"), np.array(-3.5, np.float32)])


def test_pad_int8_copies_raw_bytes_across_different_scales():
    """The kernel copies stored int8 values: input, padding value and output scales may differ."""
    shape, low, high, interior = [3, 3], [1, -1], [2, 0], [1, 1]
    model = single_op("STABLEHLO_PAD", [(shape, "INT8", None, q(0.05, 3)), ([], "INT8", np.array(-9, np.int8), q(0.2, -1))],
                      (pad_out_shape(shape, low, high, interior), "INT8", q(0.1, 0)),
                      {"edge_padding_low": low, "edge_padding_high": high, "interior_padding": interior})
    assert_quantized_exact(model, [data(shape, "INT8", -128, 127)])


# -- STABLEHLO_GATHER --------------------------------------------------------------------------------
_GATHERS = {
    # name: (operand shape, indices (data), options, output shape)
    "index_select": ([5, 4], np.array([[3], [0], [4]], np.int32),
                     {"offset_dims": [1], "collapsed_slice_dims": [0], "start_index_map": [0],
                      "index_vector_dim": 1, "slice_sizes": [1, 4]}, [3, 4]),
    "gather_nd": ([4, 5, 3], np.array([[0, 1], [3, 4], [2, 0]], np.int32),
                  {"offset_dims": [1], "collapsed_slice_dims": [0, 1], "start_index_map": [0, 1],
                   "index_vector_dim": 1, "slice_sizes": [1, 1, 3]}, [3, 3]),
    "windows_clamped": ([6, 7], np.array([[1, 5], [5, 0], [-2, 3], [9, 9]], np.int32),
                        {"offset_dims": [1, 2], "collapsed_slice_dims": [], "start_index_map": [0, 1],
                         "index_vector_dim": 1, "slice_sizes": [2, 3]}, [4, 2, 3]),
    "index_vector_first_offset_first": ([4, 5, 6], np.array([[1, 5, 0], [3, 0, 4]], np.int64),
                                        {"offset_dims": [0], "collapsed_slice_dims": [1, 2],
                                         "start_index_map": [2, 1], "index_vector_dim": 0,
                                         "slice_sizes": [2, 1, 1]}, [2, 3]),
    "batch_between_offsets": ([4, 5, 6], np.array([[2], [0]], np.int32),
                              {"offset_dims": [0, 2], "collapsed_slice_dims": [1], "start_index_map": [1],
                               "index_vector_dim": 1, "slice_sizes": [3, 1, 4]}, [3, 2, 4]),
    "partial_slice_of_unindexed_dim": ([5, 6], np.array([[4], [1]], np.int32),
                                       {"offset_dims": [1, 2], "collapsed_slice_dims": [],
                                        "start_index_map": [1], "index_vector_dim": 1, "slice_sizes": [2, 3]},
                                       [2, 2, 3]),
}


@pytest.mark.parametrize("case", sorted(_GATHERS))
@pytest.mark.parametrize("ttype", ["FLOAT32", "INT32"])
def test_gather_general_dimension_numbers(case, ttype):
    shape, idx, opts, out_shape = _GATHERS[case]
    itype = "INT64" if idx.dtype == np.int64 else "INT32"
    model = single_op("STABLEHLO_GATHER", [(shape, ttype, None), (list(idx.shape), itype, None)], (out_shape, ttype),
                      {**opts, "indices_are_sorted": False})
    assert_same(model, [data(shape, ttype), idx])


@pytest.mark.parametrize("op", ["STABLEHLO_GATHER", "STABLEHLO_SCATTER"])
def test_implicit_index_vector_dim_is_refused_by_name(op):
    """index_vector_dim == rank(indices) makes the TFLite kernels read out of bounds."""
    opts = ({"offset_dims": [1], "collapsed_slice_dims": [0], "start_index_map": [0], "index_vector_dim": 1,
             "slice_sizes": [1, 4]} if op == "STABLEHLO_GATHER" else
            {"update_window_dims": [1], "inserted_window_dims": [0], "scatter_dims_to_operand_dims": [0],
             "index_vector_dim": 1, "update_computation_subgraph_index": 1})
    ins = [([5, 4], "FLOAT32", None), ([3], "INT32", None)] + ([([3, 4], "FLOAT32", None)] if op != "STABLEHLO_GATHER" else [])
    model = read_model(single_op(op, ins, ([3, 4] if op == "STABLEHLO_GATHER" else [5, 4], "FLOAT32"), opts,
                                 [body("STABLEHLO_ADD")]))
    ok, why = registry.support(model.main.operators[0], model.main)
    assert not ok and "index_vector_dim 1 equals the indices' rank" in why


def test_gather_int8_reads_stored_values_on_the_output_grid():
    shape, idx, opts, out_shape = _GATHERS["windows_clamped"]
    model = single_op("STABLEHLO_GATHER", [(shape, "INT8", None, q(0.02, -4)), (list(idx.shape), "INT32", None)],
                      (out_shape, "INT8", q(0.05, 2)), opts)
    assert_quantized_exact(model, [data(shape, "INT8", -128, 127), idx])


# -- STABLEHLO_SCATTER -------------------------------------------------------------------------------
_SCATTERS = {
    # name: (operand shape, indices, updates shape, options)
    "rows_with_duplicates_and_out_of_bounds": (
        [5, 3], np.array([[1], [3], [1], [7], [0]], np.int32), [5, 3],
        {"update_window_dims": [1], "inserted_window_dims": [0], "scatter_dims_to_operand_dims": [0],
         "index_vector_dim": 1}),
    "windows_partly_outside": (
        [4, 6], np.array([[0, 1], [3, 4], [1, 1]], np.int32), [3, 2, 3],
        {"update_window_dims": [1, 2], "inserted_window_dims": [], "scatter_dims_to_operand_dims": [0, 1],
         "index_vector_dim": 1}),
    "index_vector_first_window_first": (
        [3, 4, 5], np.array([[2, 0, 2], [4, 1, 4]], np.int64), [4, 3],
        {"update_window_dims": [0], "inserted_window_dims": [0, 2], "scatter_dims_to_operand_dims": [2, 0],
         "index_vector_dim": 0}),
    "points": (
        [6], np.array([[0], [5], [2], [5], [8]], np.int32), [5],
        {"update_window_dims": [], "inserted_window_dims": [0], "scatter_dims_to_operand_dims": [0],
         "index_vector_dim": 1}),
}
_SCATTER_BODY = {"update": None, "add": "STABLEHLO_ADD", "mul": "STABLEHLO_MULTIPLY", "max": "STABLEHLO_MAXIMUM",
                 "min": "STABLEHLO_MINIMUM"}


def scatter_model(case: str, kind: str, ttype: str, quant: tuple | None = None) -> tuple[bytes, np.ndarray, list]:
    shape, idx, ushape, opts = _SCATTERS[case]
    itype = "INT64" if idx.dtype == np.int64 else "INT32"
    qx, qu, qo = quant or (None, None, None)
    model = single_op("STABLEHLO_SCATTER", [(shape, ttype, None, qx), (list(idx.shape), itype, None),
                                            (ushape, ttype, None, qu)], (shape, ttype, qo),
                      {**opts, "indices_are_sorted": False, "unique_indices": False,
                       "update_computation_subgraph_index": 1}, [body(_SCATTER_BODY[kind], ttype)])
    return model, idx, [shape, ushape]


@pytest.mark.parametrize("case", sorted(_SCATTERS))
@pytest.mark.parametrize("kind", sorted(_SCATTER_BODY))
def test_scatter_float_every_body(case, kind):
    model, idx, (shape, ushape) = scatter_model(case, kind, "FLOAT32")
    assert_same(model, [data(shape, "FLOAT32"), idx, data(ushape, "FLOAT32")])


@pytest.mark.parametrize("case", ["rows_with_duplicates_and_out_of_bounds", "windows_partly_outside"])
@pytest.mark.parametrize("kind", sorted(_SCATTER_BODY))
def test_scatter_int32_every_body(case, kind):
    model, idx, (shape, ushape) = scatter_model(case, kind, "INT32")
    assert_same(model, [data(shape, "INT32", -9, 9), idx, data(ushape, "INT32", -9, 9)])


@pytest.mark.parametrize("kind", ["update", "max", "add"])
def test_scatter_int8_combines_stored_integers(kind):
    """The kernel works on stored int8 values whatever the scales: an add wraps around."""
    model, idx, (shape, ushape) = scatter_model("rows_with_duplicates_and_out_of_bounds", kind, "INT8",
                                                (q(0.1, 5), q(0.05, -3), q(0.2, 0)))
    x, u = data(shape, "INT8", -128, 127), data(ushape, "INT8", -128, 127)
    assert_quantized_exact(model, [x, idx, u])


def test_scatter_body_the_kernel_does_not_recognise_is_refused_by_name():
    shape, idx, ushape, opts = _SCATTERS["rows_with_duplicates_and_out_of_bounds"]
    model = single_op("STABLEHLO_SCATTER", [(shape, "FLOAT32", None), (list(idx.shape), "INT32", idx),
                                            (ushape, "FLOAT32", None)], (shape, "FLOAT32"),
                      {**opts, "update_computation_subgraph_index": 1}, [body("SUB")])
    with pytest.raises(UnsupportedOpError, match="computes SUB"):
        run_rebuilt(model, [data(shape, "FLOAT32"), data(ushape, "FLOAT32")])
    # and before anything is built: the model-wide check (inspect, convert's up-front list) names it
    with pytest.raises(UnsupportedOpError, match=r"operator 0 \(STABLEHLO_SCATTER\).*computes SUB"):
        check_supported(read_model(model))
    report = build_report(read_model(model))
    assert "computes SUB" in json.dumps(report)


# -- STABLEHLO_REDUCE_WINDOW -------------------------------------------------------------------------
def window_out_shape(shape, window, strides, base, wdil, padding):
    out = []
    for i, n in enumerate(shape):
        n = (n - 1) * base[i] + 1 + padding[2 * i] + padding[2 * i + 1]
        eff = (window[i] - 1) * wdil[i] + 1
        out.append(0 if n < eff else (n - eff) // strides[i] + 1)
    return out


_WINDOWS = {
    # name: (shape, window, strides, base dilations, window dilations, padding)
    "pool_2x2_stride_2": ([1, 4, 6, 2], [1, 2, 2, 1], [1, 2, 2, 1], [1] * 4, [1] * 4, [0] * 8),
    "same_padding_3x3": ([1, 5, 5, 1], [1, 3, 3, 1], [1, 1, 1, 1], [1] * 4, [1] * 4, [0, 0, 1, 1, 1, 1, 0, 0]),
    "window_dilation": ([2, 9, 3], [1, 3, 2], [1, 2, 1], [1, 1, 1], [1, 3, 2], [0] * 6),
    "base_dilation_and_crop": ([3, 5], [2, 3], [1, 2], [2, 3], [1, 1], [1, -1, -2, 2]),
    "whole_axis": ([3, 8], [1, 8], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
}
_WINDOW_BODY = {"add": "STABLEHLO_ADD", "tfl_add": "ADD", "max": "STABLEHLO_MAXIMUM", "tfl_max": "MAXIMUM",
                "min": "MINIMUM", "mul": "STABLEHLO_MULTIPLY"}


def window_model(case: str, body_op: str, ttype: str, init: np.ndarray | None, quant: tuple | None = None
                 ) -> tuple[bytes, list[int]]:
    shape, window, strides, base, wdil, padding = _WINDOWS[case]
    qx, qi, qo = quant or (None, None, None)
    model = single_op("STABLEHLO_REDUCE_WINDOW", [(shape, ttype, None, qx), ([], ttype, init, qi)],
                      (window_out_shape(shape, window, strides, base, wdil, padding), ttype, qo),
                      {"window_dimensions": window, "window_strides": strides, "base_dilations": base,
                       "window_dilations": wdil, "padding": padding, "body_subgraph_index": 1},
                      [body(body_op, ttype)])
    return model, shape


@pytest.mark.parametrize("case", sorted(_WINDOWS))
@pytest.mark.parametrize("kind", sorted(_WINDOW_BODY))
def test_reduce_window_float(case, kind):
    init = {"max": -np.inf, "tfl_max": -1.0, "min": np.inf, "mul": 1.0}.get(kind, 0.5)
    model, shape = window_model(case, _WINDOW_BODY[kind], "FLOAT32", np.array(init, np.float32))
    x = data(shape, "FLOAT32") if kind != "mul" else _rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
    assert_same(model, [x], atol=1e-5)


@pytest.mark.parametrize("case", ["pool_2x2_stride_2", "base_dilation_and_crop", "window_dilation"])
@pytest.mark.parametrize("kind", ["add", "max", "mul"])
def test_reduce_window_int32(case, kind):
    model, shape = window_model(case, _WINDOW_BODY[kind], "INT32", np.array(1 if kind == "mul" else -3, np.int32))
    assert_same(model, [data(shape, "INT32", -5, 5)])


def test_reduce_window_init_value_as_model_input():
    model, shape = window_model("same_padding_3x3", "STABLEHLO_MAXIMUM", "FLOAT32", None)
    assert_same(model, [data(shape, "FLOAT32"), np.array(0.25, np.float32)])


@pytest.mark.parametrize("body_op", ["LOGICAL_AND", "LOGICAL_OR", "STABLEHLO_AND"])
def test_reduce_window_logical_bodies_on_bool(body_op):
    model, shape = window_model("window_dilation", body_op, "BOOL", np.array(body_op != "LOGICAL_OR"))
    p_true = 0.15 if body_op == "LOGICAL_OR" else 0.85
    assert_same(model, [_rng.uniform(size=_WINDOWS["window_dilation"][0]) < p_true])


def test_reduce_window_logical_body_on_integers_gives_0_or_1():
    model, shape = window_model("pool_2x2_stride_2", "LOGICAL_OR", "INT32", np.array(0, np.int32))
    x = data(shape, "INT32", -3, 3) * (_rng.uniform(size=shape) < 0.3)
    assert_same(model, [x.astype(np.int32)])


@pytest.mark.parametrize("kind", ["max", "add"])
def test_reduce_window_int8_on_stored_integers(kind):
    model, shape = window_model("same_padding_3x3", _WINDOW_BODY[kind], "INT8", np.array(-128, np.int8),
                                (q(0.1, 2), q(0.1, 2), q(0.05, -1)))
    assert_quantized_exact(model, [data(shape, "INT8", -128, 127)])


def test_reduce_window_body_with_two_ops_is_refused():
    tensors = [("a", [], "FLOAT32"), ("b", [], "FLOAT32"), ("c", [], "FLOAT32"), ("d", [], "FLOAT32")]
    two = subgraph(tensors, [("ADD", [0, 1], [2]), ("MAXIMUM", [2, 1], [3])], [0, 1], [3], "body")
    model = single_op("STABLEHLO_REDUCE_WINDOW", [([4], "FLOAT32", None), ([], "FLOAT32", np.array(0, np.float32))],
                      ([3], "FLOAT32"), {"window_dimensions": [2], "window_strides": [1], "base_dilations": [1],
                                         "window_dilations": [1], "padding": [0, 0], "body_subgraph_index": 1},
                      [two])
    with pytest.raises(UnsupportedOpError, match="2 operators"):
        run_rebuilt(model, [data([4], "FLOAT32")])
    with pytest.raises(UnsupportedOpError, match="2 operators"):
        check_supported(read_model(model))


# -- STABLEHLO_CASE ----------------------------------------------------------------------------------
def case_model() -> bytes:
    t = [("x", [2, 3], "FLOAT32"), ("y", [2, 3], "FLOAT32"), ("z", [2, 3], "FLOAT32")]
    branches = [subgraph(t, [("STABLEHLO_ADD", [0, 1], [2])], [0, 1], [2], "add"),
                subgraph(t, [("STABLEHLO_MULTIPLY", [0, 1], [2])], [0, 1], [2], "mul"),
                subgraph(t, [("STABLEHLO_MAXIMUM", [0, 1], [2])], [0, 1], [2], "max")]
    return single_op("STABLEHLO_CASE", [([], "INT32", None), ([2, 3], "FLOAT32", None), ([2, 3], "FLOAT32", None)],
                     ([2, 3], "FLOAT32"), {"branch_subgraph_indices": [1, 2, 3]}, branches)


@pytest.mark.parametrize("index", [0, 1, 2, 3, -1])
def test_case_runs_the_indexed_branch_and_the_last_one_out_of_range(index):
    assert_same(case_model(), [np.array(index, np.int32), data([2, 3], "FLOAT32"), data([2, 3], "FLOAT32")])


# -- STABLEHLO_RNG_BIT_GENERATOR ---------------------------------------------------------------------
def rng_model(algorithm: str, n_state: int, out_shape: list[int], out_type: str) -> bytes:
    tensors = [("state", [n_state], "UINT64"), ("new_state", [n_state], "UINT64"), ("bits", out_shape, out_type)]
    return build_model(tensors=tensors, ops=[("STABLEHLO_RNG_BIT_GENERATOR", [0], [1, 2], None,
                                              {"algorithm": algorithm})], inputs=[0], outputs=[1, 2])


_STATES = {2: np.array([0x0123456789ABCDEF, 0x00000007_FFFFFFFD], np.uint64),  # low counter word wraps
           3: np.array([42, 0xFFFFFFFF_FFFFFFFE, 0xDEADBEEF_12345678], np.uint64)}


@pytest.mark.parametrize("algorithm,n_state", [("DEFAULT", 2), ("PHILOX", 3), ("THREEFRY", 2)])
@pytest.mark.parametrize("out_type,out_shape", [("UINT32", [3, 5]), ("INT32", [7]), ("UINT64", [2, 3]),
                                                ("INT64", [5])])
def test_rng_bit_generator_is_bit_exact(algorithm, n_state, out_type, out_shape):
    model = rng_model(algorithm, n_state, out_shape, out_type)
    state = _STATES[n_state]
    ref = run_interpreter(model, [state])
    got = run_rebuilt(model, [state])
    for r, g in zip(ref, got):
        assert r.dtype == g.dtype and r.shape == g.shape
        np.testing.assert_array_equal(g, r)
    assert np.unique(ref[1]).size == ref[1].size
