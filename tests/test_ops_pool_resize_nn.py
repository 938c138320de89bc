"""Pooling, resizing and normalization rebuilders against the TFLite interpreter.

Float models come from TFLiteConverter; L2_POOL_2D (which no TensorFlow op converts to), fused
activations on pools and the align_corners + half_pixel_centers nearest-neighbor combination are
built directly or patched with ``tests/tflite_builder.py``. Quantized pools and softmax must match the
interpreter's integers exactly in faithful mode.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.errors import UnsupportedOpError
from tflite_inverter.model.reader import read_model
from tflite_inverter.ops.resize import nearest_indices

from .helpers import (
    assert_float_close,
    check_int16,
    check_quantized,
    converted,
    op_names,
    quantized_inputs,
    random_like,
    reference_activation,
    round_trip_ops,
    run_builtin,
    run_interpreter,
    run_rebuilt,
    to_tflite,
)
from .tflite_builder import build_model, op_name_of, patch_model

S = tf.TensorSpec
F32 = tf.float32


def set_op_options(model: bytes, op: str, **changes) -> bytes:
    """Change option fields of every ``op`` (whose options table the converter already wrote)."""
    def fn(tree):
        for o in tree["subgraphs"][0]["operators"]:
            if op_name_of(tree, o) == op:
                o["builtin_options"][1].update(changes)

    return patch_model(model, fn)


SPEC = [S([2, 9, 10, 3], F32)]
POOLS = {"AVERAGE_POOL_2D": tf.nn.avg_pool2d, "MAX_POOL_2D": tf.nn.max_pool2d}


# -- pooling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", sorted(POOLS))
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("ksize,strides", [(2, 2), (3, 2), ([3, 2], [1, 2]), (3, 1)])
def test_pool_float_padding_sizes_strides(op, padding, ksize, strides):
    model = converted(lambda x: POOLS[op](x, ksize, strides, padding), SPEC, op)
    assert_float_close(model, random_like(SPEC), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", sorted(POOLS))
@pytest.mark.parametrize("act", ["RELU", "RELU6", "RELU_N1_TO_1"])
def test_pool_fused_activation_float(op, act):
    model = set_op_options(converted(lambda x: POOLS[op](x, 2, 2, "SAME"), SPEC, op), op,
                           fused_activation_function=act)
    x = random_like(SPEC, low=-8, high=8)
    assert_float_close(model, x, rtol=1e-6, atol=1e-6)
    got = run_rebuilt(model, x)[0]
    np.testing.assert_allclose(got, reference_activation(POOLS[op](x[0], 2, 2, "SAME").numpy(), act), atol=1e-6)


@pytest.mark.parametrize("mode", ["int8", "uint8"])
@pytest.mark.parametrize("op", sorted(POOLS))
@pytest.mark.parametrize("ksize,padding", [(2, "SAME"), (3, "SAME"), (4, "VALID")])
def test_pool_integer_is_bit_exact(mode, op, ksize, padding):
    """Even window counts make ties: the integer kernel rounds them in the raw integer domain."""
    model = converted(lambda x: POOLS[op](x, ksize, 2, padding), SPEC, op, mode)
    check_quantized(model, SPEC)


@pytest.mark.parametrize("act", ["RELU", "RELU6"])
def test_average_pool_int8_fused_activation_is_bit_exact(act):
    model = converted(lambda x: tf.nn.avg_pool2d(x, 2, 2, "SAME"), SPEC, "AVERAGE_POOL_2D", "int8",
                      calibration=[[np.random.default_rng(i).uniform(-8, 8, [2, 9, 10, 3])] for i in range(8)])
    model = set_op_options(model, "AVERAGE_POOL_2D", fused_activation_function=act)
    check_quantized(model, SPEC, low=-8, high=8)


def _l2_pool_model(padding: str, act: str = "NONE", stride: int = 2, ksize: int = 3) -> bytes:
    return build_model(
        tensors=[("x", [1, 7, 8, 3], "FLOAT32"), ("y", [1, 1, 1, 3], "FLOAT32")],
        ops=[("L2_POOL_2D", [0], [1], "Pool2DOptions",
              {"padding": padding, "stride_h": stride, "stride_w": stride, "filter_height": ksize,
               "filter_width": ksize, "fused_activation_function": act})],
        inputs=[0], outputs=[1])


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("act", ["NONE", "RELU6", "RELU_N1_TO_1"])
def test_l2_pool_float(padding, act):
    model = _l2_pool_model(padding, act)
    x = random_like([S([1, 7, 8, 3], F32)], low=-3, high=3)
    assert_float_close(model, x, rtol=1e-5, atol=1e-6)
    xs = x[0].astype(np.float64) ** 2
    ref = np.sqrt(tf.nn.avg_pool2d(xs, 3, 2, padding).numpy())
    np.testing.assert_allclose(run_rebuilt(model, x)[0], reference_activation(ref, act), rtol=1e-5, atol=1e-6)


def test_pool_unknown_padding_is_refused_by_name():
    model = set_op_options(converted(lambda x: tf.nn.max_pool2d(x, 2, 2, "SAME"), SPEC, "MAX_POOL_2D"),
                           "MAX_POOL_2D", padding=5)
    with pytest.raises(UnsupportedOpError, match="padding"):
        run_rebuilt(model, random_like(SPEC))


# -- resize ----------------------------------------------------------------------------------------
RSPEC = [S([1, 5, 7, 3], F32)]
FLAGS = [(False, False), (True, False), (False, True)]


@pytest.mark.parametrize("align,half", FLAGS)
@pytest.mark.parametrize("size", [[10, 14], [8, 5], [1, 1], [13, 21]])
def test_resize_bilinear_float_flags_and_sizes(align, half, size):
    model = converted(lambda x: tf.compat.v1.image.resize_bilinear(x, size, align_corners=align,
                                                                   half_pixel_centers=half), RSPEC,
                      "RESIZE_BILINEAR")
    op = read_model(model).main.operators[op_names(model).index("RESIZE_BILINEAR")]
    assert (op.options["align_corners"], op.options["half_pixel_centers"]) == (align, half)
    assert_float_close(model, random_like(RSPEC), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align,half", FLAGS)
@pytest.mark.parametrize("size", [[10, 14], [8, 5], [3, 4], [13, 21]])
def test_resize_nearest_float_flags_and_sizes(align, half, size):
    model = converted(lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, size, align_corners=align,
                                                                           half_pixel_centers=half), RSPEC,
                      "RESIZE_NEAREST_NEIGHBOR")
    assert_float_close(model, random_like(RSPEC), rtol=0, atol=0)


@pytest.mark.parametrize("op,fn", [("RESIZE_BILINEAR", tf.compat.v1.image.resize_bilinear),
                                   ("RESIZE_NEAREST_NEIGHBOR", tf.compat.v1.image.resize_nearest_neighbor)])
def test_resize_size_from_a_tensor(op, fn):
    specs = [S([1, 5, 7, 3], F32), S([2], tf.int32)]
    model = converted(lambda x, s: fn(x, s, half_pixel_centers=True), specs, op)
    size = np.array([9, 4], np.int32)
    x = random_like(specs[:1])[0]
    ref = run_interpreter(model, [x, size])[0]
    got = run_rebuilt(model, [x, size])[0]
    assert got.shape == ref.shape == (1, 9, 4, 3)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [[10, 14], [4, 3], [13, 21]])
def test_resize_nearest_align_corners_with_half_pixel_centers(size):
    """TensorFlow refuses the combination; TFLite's kernel rounds ``(i + 0.5) * (in-1)/(out-1)``."""
    base = converted(lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, size, align_corners=True), RSPEC,
                     "RESIZE_NEAREST_NEIGHBOR")
    model = set_op_options(base, "RESIZE_NEAREST_NEIGHBOR", half_pixel_centers=True)
    x = random_like(RSPEC)
    assert_float_close(model, x, rtol=0, atol=0)
    rows = nearest_indices(5, size[0], True, True)
    cols = nearest_indices(7, size[1], True, True)
    np.testing.assert_array_equal(run_rebuilt(model, x)[0], x[0][:, rows][:, :, cols])


def test_resize_bilinear_both_flags_is_refused_by_name():
    base = converted(lambda x: tf.compat.v1.image.resize_bilinear(x, [9, 9], align_corners=True), RSPEC,
                     "RESIZE_BILINEAR")
    model = set_op_options(base, "RESIZE_BILINEAR", half_pixel_centers=True)
    with pytest.raises(UnsupportedOpError, match="half_pixel_centers"):
        run_rebuilt(model, random_like(RSPEC))


@pytest.mark.parametrize("mode", ["int8", "uint8"])
@pytest.mark.parametrize("align,half", FLAGS)
@pytest.mark.parametrize("size", [[10, 13], [3, 4]])
def test_resize_integer_is_bit_exact(mode, align, half, size):
    """8-bit bilinear resize follows XNNPACK's 11-bit fixed-point interpolation."""
    bil = converted(lambda x: tf.compat.v1.image.resize_bilinear(x, size, align_corners=align,
                                                                 half_pixel_centers=half), RSPEC,
                    "RESIZE_BILINEAR", mode)
    check_quantized(bil, RSPEC)
    nn = converted(lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, size, align_corners=align,
                                                                        half_pixel_centers=half), RSPEC,
                   "RESIZE_NEAREST_NEIGHBOR", mode)
    check_quantized(nn, RSPEC)


def test_resize_bilinear_integer_clean_rebuild_is_within_one_lsb():
    model = converted(lambda x: tf.compat.v1.image.resize_bilinear(x, [10, 13], half_pixel_centers=True), RSPEC,
                      "RESIZE_BILINEAR", "int8")
    x = quantized_inputs(model, random_like(RSPEC))
    diff = np.abs(run_interpreter(model, x)[0].astype(int) - run_rebuilt(model, x, fake_quant=False)[0])
    assert diff.max() <= 1


@pytest.mark.parametrize("align,half", FLAGS)
def test_resize_bilinear_16x8_is_bit_exact(align, half):
    """int16 resize runs TFLite's 10-bit reference kernel (the float resize is ~100 LSB off)."""
    model = converted(lambda x: tf.compat.v1.image.resize_bilinear(x, [13, 17], align_corners=align,
                                                                   half_pixel_centers=half), RSPEC,
                      "RESIZE_BILINEAR", "int16x8")
    check_int16(model, RSPEC, "RESIZE_BILINEAR")


@pytest.mark.parametrize("op", sorted(POOLS))
def test_pool_16x8_is_bit_exact(op):
    model = converted(lambda x: POOLS[op](x, 2, 2, "SAME"), SPEC, op, "int16x8")
    check_int16(model, SPEC, op)


def test_softmax_16x8_is_bit_exact():
    """The int16 LUT kernel is reproduced (nn._softmax_int16); full-range cases in test_ops_int16x8."""
    spec = [S([4, 50], F32)]
    model = converted(lambda x: tf.nn.softmax(x), spec, "SOFTMAX", "int16x8")
    check_int16(model, spec, "SOFTMAX")


# -- softmax and normalizations --------------------------------------------------------------------
@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("shape", [[3, 10], [2, 3, 7]])
def test_softmax_float_beta(beta, shape):
    spec = [S(shape, F32)]
    base = converted(lambda x: tf.nn.softmax(x), spec, "SOFTMAX")
    model = set_op_options(base, "SOFTMAX", beta=beta)
    x = random_like(spec, low=-3, high=3)
    assert_float_close(model, x, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(run_rebuilt(model, x)[0], tf.nn.softmax(x[0] * beta).numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["int8", "uint8"])
@pytest.mark.parametrize("beta", [1.0, 0.7])
def test_softmax_integer_is_bit_exact(mode, beta):
    spec = [S([4, 50], F32)]
    cal = [[np.random.default_rng(i).uniform(-6, 6, [4, 50])] for i in range(8)]
    model = converted(lambda x: tf.nn.softmax(x), spec, "SOFTMAX", mode, calibration=cal)
    model = set_op_options(model, "SOFTMAX", beta=beta)
    check_quantized(model, spec, low=-6, high=6)


def test_softmax_int8_whose_real_inputs_overflow_float32_stays_inside_the_exp_table():
    """A scale of 3e38 is finite (the reader accepts it) but its real values are +-inf in float32: the
    table index max - q became INT_MIN and GatherV2 failed at run time (a fuzzed conv_fc_mnist). The
    kernel's index is one of stored 8-bit values, in [0, 255]; the values themselves cannot be carried
    faithfully in float32 at such a scale, so only validity is checked."""
    from .tflite_builder import single_op_model

    model = single_op_model("SOFTMAX", [([1, 6], "INT8", None, {"scale": [3e38], "zero_point": [0]})],
                            [([1, 6], "INT8", {"scale": [1 / 256], "zero_point": [-128]})], {"beta": 1.0})
    x = np.array([[-128, -3, 0, 1, 127, 127]], np.int8)
    got = run_rebuilt(model, [x])[0]
    assert got.dtype == np.int8 and got.shape == (1, 6)
    assert run_interpreter(model, [x])[0].shape == got.shape  # the interpreter runs it too


def test_log_softmax_float():
    spec = [S([3, 12], F32)]
    model = converted(lambda x: tf.nn.log_softmax(x), spec, "LOG_SOFTMAX")
    assert_float_close(model, random_like(spec, low=-4, high=4), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["int8", "uint8"])
def test_log_softmax_integer_within_one_lsb(mode):
    spec = [S([3, 12], F32)]
    model = converted(lambda x: tf.nn.log_softmax(x), spec, "LOG_SOFTMAX", mode)
    worst, _ = check_quantized(model, spec, exact=False)
    assert worst <= 1


@pytest.mark.parametrize("shape", [[3, 16], [1, 4, 5, 8]])
def test_l2_normalization_float(shape):
    spec = [S(shape, F32)]
    model = converted(lambda x: tf.math.l2_normalize(x, axis=-1), spec, "L2_NORMALIZATION")
    assert op_names(model) == ["L2_NORMALIZATION"]
    assert_float_close(model, random_like(spec), rtol=1e-5, atol=1e-6)


def test_l2_normalization_epsilon_bounds_the_norm():
    """A tiny row is divided by 1e-6 (TFLite's epsilon on the norm), not by its own norm."""
    spec = [S([2, 4], F32)]
    model = converted(lambda x: tf.math.l2_normalize(x, axis=-1), spec, "L2_NORMALIZATION")
    x = [np.array([[1e-8, -2e-8, 0.0, 3e-8], [0.5, 0.1, -0.2, 0.0]], np.float32)]
    got = run_rebuilt(model, x)[0]
    np.testing.assert_allclose(got[0], x[0][0] / 1e-6, rtol=1e-5)
    np.testing.assert_allclose(got, run_interpreter(model, x)[0], rtol=1e-5, atol=1e-7)


def test_l2_normalization_fused_activation_is_refused_by_name():
    spec = [S([3, 16], F32)]
    model = set_op_options(converted(lambda x: tf.math.l2_normalize(x, axis=-1), spec, "L2_NORMALIZATION"),
                           "L2_NORMALIZATION", fused_activation_function="RELU")
    with pytest.raises(UnsupportedOpError, match="RELU"):
        run_rebuilt(model, random_like(spec))


@pytest.mark.parametrize("mode", ["int8", "uint8"])
def test_l2_normalization_integer_exact(mode):
    spec = [S([3, 16], F32)]
    model = converted(lambda x: tf.math.l2_normalize(x, axis=-1), spec, "L2_NORMALIZATION", mode)
    check_quantized(model, spec, exact=True)


@pytest.mark.parametrize("radius,bias,alpha,beta", [(2, 1.0, 0.5, 0.75), (0, 2.0, 1e-2, 0.5), (5, 0.5, 1.0, 1.0)])
def test_local_response_normalization_float(radius, bias, alpha, beta):
    spec = [S([1, 3, 3, 12], F32)]
    model = converted(lambda x: tf.nn.local_response_normalization(x, radius, bias, alpha, beta), spec,
                      "LOCAL_RESPONSE_NORMALIZATION")
    o = read_model(model).main.operators[0].options
    assert (o["radius"], o["bias"], o["alpha"], o["beta"]) == pytest.approx((radius, bias, alpha, beta))
    assert_float_close(model, random_like(spec, low=-2, high=2), rtol=1e-5, atol=1e-6)


# -- round trip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn,spec", [
    (lambda x: tf.nn.avg_pool2d(x, 2, 2, "SAME"), SPEC),
    (lambda x: tf.nn.max_pool2d(x, 3, 2, "VALID"), SPEC),
    (lambda x: tf.compat.v1.image.resize_bilinear(x, [13, 17], half_pixel_centers=True), RSPEC),
    (lambda x: tf.compat.v1.image.resize_nearest_neighbor(x, [13, 17], align_corners=True), RSPEC),
    (tf.nn.softmax, [S([3, 24], F32)]),
    (tf.nn.log_softmax, [S([3, 24], F32)]),
    (lambda x: tf.math.l2_normalize(x, -1), [S([3, 24], F32)]),
    (lambda x: tf.nn.local_response_normalization(x, 2, 1.0, 0.5, 0.75), [S([1, 3, 3, 12], F32)]),
], ids=["avg_pool", "max_pool", "bilinear", "nearest", "softmax", "log_softmax", "l2_norm", "lrn"])
def test_float_rebuild_converts_back_to_the_same_ops(fn, spec):
    model = to_tflite(fn, spec)
    assert round_trip_ops(model) == op_names(model)


# -- quantized max pooling / nearest resize with other output parameters: raw codes ----------------
def _raw_case_model(op: str, dtype: str, same: bool, act: str = "NONE", size=(13, 7), flags=(False, False)):
    off = 128 if dtype == "UINT8" else 0
    zi, zo = (0, 0) if dtype == "INT16" else (3 + off, -5 + off)
    qin = {"scale": [0.05], "zero_point": [zi]}
    qout = qin if same else {"scale": [0.02], "zero_point": [zo]}
    if op == "MAX_POOL_2D":
        shape, out = [1, 10, 10, 8], [1, 5, 5, 8]
        opts = {"padding": "SAME", "stride_h": 2, "stride_w": 2, "filter_height": 3, "filter_width": 3,
                "fused_activation_function": act}
        tensors = [("x", shape, dtype, None, qin), ("y", out, dtype, None, qout)]
        return build_model(tensors=tensors, ops=[(op, [0], [1], "Pool2DOptions", opts)], inputs=[0], outputs=[1]), shape
    shape = [1, 6, 5, 3]
    tensors = [("x", shape, dtype, None, qin), ("size", [2], "INT32", np.array(size, np.int32)),
               ("y", [1, *size, 3], dtype, None, qout)]
    opts = {"align_corners": flags[0], "half_pixel_centers": flags[1]}
    return build_model(tensors=tensors, ops=[(op, [0, 1], [2], None, opts)], inputs=[0], outputs=[2]), shape


def _codes(dtype: str, shape, seed: int = 5) -> np.ndarray:
    info = np.iinfo({"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16}[dtype])
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape).astype(info.dtype)


@pytest.mark.parametrize("act", ["NONE", "RELU", "RELU6"])
@pytest.mark.parametrize("same", [True, False])
@pytest.mark.parametrize("dtype", ["INT8", "UINT8", "INT16"])
def test_max_pool_quantized_raw_codes(dtype, same, act):
    """The maximum of the raw codes, clamped on the output grid; XNNPACK (8-bit in the default
    interpreter) refuses other output parameters, the int16 builtin kernel copies the codes."""
    model, shape = _raw_case_model("MAX_POOL_2D", dtype, same, act)
    x = _codes(dtype, shape)
    if not same and dtype != "INT16":
        with pytest.raises(RuntimeError, match="failed to delegate"):
            run_interpreter(model, [x])
        return
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("size", [(13, 7), (4, 3)])
@pytest.mark.parametrize("same", [True, False])
@pytest.mark.parametrize("dtype", ["INT8", "UINT8", "INT16"])
def test_resize_nearest_quantized_raw_codes(dtype, same, size, flags):
    model, shape = _raw_case_model("RESIZE_NEAREST_NEIGHBOR", dtype, same, size=size, flags=flags)
    x = _codes(dtype, shape)
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])


@pytest.mark.parametrize("zp", [3, 127, -128])
@pytest.mark.parametrize("dtype", ["INT8", "UINT8"])
@pytest.mark.parametrize("shape", [[2, 3, 16], [1, 1, 1, 1000], [4, 3], [2, 20000]])
def test_l2_normalization_8bit_exact(dtype, shape, zp):
    """The kernel's fixed-point inverse square root and rescale; rows of zeros, a single unit step
    and a depth-20000 row of the code farthest from the zero point (a sum of squares beyond 2**29)
    take its special paths."""
    off = 128 if dtype == "UINT8" else 0
    qin = {"scale": [0.05], "zero_point": [zp + off]}
    qout = {"scale": [1 / 128], "zero_point": [off]}
    tensors = [("x", shape, dtype, None, qin), ("y", shape, dtype, None, qout)]
    model = build_model(tensors=tensors, ops=[("L2_NORMALIZATION", [0], [1], "L2NormOptions", {})],
                        inputs=[0], outputs=[1])
    x = _codes(dtype, shape, 7)
    flat = x.reshape(-1, shape[-1])
    flat[0] = zp + off  # a row of zeros (sum 0)
    if flat.shape[0] > 2:
        flat[1] = zp + off
        flat[1, 0] = zp + off + (1 if zp < 127 else -1)  # sum of squares 1
    lo, hi = (-128, 127) if dtype == "INT8" else (0, 255)
    flat[-1] = hi if zp + off - lo < hi - zp - off else lo  # the code farthest from the zero point
    ref = run_interpreter(model, [x])[0]
    np.testing.assert_array_equal(run_builtin(model, [x])[0], ref)  # XNNPACK does not take it
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], ref)
