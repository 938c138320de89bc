"""Reductions, ARG_MAX/ARG_MIN and CUMSUM against the TFLite interpreter (float32, int32, bool, int8)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tensorflow as tf
import tflite

from tflite_inverter.model.reader import read_model

from .helpers import (
    assert_float_close,
    assert_quantized_close,
    convert_single,
    quantized_inputs,
    random_like,
    run_builtin,
    run_interpreter,
    run_rebuilt,
    uniform_calibration,
)
from .tflite_builder import build_model

F32 = tf.float32
SHAPE = [2, 3, 4]


REDUCERS = {"MEAN": tf.reduce_mean, "SUM": tf.reduce_sum, "REDUCE_PROD": tf.reduce_prod,
            "REDUCE_MAX": tf.reduce_max, "REDUCE_MIN": tf.reduce_min}
AXES = [[1], [-1], [0, 2], [-1, 1], [0, 1, 2]]


@pytest.mark.parametrize("axes", AXES, ids=str)
@pytest.mark.parametrize("keep_dims", [False, True])
@pytest.mark.parametrize("op", sorted(REDUCERS))
def test_reducer_float_constant_axes(op, keep_dims, axes):
    specs = [tf.TensorSpec(SHAPE, F32)]
    model = convert_single(lambda x: REDUCERS[op](x, axis=axes, keepdims=keep_dims), specs, op)
    assert read_model(model).main.operators[0].options.get("keep_dims", False) is keep_dims
    assert_float_close(model, random_like(specs, seed=1, low=0.5, high=1.5), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("keep_dims", [False, True])
@pytest.mark.parametrize("op", sorted(REDUCERS))
def test_reducer_axis_given_as_a_tensor(op, keep_dims):
    specs = [tf.TensorSpec(SHAPE, F32), tf.TensorSpec([2], tf.int32)]
    model = convert_single(lambda x, a: REDUCERS[op](x, axis=a, keepdims=keep_dims), specs, op)
    assert not read_model(model).main.tensors[read_model(model).main.operators[0].inputs[1]].is_constant
    x = random_like(specs[:1], seed=2, low=0.5, high=1.5)[0]
    assert_float_close(model, [x, np.array([0, -1], np.int32)], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op,fn", [("REDUCE_ANY", tf.reduce_any), ("REDUCE_ALL", tf.reduce_all)])
@pytest.mark.parametrize("keep_dims", [False, True])
@pytest.mark.parametrize("axes", [[1], [-1, 0]], ids=str)
def test_logical_reducer_matches_interpreter(op, fn, keep_dims, axes):
    specs = [tf.TensorSpec(SHAPE, tf.bool)]
    model = convert_single(lambda x: fn(x, axis=axes, keepdims=keep_dims), specs, op)
    x = np.random.default_rng(3).random(SHAPE) < 0.7
    assert_float_close(model, [x])


@pytest.mark.parametrize("op", ["MEAN", "SUM", "REDUCE_PROD", "REDUCE_MAX", "REDUCE_MIN"])
def test_reducer_int32(op):
    """MEAN on integers truncates the quotient toward zero in both."""
    specs = [tf.TensorSpec(SHAPE, tf.int32)]
    model = convert_single(lambda x: REDUCERS[op](x, axis=[0, 2]), specs, op)
    x = np.random.default_rng(4).integers(-5, 6, size=SHAPE).astype(np.int32)
    assert_float_close(model, [x])


def _patch_int32_constant(model: bytes, old: list[int], new: list[int]) -> bytes:
    """Overwrite the data of the (unique) int32 constant buffer holding ``old``."""
    pattern = struct.pack(f"<{len(old)}i", *old)
    m = tflite.Model.GetRootAs(model, 0)
    buf = bytearray(model)
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength() == len(pattern):
            start = b._tab.Vector(b._tab.Offset(4))
            if bytes(buf[start:start + len(pattern)]) == pattern:
                buf[start:start + len(pattern)] = struct.pack(f"<{len(new)}i", *new)
                return bytes(buf)
    raise AssertionError("constant not found")


def test_reducer_duplicate_and_negative_axes_resolved_like_tflite():
    """TFLite resolves the axis set (negative -> positive, duplicates dropped); TensorFlow rejects
    duplicates, so the rebuilder de-duplicates a constant axis first."""
    specs = [tf.TensorSpec(SHAPE, F32)]
    model = convert_single(lambda x: tf.reduce_sum(x, axis=[0, 2]), specs, "SUM")
    patched = _patch_int32_constant(model, [0, 2], [2, -1])  # the same axis twice
    x = random_like(specs, seed=5)
    ref = run_interpreter(patched, x)[0]
    np.testing.assert_allclose(ref, x[0].sum(axis=2), rtol=1e-6)
    np.testing.assert_allclose(run_rebuilt(patched, x)[0], ref, rtol=1e-6, atol=1e-6)


# -- int8 -------------------------------------------------------------------------------------------------
INT8_CASES = [
    ("MEAN", lambda x: tf.reduce_mean(x, axis=[1, 2]), -4, 4),  # the spatial-mean fast path
    ("MEAN", lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True), 0, 6),
    ("MEAN", lambda x: tf.reduce_mean(x, axis=-1), -4, 4),
    ("MEAN", lambda x: tf.reduce_mean(x, axis=[0, 1, 2, 3]), -4, 4),
    ("SUM", lambda x: tf.reduce_sum(x, axis=[1, 2]), -4, 4),
    ("SUM", lambda x: tf.reduce_sum(x, axis=-1, keepdims=True), -1, 1),
    ("REDUCE_MAX", lambda x: tf.reduce_max(x, axis=[1, 2]), -4, 4),
    ("REDUCE_MIN", lambda x: tf.reduce_min(x, axis=3), -4, 4),
    ("REDUCE_PROD", lambda x: tf.reduce_prod(x, axis=3), 0.5, 1.5),
]


@pytest.mark.parametrize("case", range(len(INT8_CASES)), ids=lambda i: f"{INT8_CASES[i][0]}-{i}")
def test_reducer_int8_within_one_lsb(case):
    op, fn, lo, hi = INT8_CASES[case]
    specs = [tf.TensorSpec([1, 6, 6, 8], F32)]
    model = convert_single(fn, specs, op, "int8", uniform_calibration(specs, lo, hi))
    x = random_like(specs, seed=6, low=lo, high=hi)
    assert_quantized_close(model, quantized_inputs(model, x), max_lsb=1, min_within_1=1.0)


# -- ARG_MAX / ARG_MIN ------------------------------------------------------------------------------------
ARGS = {"ARG_MAX": tf.math.argmax, "ARG_MIN": tf.math.argmin}


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("out_type", [tf.int32, tf.int64])
@pytest.mark.parametrize("op", sorted(ARGS))
def test_arg_float_output_types_and_ties(op, out_type, axis):
    specs = [tf.TensorSpec(SHAPE, F32)]
    model = convert_single(lambda x: ARGS[op](x, axis=axis, output_type=out_type), specs, op)
    m = read_model(model)
    assert m.main.operators[0].options["output_type"] == out_type.name.upper()
    x = np.random.default_rng(7).integers(0, 3, size=SHAPE).astype(np.float32)  # many ties
    ref = run_interpreter(model, [x])[0]
    assert ref.dtype == out_type.as_numpy_dtype
    assert_float_close(model, [x])


@pytest.mark.parametrize("op", sorted(ARGS))
def test_arg_axis_given_as_a_tensor(op):
    specs = [tf.TensorSpec(SHAPE, F32), tf.TensorSpec([], tf.int32)]
    model = convert_single(lambda x, a: ARGS[op](x, axis=a, output_type=tf.int32), specs, op)
    x = random_like(specs[:1], seed=8)[0]
    for axis in (1, -1):
        assert_float_close(model, [x, np.array(axis, np.int32)])


@pytest.mark.parametrize("op", sorted(ARGS))
def test_arg_int32_input(op):
    specs = [tf.TensorSpec(SHAPE, tf.int32)]
    model = convert_single(lambda x: ARGS[op](x, axis=2, output_type=tf.int32), specs, op)
    assert_float_close(model, [np.random.default_rng(9).integers(-3, 3, size=SHAPE).astype(np.int32)])


@pytest.mark.parametrize("op", sorted(ARGS))
def test_arg_int8_exact(op):
    specs = [tf.TensorSpec([4, 32], F32)]
    model = convert_single(lambda x: ARGS[op](x, axis=1), specs, op, "int8", uniform_calibration(specs, -2, 2))
    x = random_like(specs, seed=10, low=-2, high=2)
    assert_float_close(model, quantized_inputs(model, x))  # integer indices: exact


def test_arg_check_refuses_non_integer_output_type():
    from tflite_inverter.ops.registry import support

    specs = [tf.TensorSpec(SHAPE, F32)]
    m = read_model(convert_single(lambda x: tf.math.argmax(x, axis=1), specs, "ARG_MAX"))
    op = m.main.operators[0]
    sg = m.main
    bad = sg.tensors[op.outputs[0]]
    object.__setattr__(bad, "type_name", "FLOAT32")  # a writer that put the schema default there
    ok, why = support(op, sg)
    assert not ok and "FLOAT32" in why


# -- CUMSUM -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 2, -2])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("exclusive", [False, True])
def test_cumsum_float_every_option(exclusive, reverse, axis):
    specs = [tf.TensorSpec(SHAPE, F32)]
    model = convert_single(lambda x: tf.cumsum(x, axis=axis, exclusive=exclusive, reverse=reverse), specs, "CUMSUM")
    o = read_model(model).main.operators[0].options
    assert (o.get("exclusive", False), o.get("reverse", False)) == (exclusive, reverse)
    assert_float_close(model, random_like(specs, seed=11), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
def test_cumsum_integer(dtype):
    specs = [tf.TensorSpec(SHAPE, dtype)]
    model = convert_single(lambda x: tf.cumsum(x, axis=1, exclusive=True, reverse=True), specs, "CUMSUM")
    x = np.random.default_rng(12).integers(-9, 9, size=SHAPE).astype(dtype.as_numpy_dtype)
    assert_float_close(model, [x])


def test_cumsum_axis_given_as_a_tensor():
    specs = [tf.TensorSpec(SHAPE, F32), tf.TensorSpec([], tf.int32)]
    model = convert_single(lambda x, a: tf.cumsum(x, axis=a, reverse=True), specs, "CUMSUM")
    x = random_like(specs[:1], seed=13)[0]
    for axis in (0, -1):
        assert_float_close(model, [x, np.array(axis, np.int32)], rtol=1e-6, atol=1e-6)


# -- quantized reducers built with full control over scales and zero points --------------------------
_INFO = {"INT8": np.iinfo(np.int8), "UINT8": np.iinfo(np.uint8), "INT16": np.iinfo(np.int16)}

#: (input shape, axes, keep_dims): the 4-D spatial special case, keep_dims off, the last axis,
#: every axis, a middle axis, negative + first axes.
REDUCE_SHAPES = [([1, 8, 8, 16], [1, 2], True), ([2, 7, 5, 6], [1, 2], False), ([2, 4, 4, 20], [3], False),
                 ([2, 4, 4, 20], [3], True), ([1, 4, 6, 5], [0, 1, 2, 3], True), ([3, 9, 4], [1], True),
                 ([3, 5, 7], [-1, 0], False), ([3, 40, 5], [1], False)]
#: (input scale, zero point), (output scale, zero point) for int8; uint8 adds 128, int16 takes zero points 0.
REDUCE_PARAMS = {"same": ((0.05, 3), (0.05, 3)), "ratio_2.5": ((0.05, 3), (0.02, -5)),
                 "ratio_0.4": ((0.02, -5), (0.05, 3)), "zp_extremes": ((0.03, 127), (0.07, -128)),
                 "ratio_0.01": ((0.01, 0), (1.0, 0)), "ratio_6.2": ((0.013, -100), (0.0021, 120))}


def reducer_model(op: str, dtype: str, shape: list[int], axes: list[int], keep: bool, params: str,
                  out_scale_factor: float = 1.0) -> bytes:
    (si, zi), (so, zo) = REDUCE_PARAMS[params]
    off = 128 if dtype == "UINT8" else 0
    zi, zo = (0, 0) if dtype == "INT16" else (zi + off, zo + off)
    rank = len(shape)
    red = {a % rank for a in axes}
    out = [1 if i in red else d for i, d in enumerate(shape)] if keep else [d for i, d in enumerate(shape) if i not in red]
    tensors = [("x", shape, dtype, None, {"scale": [si], "zero_point": [zi]}),
               ("axes", [len(axes)], "INT32", np.array(axes, np.int32)),
               ("y", out, dtype, None, {"scale": [so * out_scale_factor], "zero_point": [zo]})]
    return build_model(tensors=tensors, ops=[(op, [0, 1], [2], "ReducerOptions", {"keep_dims": keep})],
                       inputs=[0], outputs=[2])


def _codes(dtype: str, shape: list[int], seed: int) -> np.ndarray:
    info = _INFO[dtype]
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape).astype(info.dtype)


@pytest.mark.parametrize("params", sorted(REDUCE_PARAMS))
@pytest.mark.parametrize("dtype", ["INT8", "UINT8"])
@pytest.mark.parametrize("op", ["REDUCE_MAX", "REDUCE_MIN"])
@pytest.mark.parametrize("shape,axes,keep", REDUCE_SHAPES[:3] + REDUCE_SHAPES[5:7])
def test_reduce_max_min_8bit_select_raw_codes(op, dtype, params, shape, axes, keep):
    """The default interpreter (XNNPACK) takes other output parameters and copies the selected codes;
    the builtin kernels refuse them (reduce.cc requires equal scale and zero point)."""
    model = reducer_model(op, dtype, shape, axes, keep, params)
    x = _codes(dtype, shape, 11)
    ref = run_interpreter(model, [x])[0]
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], ref)


@pytest.mark.parametrize("params", sorted(REDUCE_PARAMS))
@pytest.mark.parametrize("dtype", ["INT8", "UINT8", "INT16"])
@pytest.mark.parametrize("shape,axes,keep", REDUCE_SHAPES)
def test_mean_quantized_exact(dtype, params, shape, axes, keep):
    """8-bit: XNNPACK's float32 rescale with ties to an even code; int16: the builtin integer kernel.
    The 4-D spatial keep_dims case is a separate kernel in the builtin and XNNPACK alike."""
    model = reducer_model("MEAN", dtype, shape, axes, keep, params)
    for seed in (1, 2):
        x = _codes(dtype, shape, seed)
        np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


@pytest.mark.parametrize("params", sorted(REDUCE_PARAMS))
@pytest.mark.parametrize("dtype", ["INT8", "UINT8", "INT16"])
@pytest.mark.parametrize("shape,axes,keep", REDUCE_SHAPES)
def test_sum_quantized_exact(dtype, params, shape, axes, keep):
    """The output scale is widened 8x so most sums stay on the grid (and some saturate)."""
    model = reducer_model("SUM", dtype, shape, axes, keep, params, out_scale_factor=8.0)
    for seed in (1, 2):
        x = _codes(dtype, shape, seed)
        np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


@pytest.mark.parametrize("op", ["MEAN", "SUM"])
def test_mean_sum_ties_round_to_an_even_code(op):
    """Rows whose exact results sit on every half step: XNNPACK rounds them to an even stored code
    (ties to even after adding the output zero point), the builtin kernels do not."""
    n, sums = 20, np.arange(-400, 401)
    rows = np.stack([np.full(n, s // n) + (np.arange(n) < s % n) for s in sums + 3 * n])
    x = rows.reshape(1, len(sums), n).astype(np.int8)
    so = 0.02 if op == "MEAN" else 0.02 * n  # both: result code = 0.125 * (sum of q - zero point) - 5
    tensors = [("x", list(x.shape), "INT8", None, {"scale": [0.05], "zero_point": [3]}),
               ("axes", [1], "INT32", np.array([2], np.int32)),
               ("y", [1, len(sums)], "INT8", None, {"scale": [so], "zero_point": [-5]})]
    model = build_model(tensors=tensors, ops=[(op, [0, 1], [2], "ReducerOptions", {"keep_dims": False})],
                        inputs=[0], outputs=[2])
    ref = run_interpreter(model, [x])[0].astype(int)
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], ref)
    ties = sums % 8 == 4
    assert ties.sum() == 100 and np.all(ref[0, ties] % 2 == 0)  # every tie on an even code
    off = run_builtin(model, [x])[0].astype(int) - ref
    assert np.abs(off).max() == 1 and np.count_nonzero(off[0, ties]) == 50  # half the ties round otherwise
    if op == "SUM":  # round_half_away of the same float32 value: only the ties differ
        assert not off[0, ~ties].any()


@pytest.mark.parametrize("ratio", [2.0 ** -12, 2.0 ** -8, 255.0, 2.0 ** 12])
@pytest.mark.parametrize("dtype", ["INT8", "UINT8"])
@pytest.mark.parametrize("op", ["MEAN", "SUM"])
def test_mean_sum_8bit_extreme_scale_ratios_exact(op, dtype, ratio):
    """Input/output scale ratios at and beyond XNNPACK's usual 2**-8..2**8 limits of other ops."""
    off = 128 if dtype == "UINT8" else 0
    shape, n = [3, 64, 5], 64
    so = 0.05 / ratio * (n if op == "SUM" else 1)
    tensors = [("x", shape, dtype, None, {"scale": [0.05], "zero_point": [3 + off]}),
               ("axes", [1], "INT32", np.array([1], np.int32)),
               ("y", [3, 5], dtype, None, {"scale": [so], "zero_point": [-5 + off]})]
    model = build_model(tensors=tensors, ops=[(op, [0, 1], [2], "ReducerOptions", {"keep_dims": False})],
                        inputs=[0], outputs=[2])
    for seed in (1, 2, 3):
        x = _codes(dtype, shape, seed)
        np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


@pytest.mark.parametrize("params", ["same", "ratio_2.5"])
@pytest.mark.parametrize("dtype", ["INT8", "INT16"])
@pytest.mark.parametrize("shape,axes,keep,small", [([2, 3, 2, 3], [1, 2], True, True), ([3, 9, 4], [1], False, True),
                                                   ([2, 4, 4, 20], [3], False, False), ([1, 4, 6, 5], [0, 1, 2, 3], True, False),
                                                   ([3, 5, 7], [-1, 0], False, False)])
def test_reduce_prod_quantized_exact(dtype, params, shape, axes, keep, small):
    """The kernel's rescaled running product, including products that saturate and wrap its int32
    accumulator (full-range inputs over 20 elements)."""
    model = reducer_model("REDUCE_PROD", dtype, shape, axes, keep, params, out_scale_factor=20.0)
    x = _codes(dtype, shape, 4)
    if small:
        x = (x % 7).astype(x.dtype) - 3
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("op", ["MEAN", "SUM", "REDUCE_PROD"])
def test_quantized_reducers_exact_on_a_dynamic_batch(op, keep):
    """Only the reduced dimensions need to be static: a batch of -1 keeps the integer emulation."""
    q = lambda s, z: {"scale": [s], "zero_point": [z]}  # noqa: E731
    out_scale = {"MEAN": 0.02, "SUM": 0.16, "REDUCE_PROD": 0.4}[op]
    tensors = [("x", [1, 6, 5], "INT8", None, q(0.05, 3), {"shape_signature": [-1, 6, 5]}),
               ("axes", [1], "INT32", np.array([1], np.int32)),
               ("y", [1, 1, 5] if keep else [1, 5], "INT8", None, q(out_scale, -5),
                {"shape_signature": [-1, 1, 5] if keep else [-1, 5]})]
    model = build_model(tensors=tensors, ops=[(op, [0, 1], [2], "ReducerOptions", {"keep_dims": keep})],
                        inputs=[0], outputs=[2])
    x = _codes("INT8", [40, 6, 5], 3)
    if op == "REDUCE_PROD":
        x = (x % 7).astype(np.int8) - 3 + 3
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


def _instance_norm_island(eps: float) -> bytes:
    """int8 MEAN -> DEQUANTIZE, a float island ``(x - m) * RSQRT(MEAN(SQUARED_DIFFERENCE(x, m)) + eps)``
    and QUANTIZE back, as style-transfer networks quantize instance normalization. With eps = 0 a
    constant channel has variance 0 and XNNPACK's RSQRT(0) is NaN, so the tests keep eps > 0."""
    q = lambda s, z: {"scale": [s], "zero_point": [z]}  # noqa: E731
    tensors = [("x", [1, 8, 8, 4], "INT8", None, q(0.05, -10)), ("axes", [2], "INT32", np.array([1, 2], np.int32)),
               ("m_q", [1, 1, 1, 4], "INT8", None, q(0.02, 5)), ("m", [1, 1, 1, 4], "FLOAT32"),
               ("xf", [1, 8, 8, 4], "FLOAT32"), ("sd", [1, 8, 8, 4], "FLOAT32"), ("var", [1, 1, 1, 4], "FLOAT32"),
               ("eps", [], "FLOAT32", np.array(eps, np.float32)), ("ve", [1, 1, 1, 4], "FLOAT32"),
               ("rs", [1, 1, 1, 4], "FLOAT32"), ("c", [1, 8, 8, 4], "FLOAT32"), ("y", [1, 8, 8, 4], "FLOAT32"),
               ("yq", [1, 8, 8, 4], "INT8", None, q(0.1, 0)), ("yq_mean", [1, 1, 1, 4], "INT8", None, q(0.1, 0)),
               ("rsq", [1, 1, 1, 4], "INT8", None, q(0.1, 0)), ("rsq_mean", [1, 1, 1, 1], "INT8", None, q(0.1, 0)),
               ("all", [4], "INT32", np.array([0, 1, 2, 3], np.int32))]
    ops = [("MEAN", [0, 1], [2], "ReducerOptions", {"keep_dims": True}), ("DEQUANTIZE", [2], [3]),
           ("DEQUANTIZE", [0], [4]), ("SQUARED_DIFFERENCE", [4, 3], [5]),
           ("MEAN", [5, 1], [6], "ReducerOptions", {"keep_dims": True}), ("ADD", [6, 7], [8], None, {}),
           ("RSQRT", [8], [9]), ("SUB", [4, 3], [10], None, {}), ("MUL", [10, 9], [11], None, {}),
           ("QUANTIZE", [11], [12]), ("MEAN", [12, 1], [13], "ReducerOptions", {"keep_dims": True}),
           ("QUANTIZE", [9], [14]), ("MEAN", [14, 16], [15], "ReducerOptions", {"keep_dims": True})]
    return build_model(tensors=tensors, ops=ops, inputs=[0], outputs=[12, 13, 14, 15, 9])


def test_int8_mean_around_a_float_instance_norm_is_exact():
    """Issue 10's style-transfer pattern with a constant channel (variance 0, eps keeps RSQRT finite):
    no NaN, and every quantized output equals the interpreter's. Left out, eps = 0: the default
    interpreter's XNNPACK RSQRT(0) is NaN where the builtin kernel's (and TensorFlow's) is inf, so the
    pattern's outputs depend on the kernel; pinned below."""
    model = _instance_norm_island(1e-3)
    x = _codes("INT8", [1, 8, 8, 4], 8)
    x[..., 0] = 20
    ref, got = run_interpreter(model, [x]), run_rebuilt(model, [x])
    assert not np.isnan(got[4]).any() and not np.isnan(ref[4]).any()
    np.testing.assert_allclose(got[4], ref[4], rtol=1e-6)  # float RSQRT: an ulp apart at most
    for r, g in zip(ref[:4], got[:4]):
        np.testing.assert_array_equal(g, r)
    no_eps = _instance_norm_island(0.0)
    assert np.isnan(run_interpreter(no_eps, [x])[4][..., 0]).all()
    assert np.isposinf(run_builtin(no_eps, [x])[4][..., 0]).all()


def test_rsqrt_of_zero_reaching_quantize_gives_the_top_code():
    """RSQRT(0) from a float island feeding QUANTIZE: the default interpreter's XNNPACK computes NaN
    and quantizes it to 127; the rebuild's inf saturates at 127 too (it used to become NaN in the
    straight-through rounding, and the next MEAN spread it over the whole reduction)."""
    q = lambda s, z: {"scale": [s], "zero_point": [z]}  # noqa: E731
    tensors = [("x", [1, 4], "FLOAT32"), ("r", [1, 4], "FLOAT32"), ("rq", [1, 4], "INT8", None, q(0.1, 0)),
               ("axis", [1], "INT32", np.array([1], np.int32)), ("mq", [1], "INT8", None, q(0.1, 0)),
               ("m", [1], "FLOAT32")]
    ops = [("RSQRT", [0], [1]), ("QUANTIZE", [1], [2]), ("MEAN", [2, 3], [4], "ReducerOptions", {"keep_dims": False}),
           ("DEQUANTIZE", [4], [5])]
    model = build_model(tensors=tensors, ops=ops, inputs=[0], outputs=[5, 2])
    x = np.array([[0.0, 1.0, 4.0, 0.25]], np.float32)
    ref, got = run_interpreter(model, [x]), run_rebuilt(model, [x])
    assert ref[1][0, 0] == 127 and not np.isnan(got[0]).any()
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)


def test_infinite_float_saturates_when_quantized():
    """+-inf reaching QUANTIZE: the default interpreter (XNNPACK) saturates at the grid's ends, the
    builtin kernel sends +inf to the lowest code; the rebuild follows the default, NaN-free behind it."""
    q = lambda s, z: {"scale": [s], "zero_point": [z]}  # noqa: E731
    tensors = [("x", [2, 4], "FLOAT32"), ("xq", [2, 4], "INT8", None, q(0.1, 3)),
               ("axis", [1], "INT32", np.array([1], np.int32)), ("mq", [2], "INT8", None, q(0.1, 3)),
               ("m", [2], "FLOAT32")]
    ops = [("QUANTIZE", [0], [1]), ("MEAN", [1, 2], [3], "ReducerOptions", {"keep_dims": False}),
           ("DEQUANTIZE", [3], [4])]
    model = build_model(tensors=tensors, ops=ops, inputs=[0], outputs=[4, 1])
    x = np.array([[np.inf, 1.0, -2.0, 0.5], [-np.inf, 3.0, 1.0, np.inf]], np.float32)
    ref, got = run_interpreter(model, [x]), run_rebuilt(model, [x])
    assert ref[1][0, 0] == 127 and ref[1][1, 0] == -128 and not np.isnan(got[0]).any()
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g, r)
    assert run_builtin(model, [x])[1][0, 0] == -128


def test_uint8_reduce_prod_is_refused_by_the_interpreter():
    """The module doc's claim: REDUCE_PROD has no uint8 kernel (so there is nothing to reproduce)."""
    model = reducer_model("REDUCE_PROD", "UINT8", [3, 5, 7], [1], False, "same")
    with pytest.raises(RuntimeError, match="Unsupported quantized data type"):
        run_interpreter(model, [_codes("UINT8", [3, 5, 7], 1)])
