"""Convolutions, fully-connected and batched matmul against the TFLite interpreter.

Float models come from TFLiteConverter; option values it never emits (stride together with dilation,
TANH/SIGN_BIT fused activations, a missing bias, symmetric hybrid inputs) are patched into converted
models with ``tests/tflite_builder.py``. Full-integer models must match the interpreter's integers
exactly (faithful mode emulates XNNPACK's requantization); hybrid (dynamic-range) models must match to
~1e-6 relative (faithful mode emulates the on-the-fly input quantization), and the clean float rebuild
(``fake_quant=False``) is the float network.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.errors import UnsupportedOpError
from tflite_inverter.model.reader import read_model

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
    run_interpreter,
    run_rebuilt,
    to_tflite,
)
from .tflite_builder import op_name_of, patch_model, set_op_options

S = tf.TensorSpec
F32 = tf.float32
_rng = np.random.default_rng(0)


def weights(*shape, scale: float = 0.3, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def check_hybrid(model: bytes, specs, exact: bool = True) -> None:
    """Faithful mode reproduces the hybrid kernel (bit for bit where XNNPACK's dynamically quantized
    kernels run it: ``exact``); the clean float rebuild is the float network."""
    x = random_like(specs)
    ref = run_interpreter(model, x)[0]
    got = run_rebuilt(model, x)[0]
    scale = float(np.abs(ref).max())
    if exact:
        np.testing.assert_array_equal(got, ref)
    assert np.abs(got - ref).max() <= 2e-6 * scale, np.abs(got - ref).max() / scale
    clean = run_rebuilt(model, x, fake_quant=False)[0]
    err = np.abs(clean - ref).max() / scale
    assert 1e-5 < err < 0.05  # the clean path does not emulate the int8 input quantization


W33 = weights(3, 3, 4, 8)
B8 = weights(8, scale=1.0, seed=1)
SPEC_IMG = [S([1, 9, 9, 4], F32)]


# -- CONV_2D ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (3, 1), (1, 2), (1, 3)])
def test_conv2d_float_padding_stride_dilation(padding, stride, dilation):
    model = converted(lambda x: tf.nn.conv2d(x, W33, stride, padding, dilations=dilation) + B8, SPEC_IMG,
                      "CONV_2D")
    assert_float_close(model, random_like(SPEC_IMG), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv2d_stride_with_dilation_patched(padding):
    """The converter never emits stride > 1 with dilation > 1; TFLite's kernel supports it."""
    spec = [S([1, 11, 12, 4], F32)]
    model = converted(lambda x: tf.nn.conv2d(x, W33, 1, padding, dilations=2) + B8, spec, "CONV_2D")
    model = set_op_options(model, "CONV_2D", stride_h=2, stride_w=3)
    assert_float_close(model, random_like(spec), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act,fn", [("NONE", lambda y: y), ("RELU", tf.nn.relu), ("RELU6", tf.nn.relu6),
                                    ("RELU_N1_TO_1", lambda y: tf.clip_by_value(y, -1.0, 1.0))])
def test_conv2d_fused_activations_from_converter(act, fn):
    model = converted(lambda x: fn(tf.nn.conv2d(x, W33, 1, "SAME") + B8), SPEC_IMG, "CONV_2D")
    assert read_model(model).main.operators[0].options["fused_activation_function"] == act
    assert op_names(model) == ["CONV_2D"]
    assert_float_close(model, random_like(SPEC_IMG, low=-3, high=3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["TANH", "SIGN_BIT"])
def test_conv2d_tanh_sign_bit_follow_tflite_definition(act):
    """The interpreter's conv kernel ignores TANH/SIGN_BIT (its activation range is unbounded); the
    rebuild applies the schema's definition, checked against numpy."""
    base = converted(lambda x: tf.nn.conv2d(x, W33, 1, "SAME") + B8, SPEC_IMG, "CONV_2D")
    model = set_op_options(base, "CONV_2D", fused_activation_function=act)
    x = random_like(SPEC_IMG)
    plain = run_interpreter(base, x)[0]
    np.testing.assert_allclose(run_interpreter(model, x)[0], plain, rtol=1e-6, atol=1e-6)  # ignored
    np.testing.assert_allclose(run_rebuilt(model, x)[0], reference_activation(plain, act), rtol=1e-5, atol=1e-5)


def _drop_input(model: bytes, op: str, index: int, truncate: bool = False) -> bytes:
    """Make optional input ``index`` of every ``op`` absent (-1, or cut from the input list)."""

    def fn(tree):
        for o in tree["subgraphs"][0]["operators"]:
            if op_name_of(tree, o) == op:
                if truncate:
                    del o["inputs"][index:]
                else:
                    o["inputs"][index] = -1

    return patch_model(model, fn)


@pytest.mark.parametrize("truncate", [True, False])
def test_conv2d_without_bias(truncate):
    """Bias absent as a short input list or as -1. The interpreter's CONV_2D requires a bias (it refuses
    both forms), so the rebuild is checked against TensorFlow's convolution."""
    model = _drop_input(converted(lambda x: tf.nn.conv2d(x, W33, 1, "SAME") + B8, SPEC_IMG, "CONV_2D"),
                        "CONV_2D", 2, truncate)
    x = random_like(SPEC_IMG)
    ref = tf.nn.conv2d(x[0], W33, 1, "SAME").numpy()
    np.testing.assert_allclose(run_rebuilt(model, x)[0], ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="bias|optional"):
        run_interpreter(model, x)


def test_conv2d_grouped():
    w = weights(3, 3, 2, 6)  # 4 input channels / 2 per group = 2 groups
    model = converted(lambda x: tf.nn.conv2d(x, w, 1, "SAME"), SPEC_IMG, "CONV_2D")
    assert read_model(model).main.tensors[read_model(model).main.operators[0].inputs[1]].shape == (6, 3, 3, 2)
    assert_float_close(model, random_like(SPEC_IMG), rtol=1e-5, atol=1e-6)


def test_conv2d_non_constant_filter():
    specs = [S([1, 6, 6, 4], F32), S([3, 3, 4, 5], F32)]
    model = converted(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), specs, "CONV_2D")
    assert not read_model(model).main.tensors[read_model(model).main.operators[-1].inputs[1]].is_constant
    assert_float_close(model, random_like(specs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["int8", "int8_per_tensor", "uint8"])
@pytest.mark.parametrize("stride,act", [(1, tf.nn.relu6), (2, tf.nn.relu), (1, lambda y: y)])
def test_conv2d_integer_is_bit_exact(mode, stride, act):
    model = converted(lambda x: act(tf.nn.conv2d(x, W33, stride, "SAME") + B8), SPEC_IMG, "CONV_2D", mode)
    check_quantized(model, SPEC_IMG)


@pytest.mark.parametrize("stride,act", [(1, tf.nn.relu), (2, lambda y: y)])
def test_conv2d_16x8_is_bit_exact(stride, act):
    model = converted(lambda x: act(tf.nn.conv2d(x, W33, stride, "SAME") + B8), SPEC_IMG, "CONV_2D", "int16x8")
    check_int16(model, SPEC_IMG, "CONV_2D")


def test_conv2d_clean_float_rebuild_of_integer_model_is_close():
    model = converted(lambda x: tf.nn.conv2d(x, W33, 1, "SAME") + B8, SPEC_IMG, "CONV_2D", "int8")
    x = quantized_inputs(model, random_like(SPEC_IMG))
    ref = run_interpreter(model, x)[0].astype(int)
    got = run_rebuilt(model, x, fake_quant=False)[0].astype(int)
    assert np.abs(ref - got).max() <= 1


W_HYB = weights(3, 3, 16, 32, scale=0.2)
W_PW = weights(1, 1, 64, 32, scale=0.2)
W_DW = weights(3, 3, 128, 1, scale=0.2)
W_BMM = weights(2, 64, 48, scale=0.2)
WFC_BIG_T = weights(64, 48, scale=0.2, seed=5)


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "VALID")])
def test_conv2d_hybrid_per_channel_matches_kernel(stride, padding):
    spec = [S([2, 8, 8, 16], F32)]
    model = converted(lambda x: tf.nn.relu(tf.nn.conv2d(x, W_HYB, stride, padding) + 0.1), spec, "CONV_2D",
                      "dynamic")
    check_hybrid(model, spec)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_hybrid_pointwise_matches_kernel(stride):
    """XNNPACK runs a 1x1 stride-1 hybrid conv as fully-connected: one input scale per pixel."""
    w = weights(1, 1, 64, 32, scale=0.2)
    spec = [S([2, 6, 6, 64], F32)]
    model = converted(lambda x: tf.nn.conv2d(x, w, stride, "SAME"), spec, "CONV_2D", "dynamic")
    check_hybrid(model, spec)


def test_conv2d_hybrid_equal_channel_scales_follows_xnnpack():
    """The builtin hybrid conv switches to symmetric per-image input quantization when all channel
    scales are equal; XNNPACK (the default interpreter) stays asymmetric, and so does the rebuild."""
    w = W_HYB / np.abs(W_HYB).max(axis=(0, 1, 2), keepdims=True) * 0.5
    spec = [S([2, 8, 8, 16], F32)]
    model = converted(lambda x: tf.nn.conv2d(x, w, 1, "SAME"), spec, "CONV_2D", "dynamic")
    check_hybrid(model, spec)


def tie_inputs(shape, seed: int = 0) -> list[np.ndarray]:
    """Values k + 0.5 with 255 in every row: the hybrid input scale is 1, so every value is a rounding
    tie (XNNPACK rounds ties to even, the builtin kernels away from zero)."""
    x = np.random.default_rng(seed).integers(0, 255, size=shape).astype(np.float32) + 0.5
    x.reshape(-1, shape[-1])[:, 0] = 255.0
    return [x]


@pytest.mark.parametrize("fn,shape,op", [
    (lambda x: tf.matmul(x, WFC_BIG_T), [3, 64], "FULLY_CONNECTED"),
    (lambda x: tf.nn.conv2d(x, W_HYB, 1, "SAME"), [1, 6, 6, 16], "CONV_2D"),
    (lambda x: tf.nn.conv2d(x, W_PW, 1, "SAME"), [1, 6, 6, 64], "CONV_2D"),
    (lambda x: tf.nn.depthwise_conv2d(x, W_DW, [1, 1, 1, 1], "SAME"), [1, 6, 6, 128], "DEPTHWISE_CONV_2D"),
    (lambda x: tf.linalg.matmul(x, W_BMM), [2, 5, 64], "BATCH_MATMUL"),
], ids=["fc", "conv3x3", "conv1x1", "depthwise", "batch_matmul"])
def test_hybrid_input_rounding_ties_match_kernel(fn, shape, op):
    model = converted(fn, [S(shape, F32)], op, "dynamic")
    x = tie_inputs(shape)
    ref = run_interpreter(model, x)[0]
    np.testing.assert_allclose(run_rebuilt(model, x)[0], ref, rtol=0, atol=2e-6 * np.abs(ref).max())


# -- DEPTHWISE_CONV_2D -----------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("mult", [1, 2])
def test_depthwise_float_padding_stride_dilation_multiplier(padding, stride, dilation, mult):
    w = weights(3, 3, 4, mult)
    model = converted(lambda x: tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding,
                                                       dilations=[dilation, dilation]), SPEC_IMG,
                      "DEPTHWISE_CONV_2D")
    assert_float_close(model, random_like(SPEC_IMG), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_depthwise_stride_with_dilation_patched(padding):
    spec = [S([1, 12, 11, 4], F32)]
    w = weights(3, 3, 4, 2)
    model = converted(lambda x: tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], padding, dilations=[2, 2]), spec,
                      "DEPTHWISE_CONV_2D")
    model = set_op_options(model, "DEPTHWISE_CONV_2D", stride_h=2, stride_w=3)
    assert_float_close(model, random_like(spec), rtol=1e-5, atol=1e-6)


def test_depthwise_filter_shape_beats_depth_multiplier_option():
    w = weights(3, 3, 4, 2)
    model = converted(lambda x: tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME"), SPEC_IMG, "DEPTHWISE_CONV_2D")
    model = set_op_options(model, "DEPTHWISE_CONV_2D", depth_multiplier=0)
    got = run_rebuilt(model, random_like(SPEC_IMG))[0]
    np.testing.assert_allclose(got, tf.nn.depthwise_conv2d(random_like(SPEC_IMG)[0], w, [1, 1, 1, 1], "SAME"),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["int8", "int8_per_tensor", "uint8"])
@pytest.mark.parametrize("stride,mult", [(1, 1), (2, 2)])
def test_depthwise_integer_is_bit_exact(mode, stride, mult):
    w = weights(3, 3, 4, mult)
    model = converted(lambda x: tf.nn.relu6(tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], "SAME")),
                      SPEC_IMG, "DEPTHWISE_CONV_2D", mode)
    check_quantized(model, SPEC_IMG)


def test_depthwise_16x8_is_bit_exact():
    w = weights(3, 3, 4, 2)
    model = converted(lambda x: tf.nn.depthwise_conv2d(x, w, [1, 2, 2, 1], "SAME"), SPEC_IMG, "DEPTHWISE_CONV_2D",
                      "int16x8")
    check_int16(model, SPEC_IMG, "DEPTHWISE_CONV_2D")


def test_depthwise_hybrid_matches_kernel():
    w = weights(3, 3, 128, 1, scale=0.2)
    spec = [S([2, 6, 6, 128], F32)]
    model = converted(lambda x: tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME"), spec, "DEPTHWISE_CONV_2D",
                      "dynamic")
    check_hybrid(model, spec, exact=False)  # TFLite's builtin hybrid depthwise: float32 ulps apart


# -- TRANSPOSE_CONV --------------------------------------------------------------------------------
WT = weights(3, 3, 5, 4)  # TF layout [kh, kw, out, in]
B5 = weights(5, scale=1.0, seed=2)
SPEC_T = [S([1, 5, 6, 4], F32)]


def _tconv(stride: int, padding: str, bias: bool = True):
    def fn(x):
        h, w = (5 * stride, 6 * stride) if padding == "SAME" else ((5 - 1) * stride + 3, (6 - 1) * stride + 3)
        y = tf.nn.conv2d_transpose(x, WT, [1, h, w, 5], stride, padding)
        return y + B5 if bias else y
    return fn


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride", [1, 2])
def test_transpose_conv_float(padding, stride):
    model = converted(_tconv(stride, padding), SPEC_T, "TRANSPOSE_CONV")
    assert_float_close(model, random_like(SPEC_T), rtol=1e-5, atol=1e-6)


def test_transpose_conv_without_bias_and_with_bias_input():
    model = converted(_tconv(2, "SAME", bias=False), SPEC_T, "TRANSPOSE_CONV")
    op = read_model(model).main.operators[op_names(model).index("TRANSPOSE_CONV")]
    assert len(op.inputs) < 4 or op.inputs[3] < 0
    assert_float_close(model, random_like(SPEC_T), rtol=1e-5, atol=1e-6)
    with_bias = converted(_tconv(2, "SAME"), SPEC_T, "TRANSPOSE_CONV")
    op = read_model(with_bias).main.operators[op_names(with_bias).index("TRANSPOSE_CONV")]
    if len(op.inputs) > 3 and op.inputs[3] >= 0:  # the converter folded the bias into the op
        assert_float_close(with_bias, random_like(SPEC_T), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["RELU", "RELU6", "RELU_N1_TO_1"])
def test_transpose_conv_fused_activation_patched(act):
    base = converted(_tconv(2, "SAME"), SPEC_T, "TRANSPOSE_CONV")
    model = set_op_options(base, "TRANSPOSE_CONV", fused_activation_function=act)
    x = random_like(SPEC_T, low=-3, high=3)
    got = run_rebuilt(model, x)[0]
    np.testing.assert_allclose(got, reference_activation(run_rebuilt(base, x)[0], act), rtol=1e-6, atol=1e-6)
    assert_float_close(model, x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["int8", "uint8"])
def test_transpose_conv_integer_is_bit_exact(mode):
    model = converted(_tconv(2, "SAME"), SPEC_T, "TRANSPOSE_CONV", mode)
    check_quantized(model, SPEC_T)


def test_transpose_conv_16x8_is_bit_exact():
    model = converted(_tconv(2, "SAME"), SPEC_T, "TRANSPOSE_CONV", "int16x8")
    check_int16(model, SPEC_T, "TRANSPOSE_CONV")


WT_HYB = weights(3, 3, 24, 48, scale=0.2, seed=3)  # [kh, kw, out, in]
B24 = weights(24, scale=1.0, seed=4)


def _hybrid_tconv_builder(act: str, per_channel: bool) -> bytes:
    """Hybrid TRANSPOSE_CONV as dynamic-range quantization writes it (float input/output, constant
    int8 symmetric weights OHWI), with a per-tensor scale or a fused activation the converter does
    not give."""
    from .tflite_builder import build_model

    w = WT_HYB.transpose(2, 0, 1, 3)  # OHWI
    scale = np.abs(w).reshape(24, -1).max(1) / 127 if per_channel else np.full(1, np.abs(w).max() / 127)
    wq = np.round(w / scale.reshape(-1, 1, 1, 1)).astype(np.int8)
    return build_model(
        tensors=[("shape", [4], "INT32", np.array([2, 11, 13, 24], np.int32)),
                 ("w", [24, 3, 3, 48], "INT8", wq, {"scale": scale.tolist(), "zero_point": [0] * scale.size,
                                                    "quantized_dimension": 0}),
                 ("x", [2, 5, 6, 48], "FLOAT32"), ("b", [24], "FLOAT32", B24), ("y", [2, 11, 13, 24], "FLOAT32")],
        ops=[("TRANSPOSE_CONV", [0, 1, 2, 3], [4], "TransposeConvOptions",
              {"padding": "VALID", "stride_h": 2, "stride_w": 2, "fused_activation_function": act})],
        inputs=[2], outputs=[4])


def check_hybrid_exact(model: bytes, specs, seeds: int = 6) -> None:
    """Bit for bit against the default interpreter on several inputs, and not the float network."""
    for seed in range(seeds):
        x = [np.random.default_rng(seed).normal(size=s.shape).astype(np.float32) * (1 + seed) for s in specs]
        ref = run_interpreter(model, x)[0]
        got = run_rebuilt(model, x)[0]
        np.testing.assert_array_equal(got, ref, err_msg=f"seed {seed}")
    clean = run_rebuilt(model, x, fake_quant=False)[0]
    assert np.abs(clean - ref).max() / np.abs(ref).max() > 1e-5  # the int8 input quantization is visible


@pytest.mark.parametrize("stride,padding,bias", [(2, "SAME", True), (1, "VALID", False), (2, "VALID", True)])
def test_transpose_conv_hybrid_is_bit_exact(stride, padding, bias):
    """Dynamic-range TRANSPOSE_CONV runs in XNNPACK's dynamically quantized deconvolution: input
    quantized per image with XNNPACK's float32 parameters, exact int32 sums, then
    ``fma(acc * input_scale, weight_scale, bias)`` (see ops/conv.py)."""
    w = weights(3, 3, 32, 64, scale=0.2, seed=1)
    b = weights(32, scale=1.0, seed=2)
    spec = [S([2, 6, 7, 64], F32)]

    def fn(x):
        h, wd = (6 * stride, 7 * stride) if padding == "SAME" else ((6 - 1) * stride + 3, (7 - 1) * stride + 3)
        y = tf.nn.conv2d_transpose(x, w, [2, h, wd, 32], stride, padding)
        return y + b if bias else y

    model = converted(fn, spec, "TRANSPOSE_CONV", "dynamic")
    check_hybrid_exact(model, spec)


@pytest.mark.parametrize("act,per_channel", [("NONE", False), ("RELU", True), ("RELU6", False)])
def test_transpose_conv_hybrid_built_is_bit_exact(act, per_channel):
    check_hybrid_exact(_hybrid_tconv_builder(act, per_channel), [S([2, 5, 6, 48], F32)])


def test_has_hybrid_ops_finds_hybrid_transpose_conv():
    """TRANSPOSE_CONV's activation is input 2 (input 0 is the int32 output shape)."""
    from tflite_inverter.conversion.plan import has_hybrid_ops

    assert has_hybrid_ops(read_model(_hybrid_tconv_builder("NONE", True)))
    assert not has_hybrid_ops(read_model(converted(_tconv(2, "SAME"), SPEC_T, "TRANSPOSE_CONV")))


# -- CONV_3D / CONV_3D_TRANSPOSE -------------------------------------------------------------------
W3 = weights(3, 3, 2, 2, 4)
SPEC_3D = [S([1, 6, 7, 5, 2], F32)]


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [[1, 1, 1, 1, 1], [1, 2, 1, 2, 1]])
def test_conv3d_float(padding, strides):
    model = converted(lambda x: tf.nn.relu(tf.nn.conv3d(x, W3, strides, padding) + B8[:4]), SPEC_3D, "CONV_3D")
    assert_float_close(model, random_like(SPEC_3D), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv3d_dilation_patched(padding):
    """TF's CPU Conv3D has no dilation: the constant filter is dilated with zeros instead."""
    base = converted(lambda x: tf.nn.conv3d(x, W3, [1] * 5, padding), SPEC_3D, "CONV_3D")
    model = set_op_options(base, "CONV_3D", dilation_d_factor=2, dilation_h_factor=1, dilation_w_factor=2)
    assert_float_close(model, random_like(SPEC_3D), rtol=1e-5, atol=1e-6)


def test_conv3d_dilated_dynamic_filter_is_refused_by_name():
    specs = [SPEC_3D[0], S([3, 3, 2, 2, 4], F32)]
    model = converted(lambda x, w: tf.nn.conv3d(x, w, [1] * 5, "VALID"), specs, "CONV_3D")
    model = set_op_options(model, "CONV_3D", dilation_h_factor=2)
    with pytest.raises(UnsupportedOpError, match="dilation"):
        run_rebuilt(model, random_like(specs))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv3d_transpose_float(padding):
    w = weights(2, 3, 3, 4, 2)  # [kd, kh, kw, out, in]
    spec = [S([1, 3, 4, 4, 2], F32)]
    out = [1, 6, 8, 8, 4] if padding == "SAME" else [1, 6, 9, 9, 4]
    model = converted(lambda x: tf.nn.conv3d_transpose(x, w, out, [1, 2, 2, 2, 1], padding), spec,
                      "CONV_3D_TRANSPOSE")
    assert_float_close(model, random_like(spec), rtol=1e-5, atol=1e-6)


def test_conv3d_transpose_dilation_patched():
    w = weights(2, 3, 3, 4, 2)
    spec = [S([1, 3, 4, 4, 2], F32)]
    base = converted(lambda x: tf.nn.conv3d_transpose(x, w, [1, 6, 8, 8, 4], [1, 2, 2, 2, 1], "SAME"), spec,
                     "CONV_3D_TRANSPOSE")

    def dilate(tree):
        for o in tree["subgraphs"][0]["operators"]:
            o["builtin_options"][1].update(dilation_h_factor=2, dilation_w_factor=3)

    assert_float_close(patch_model(base, dilate), random_like(spec), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,fn", [
    ("CONV_2D", lambda x: tf.nn.conv2d(x, W33, 1, "SAME")),
    ("DEPTHWISE_CONV_2D", lambda x: tf.nn.depthwise_conv2d(x, weights(3, 3, 4, 1), [1, 1, 1, 1], "SAME")),
])
def test_unknown_padding_is_refused_by_name(op, fn):
    model = set_op_options(converted(fn, SPEC_IMG, op), op, padding=7)
    with pytest.raises(UnsupportedOpError, match="padding"):
        run_rebuilt(model, random_like(SPEC_IMG))


# -- FULLY_CONNECTED -------------------------------------------------------------------------------
WFC = weights(24, 10, scale=0.2)
B10 = weights(10, scale=1.0, seed=3)


@pytest.mark.parametrize("act", [lambda y: y, tf.nn.relu, tf.nn.relu6])
def test_fully_connected_float(act):
    spec = [S([3, 24], F32)]
    model = converted(lambda x: act(tf.matmul(x, WFC) + B10), spec, "FULLY_CONNECTED")
    assert_float_close(model, random_like(spec, low=-4, high=4), rtol=1e-5, atol=1e-6)


def test_fully_connected_keep_num_dims_rank3():
    spec = [S([2, 3, 24], F32)]
    model = converted(lambda x: tf.matmul(x, WFC) + B10, spec, "FULLY_CONNECTED")
    op = read_model(model).main.operators[op_names(model).index("FULLY_CONNECTED")]
    assert op.options["keep_num_dims"]
    assert_float_close(model, random_like(spec), rtol=1e-5, atol=1e-6)


def test_fully_connected_flattens_rank4_input_without_keep_num_dims():
    spec = [S([2, 3, 24], F32)]
    base = converted(lambda x: tf.matmul(x, WFC) + B10, spec, "FULLY_CONNECTED")

    def fn(tree):
        sg = tree["subgraphs"][0]
        for o in sg["operators"]:
            o["builtin_options"][1]["keep_num_dims"] = False
            sg["tensors"][o["outputs"][0]]["shape"] = [6, 10]
        for t in sg["tensors"]:
            t.pop("shape_signature", None)

    model = patch_model(base, fn)
    x = random_like(spec)
    got = run_rebuilt(model, x)[0]
    assert got.shape == (6, 10)
    np.testing.assert_allclose(got, run_interpreter(model, x)[0], rtol=1e-5, atol=1e-5)


def test_fully_connected_without_bias_and_non_constant_weights():
    specs = [S([3, 24], F32), S([10, 24], F32)]
    model = converted(lambda x, w: tf.matmul(x, w, transpose_b=True), specs, "FULLY_CONNECTED")
    op = read_model(model).main.operators[op_names(model).index("FULLY_CONNECTED")]
    assert len(op.inputs) < 3 or op.inputs[2] < 0
    assert_float_close(model, random_like(specs), rtol=1e-5, atol=1e-6)


def test_fully_connected_shuffled_weights_format_is_refused_by_name():
    model = set_op_options(converted(lambda x: tf.matmul(x, WFC), [S([3, 24], F32)], "FULLY_CONNECTED"),
                           "FULLY_CONNECTED", weights_format="SHUFFLED4x16INT8")
    with pytest.raises(UnsupportedOpError, match="SHUFFLED4x16INT8"):
        run_rebuilt(model, random_like([S([3, 24], F32)]))


@pytest.mark.parametrize("mode", ["int8", "int8_per_tensor", "uint8"])
def test_fully_connected_integer_is_bit_exact(mode):
    spec = [S([3, 24], F32)]
    model = converted(lambda x: tf.nn.relu(tf.matmul(x, WFC) + B10), spec, "FULLY_CONNECTED", mode)
    check_quantized(model, spec)


@pytest.mark.parametrize("bias", [True, False])
def test_fully_connected_16x8_is_bit_exact(bias):
    """The 16x8 fully-connected kernel requantizes with single rounding (unlike conv's reduced
    multiplier); with and without a bias."""
    spec = [S([3, 24], F32)]
    model = converted(lambda x: tf.matmul(x, WFC) + B10 if bias else tf.matmul(x, WFC), spec, "FULLY_CONNECTED",
                      "int16x8")
    check_int16(model, spec, "FULLY_CONNECTED")


WFC_BIG = weights(64, 48, scale=0.2)


@pytest.mark.parametrize("asymmetric", [True, False])
@pytest.mark.parametrize("shape", [[3, 64], [2, 3, 64]])
def test_fully_connected_hybrid_matches_kernel(asymmetric, shape):
    """The default interpreter (XNNPACK) quantizes hybrid inputs asymmetrically per row whatever
    asymmetric_quantize_inputs says; the rebuild follows it."""
    spec = [S(shape, F32)]
    model = converted(lambda x: tf.matmul(x, WFC_BIG) + B10.sum(), spec, "FULLY_CONNECTED", "dynamic")
    model = set_op_options(model, "FULLY_CONNECTED", asymmetric_quantize_inputs=asymmetric)
    check_hybrid(model, spec)


# -- round trip ------------------------------------------------------------------------------------


WG = weights(3, 3, 2, 8)
W3D = weights(3, 3, 3, 2, 4)


@pytest.mark.parametrize("fn,specs", [
    (lambda x: tf.nn.relu6(tf.nn.conv2d(x, W33, 2, "SAME") + B8), SPEC_IMG),
    (lambda x: tf.nn.relu(tf.nn.conv2d(x, WG, 1, "SAME") + B8), SPEC_IMG),  # grouped
    (lambda x: tf.nn.depthwise_conv2d(x, weights(3, 3, 4, 2), [1, 2, 2, 1], "SAME") + B8, SPEC_IMG),
    (_tconv(2, "SAME"), SPEC_T),
    (lambda x: tf.nn.relu(tf.matmul(x, WFC) + B10), [S([3, 24], F32)]),
    (lambda x: tf.matmul(x, WFC), [S([2, 3, 24], F32)]),  # keep_num_dims
    (lambda x, y: tf.linalg.matmul(x, y, adjoint_b=True), [S([2, 3, 4], F32), S([2, 5, 4], F32)]),
    (lambda x: tf.nn.conv3d(x, W3D, [1] * 5, "SAME"), [S([1, 5, 5, 5, 2], F32)]),
], ids=["conv", "grouped", "depthwise", "transpose_conv", "fc", "fc_keep_dims", "batch_matmul", "conv3d"])
def test_float_rebuild_converts_back_to_the_same_ops(fn, specs):
    model = to_tflite(fn, specs)
    assert round_trip_ops(model) == op_names(model)


# -- BATCH_MATMUL ----------------------------------------------------------------------------------
@pytest.mark.parametrize("adj_x,adj_y", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("shapes", [([2, 3, 4], [2, 4, 5]), ([2, 1, 3, 4], [3, 4, 5])])
def test_batch_matmul_float_adjoints_broadcasting(adj_x, adj_y, shapes):
    xs, ys = list(shapes[0]), list(shapes[1])
    if adj_x:
        xs[-1], xs[-2] = xs[-2], xs[-1]
    if adj_y:
        ys[-1], ys[-2] = ys[-2], ys[-1]
    specs = [S(xs, F32), S(ys, F32)]
    model = converted(lambda x, y: tf.linalg.matmul(x, y, adjoint_a=adj_x, adjoint_b=adj_y), specs, "BATCH_MATMUL")
    op = read_model(model).main.operators[op_names(model).index("BATCH_MATMUL")]
    assert (op.options["adj_x"], op.options["adj_y"]) == (adj_x, adj_y)
    assert_float_close(model, random_like(specs), rtol=1e-5, atol=1e-6)


def test_batch_matmul_int8_is_bit_exact():
    specs = [S([2, 16, 32], F32), S([2, 32, 24], F32)]
    model = converted(lambda x, y: tf.linalg.matmul(x, y), specs, "BATCH_MATMUL", "int8")
    check_quantized(model, specs)


@pytest.mark.parametrize("adj_y", [False, True])
def test_batch_matmul_hybrid_matches_kernel(adj_y):
    w = weights(2, 64, 48, scale=0.2)
    w = w.transpose(0, 2, 1).copy() if adj_y else w
    spec = [S([2, 5, 64], F32)]
    model = converted(lambda x: tf.linalg.matmul(x, w, adjoint_b=adj_y), spec, "BATCH_MATMUL", "dynamic")
    check_hybrid(model, spec)


# -- requantization multipliers out of the kernels' range (fuzzed scales) ---------------------------


def test_quantize_multiplier_flushes_tiny_and_saturates_huge_multipliers():
    from tflite_inverter.ops.fixedpoint import quantize_multiplier

    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)
    assert quantize_multiplier(2.0**40) == ((1 << 31) - 1, 30)  # quantization_util.cc, single rounding


def test_quantize_multiplier_rounds_ties_half_away_from_zero_on_both_signs():
    """QuantizeMultiplier rounds with TfLiteRound (std::round): a tie of a negative multiplier goes
    away from zero too. (The two copies merged into ops/fixedpoint differed exactly here: one rounded
    negative ties up, to -2**30.)"""
    from tflite_inverter.ops.fixedpoint import quantize_multiplier

    tie = 0.5 + 2.0**-32  # frac * 2**31 = 2**30 + 0.5 exactly
    assert quantize_multiplier(tie) == ((1 << 30) + 1, 0)
    assert quantize_multiplier(-tie) == (-((1 << 30) + 1), 0)
    assert quantize_multiplier(-0.75) == (-(3 << 29), 0)
    assert quantize_multiplier(1.0 - 2.0**-33) == (1 << 30, 1)  # rounds up to 2**31: renormalized


def test_int16x8_fully_connected_with_a_huge_multiplier_is_rebuilt():
    """in_scale * w_scale / out_scale = 1e12 made the right shift negative (ValueError: negative shift
    count) while tracing. The interpreter's result at such a shift is undefined behaviour in C, so the
    rebuilt values are only checked for range; a sane scale still matches the interpreter."""
    from .tflite_builder import single_op_model

    w = np.array([[1, -2, 3], [0, 1, 0]], np.int8)
    x = np.array([[3, 1, -1]], np.int16)
    for out_scale in (1e-12, 1e-3):
        m = single_op_model("FULLY_CONNECTED", [([1, 3], "INT16", None, {"scale": [1.0], "zero_point": [0]}),
                                                ([2, 3], "INT8", w, {"scale": [1.0], "zero_point": [0]})],
                            [([1, 2], "INT16", {"scale": [out_scale], "zero_point": [0]})], {})
        got = run_rebuilt(m, [x])[0]
        assert got.dtype == np.int16 and got.shape == (1, 2)
    np.testing.assert_array_equal(got, run_interpreter(m, [x])[0])


# -- 8-bit with weights computed at run time (not delegated to XNNPACK) ------------------------------
@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"])
@pytest.mark.parametrize("dtype", ["INT8", "UINT8"])
@pytest.mark.parametrize("out_scale", [1.0, 0.1, 0.01, 0.002])
def test_integer_with_runtime_weights_is_bit_exact(op, dtype, out_scale):
    """XNNPACK needs constant weights, so the builtin kernels run: CONV_2D/FULLY_CONNECTED through
    ruy (rounding high multiply, then a rounding-half-up shift), DEPTHWISE through TFLite's
    double-rounding multiplier. The float path plus rounding was 1 LSB off on ~0.2 % of elements."""
    from .tflite_builder import single_op_model

    rng = np.random.default_rng(7)
    lo, hi, npd = (-128, 128, np.int8) if dtype == "INT8" else (0, 256, np.uint8)
    zx, zw, zo = (4, 0, -5) if dtype == "INT8" else (120, 128, 130)
    def qp(s, z):
        return {"scale": [s], "zero_point": [z]}
    if op == "FULLY_CONNECTED":
        xs, ws, n = [64, 30], [9, 30], 9
        opts, out = {}, [64, 9]
    else:
        xs, n = [2, 9, 10, 6], 8 if op == "CONV_2D" else 6
        ws = [n, 3, 3, 6] if op == "CONV_2D" else [1, 3, 3, 6]
        opts = {"padding": "SAME", "stride_h": 1, "stride_w": 1}
        if op == "DEPTHWISE_CONV_2D":
            opts["depth_multiplier"] = 1
        out = [2, 9, 10, n]
    x = rng.integers(lo, hi, xs).astype(npd)
    w = rng.integers(lo + 1, hi, ws).astype(npd)
    bias = rng.integers(-2 ** 12, 2 ** 12, n).astype(np.int32)
    model = single_op_model(op, [(xs, dtype, None, qp(0.02, zx)), (ws, dtype, None, qp(0.01, zw)),
                                 ([n], "INT32", bias, qp(0.0002, 0))], [(out, dtype, qp(out_scale, zo))], opts)
    np.testing.assert_array_equal(run_rebuilt(model, [x, w])[0], run_interpreter(model, [x, w])[0])
