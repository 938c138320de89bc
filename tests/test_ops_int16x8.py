"""16x8 kernels (int16 activations, int8 weights, int64 bias) and the int16 SOFTMAX/pools, bit-exact.

Single-op models built with ``tests/tflite_builder.py`` (full control over scales, zero points, bias
type and options), int16 inputs drawn over the whole int16 range, the faithful rebuild's integers
compared element by element with the default interpreter's (``ai_edge_litert``, default resolver;
no 16x8 kernel is delegated to XNNPACK, so its builtin kernels are the reference). The variants
are those that change the arithmetic: output/input scale ratio below and above 1 (the fixed-point
multiplier's shift sign), power-of-two scales (exact rounding ties), fused activation clamps, per-tensor/per-channel weights, a bias large
enough to wrap the kernels' int32 result, strides/padding/dilation, and for SOFTMAX the input scale
and beta (the exp-table rescale). A DS-CNN keyword spotter (the issue-10 model kind) converted by
TFLiteConverter with 16x8 quantization is checked end to end.

Not tested because the interpreter has no defined result: CONV_2D/TRANSPOSE_CONV 16x8 with an int32
bias read the bias buffer as int64 (values differ from run to run; DEPTHWISE refuses int32 bias).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.model.reader import read_model

from .helpers import run_interpreter, run_rebuilt
from .tflite_builder import single_op_model

_rng = np.random.default_rng(1234)
S_IN = 1e-3


def q(scale, zp: int = 0, dim: int = 0) -> dict:
    s = np.atleast_1d(np.asarray(scale, np.float64))
    return {"scale": [float(v) for v in s], "zero_point": [int(zp)] * s.size, "quantized_dimension": dim}


def int16(shape) -> np.ndarray:
    return _rng.integers(-32768, 32768, list(shape)).astype(np.int16)


def assert_exact(model: bytes, inputs: list[np.ndarray]) -> None:
    ref = run_interpreter(model, inputs)[0].astype(np.int64)
    got = run_rebuilt(model, inputs)[0]
    assert got.dtype == np.int16 and got.shape == ref.shape
    diff = np.abs(got.astype(np.int64) - ref)
    assert diff.max() == 0, f"off by up to {diff.max()} LSB on {np.mean(diff > 0):.1%} of the elements"


def _bias(n: int, big: int, ws: np.ndarray, dtype: str = "INT64"):
    b = _rng.integers(-big, big, n).astype(np.int64 if dtype == "INT64" else np.int32)
    return ([n], dtype, b, q(S_IN * ws))


def _out_hw(size: int, k: int, stride: int, pad: str, dil: int = 1) -> int:
    eff = (k - 1) * dil + 1
    return math.ceil(size / stride) if pad == "SAME" else math.ceil((size - eff + 1) / stride)


# -- CONV_2D / DEPTHWISE_CONV_2D ---------------------------------------------------------------------
CONV_VARIANTS = [  # out_scale, act, stride, pad, dilation, per_channel, bias bound
    (0.5, "NONE", 1, "SAME", 1, True, 2 ** 26),
    (0.05, "NONE", 1, "SAME", 1, True, 2 ** 26),
    (1e-4, "NONE", 1, "SAME", 1, True, 2 ** 26),  # multiplier > 1: left shift
    (0.05, "RELU", 1, "SAME", 1, True, 2 ** 26),
    (0.05, "RELU6", 2, "VALID", 1, True, 2 ** 26),
    (0.05, "RELU_N1_TO_1", 1, "SAME", 2, True, 2 ** 26),
    (0.05, "NONE", 1, "SAME", 1, False, 2 ** 26),
    (0.002, "NONE", 1, "SAME", 1, True, 2 ** 40),  # the int32 result wraps before the clamp
]


@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D"])
@pytest.mark.parametrize("out_scale,act,stride,pad,dil,per_channel,big", CONV_VARIANTS)
def test_conv_16x8_is_bit_exact(op, out_scale, act, stride, pad, dil, per_channel, big):
    cin, k, mult = 6, 3, 2 if op == "DEPTHWISE_CONV_2D" and per_channel else 1
    x = int16([2, 9, 10, cin])
    if op == "CONV_2D":
        n, qdim = 8, 0
        w = _rng.integers(-127, 128, [n, k, k, cin]).astype(np.int8)
        opts = {}
    else:
        n, qdim = cin * mult, 3
        w = _rng.integers(-127, 128, [1, k, k, n]).astype(np.int8)
        opts = {"depth_multiplier": mult}
    opts.update(padding=pad, stride_h=stride, stride_w=stride, dilation_h_factor=dil, dilation_w_factor=dil,
                fused_activation_function=act)
    ws = _rng.uniform(0.002, 0.02, n) if per_channel else np.array([0.01])
    ins = [(list(x.shape), "INT16", None, q(S_IN)), (list(w.shape), "INT8", w, q(ws, 0, qdim)), _bias(n, big, ws)]
    oh, ow = _out_hw(9, k, stride, pad, dil), _out_hw(10, k, stride, pad, dil)
    assert_exact(single_op_model(op, ins, [([2, oh, ow, n], "INT16", q(out_scale))], opts), [x])


# -- FULLY_CONNECTED ---------------------------------------------------------------------------------
@pytest.mark.parametrize("out_scale,act,bias,keep,per_channel,big", [
    (0.5, "NONE", "INT64", False, False, 2 ** 26),
    (0.003, "NONE", "INT64", False, False, 2 ** 26),
    (1e-4, "RELU", "INT64", False, False, 2 ** 26),
    (0.05, "NONE", None, False, False, 0),
    (0.05, "NONE", "INT32", False, False, 2 ** 24),  # int32 bias: the default kernel reads it as int32
    (0.05, "RELU6", "INT64", True, False, 2 ** 26),
    (0.05, "NONE", "INT64", False, True, 2 ** 26),
    (0.003, "NONE", "INT64", False, False, 2 ** 40),  # product beyond int64, int32 wrap
])
def test_fully_connected_16x8_is_bit_exact(out_scale, act, bias, keep, per_channel, big):
    shape, units = (4, 3, 20), 7
    x = int16(shape)
    w = _rng.integers(-127, 128, [units, shape[-1]]).astype(np.int8)
    ws = _rng.uniform(0.002, 0.02, units) if per_channel else np.array([0.01])
    ins = [(list(shape), "INT16", None, q(S_IN)), (list(w.shape), "INT8", w, q(ws))]
    if bias:
        ins.append(_bias(units, big, ws, bias))
    out = [*shape[:-1], units] if keep else [12, units]
    model = single_op_model("FULLY_CONNECTED", ins, [(out, "INT16", q(out_scale))],
                            {"fused_activation_function": act, "keep_num_dims": keep})
    assert_exact(model, [x])


# -- TRANSPOSE_CONV ----------------------------------------------------------------------------------
@pytest.mark.parametrize("out_scale,pad,per_channel,bias", [
    (0.5, "SAME", True, True), (0.003, "SAME", True, True), (0.05, "VALID", True, True),
    (0.05, "SAME", False, True), (0.05, "SAME", True, False)])
def test_transpose_conv_16x8_is_bit_exact(out_scale, pad, per_channel, bias):
    cout, stride = 3, 2
    x = int16([1, 5, 6, 4])
    w = _rng.integers(-127, 128, [cout, 3, 3, 4]).astype(np.int8)
    ws = _rng.uniform(0.002, 0.02, cout) if per_channel else np.array([0.01])
    oh, ow = (10, 12) if pad == "SAME" else (11, 13)
    ins = [([4], "INT32", np.array([1, oh, ow, cout], np.int32)), (list(w.shape), "INT8", w, q(ws)),
           (list(x.shape), "INT16", None, q(S_IN))]
    if bias:
        ins.append(_bias(cout, 2 ** 26, ws))
    model = single_op_model("TRANSPOSE_CONV", ins, [([1, oh, ow, cout], "INT16", q(out_scale))],
                            {"padding": pad, "stride_h": stride, "stride_w": stride})
    assert_exact(model, [x])


# -- BATCH_MATMUL ------------------------------------------------------------------------------------
@pytest.mark.parametrize("out_scale,adj_y,const", [(5.0, False, False), (0.5, False, False), (0.003, False, False),
                                                   (0.01, True, False), (0.01, False, True)])
def test_batch_matmul_int16_is_bit_exact(out_scale, adj_y, const):
    """int16 x int16 (both zero point 0): int64 accumulator, the reduced 15-bit multiplier form."""
    a = int16([2, 5, 6])
    bshape = [2, 4, 6] if adj_y else [2, 6, 4]
    b = int16(bshape)
    ins = [([2, 5, 6], "INT16", None, q(S_IN)), (bshape, "INT16", b if const else None, q(2e-3))]
    model = single_op_model("BATCH_MATMUL", ins, [([2, 5, 4], "INT16", q(out_scale))], {"adj_x": False, "adj_y": adj_y})
    assert_exact(model, [a] if const else [a, b])


# -- pools -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("k,stride,pad,act,out_scale", [
    (2, 2, "SAME", "NONE", S_IN), (3, 1, "SAME", "RELU", S_IN), (3, 2, "VALID", "RELU6", S_IN),
    (2, 2, "SAME", "NONE", 2 * S_IN),  # the int16 kernels keep the raw integers: no rescale
])
def test_pool_int16_is_bit_exact(op, k, stride, pad, act, out_scale):
    x = int16([2, 9, 10, 3])
    oh, ow = _out_hw(9, k, stride, pad), _out_hw(10, k, stride, pad)
    model = single_op_model(op, [(list(x.shape), "INT16", None, q(S_IN))], [([2, oh, ow, 3], "INT16", q(out_scale))],
                            {"padding": pad, "stride_h": stride, "stride_w": stride, "filter_height": k,
                             "filter_width": k, "fused_activation_function": act}, table="Pool2DOptions")
    assert_exact(model, [x])


# -- SOFTMAX -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_scale,beta,shape", [
    (1e-3, 1.0, [8, 40]), (3e-4, 1.0, [8, 40]), (1e-2, 1.0, [2, 3, 7]), (5e-5, 0.7, [8, 40]),
    (1.2e-5, 1.0, [8, 40]),  # multiplier < 1: a rounding right shift (double rounding decides)
    (2e-3, 2.0, [4, 1]), (0.2, 1.0, [8, 40]), (1e-3, 0.3, [2, 1000])])
def test_softmax_int16_is_bit_exact(in_scale, beta, shape):
    """The LUT kernel (exp and 1/(1+x) tables, interpolated lookups); rows half concentrated so that
    many elements share the maximum's neighbourhood."""
    x = int16(shape)
    x[: max(1, shape[0] // 2)] //= 64
    model = single_op_model("SOFTMAX", [(shape, "INT16", None, q(in_scale))], [(shape, "INT16", q(1 / 32768))],
                            {"beta": beta})
    assert_exact(model, [x])


@pytest.mark.parametrize("dtype,in_scale,zp,beta", [("INT8", 0.05, 0, 1.0), ("INT8", 0.1, -128, 1.0),
                                                    ("INT8", 0.02, 127, 0.7), ("UINT8", 0.05, 128, 1.0)])
def test_softmax_8bit_to_int16_is_bit_exact(dtype, in_scale, zp, beta):
    lo, hi = (-128, 128) if dtype == "INT8" else (0, 256)
    x = _rng.integers(lo, hi, [16, 30]).astype(np.int8 if dtype == "INT8" else np.uint8)
    model = single_op_model("SOFTMAX", [([16, 30], dtype, None, q(in_scale, zp))], [([16, 30], "INT16", q(1 / 32768))],
                            {"beta": beta})
    assert_exact(model, [x])


# -- a 16x8 keyword spotter end to end ----------------------------------------------------------------
def _ds_cnn() -> tf.keras.Model:
    """conv -> 2 depthwise-separable blocks -> average pool -> FC -> softmax (DS-CNN's layout)."""
    tf.keras.utils.set_random_seed(3)
    L = tf.keras.layers
    inp = tf.keras.Input([25, 10, 1], batch_size=1)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, (10, 4), strides=2, padding="same")(inp)))
    for _ in range(2):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 1)(x)))
    x = L.Flatten()(L.AveragePooling2D(pool_size=(13, 5))(x))
    dense = L.Dense(12)
    model = tf.keras.Model(inp, L.Softmax()(dense(x)))
    k, b = dense.get_weights()
    dense.set_weights([k * 30, b])  # confident logits: probabilities near 0 and 1, as a trained spotter's
    return model


def test_ds_cnn_16x8_keyword_spotter_is_bit_exact():
    model = _ds_cnn()
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 2, [40, 1, 25, 10, 1]).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s] for s in samples[:32])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = tf.int16
    conv.inference_output_type = tf.int16
    tfl = conv.convert()
    sg = read_model(tfl).main
    names = {o.name for o in sg.operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"} <= names
    in_scale = float(sg.tensors[sg.inputs[0]].quantization.scale[0])
    worst = 0
    for s in samples[32:]:
        x = np.clip(np.round(s / in_scale), -32768, 32767).astype(np.int16)
        ref = run_interpreter(tfl, [x])[0].astype(np.int64)
        got = run_rebuilt(tfl, [x])[0].astype(np.int64)
        worst = max(worst, int(np.abs(got - ref).max()))
    assert worst == 0, f"DS-CNN 16x8 off by {worst} LSB"


# -- power-of-two scales: exact rounding ties ----------------------------------------------------------
def _pow2_linear(op: str, out_scale: float) -> tuple[bytes, np.ndarray]:
    """in 2**-10, weights 2**-7: the multiplier is a power of two, so half the rescaled accumulators
    of an odd division are exact ties, and the rounding of each tie shows."""
    x = int16([400, 20])
    w = _rng.integers(-127, 128, [10, 20]).astype(np.int8)
    b = ([10], "INT64", _rng.integers(-2 ** 20, 2 ** 20, 10).astype(np.int64), q(2.0 ** -17))
    if op == "FULLY_CONNECTED":
        ins = [([400, 20], "INT16", None, q(2.0 ** -10)), ([10, 20], "INT8", w, q(2.0 ** -7)), b]
        return single_op_model(op, ins, [([400, 10], "INT16", q(out_scale))], {}), x
    ins = [([1, 20, 20, 20], "INT16", None, q(2.0 ** -10)), ([10, 1, 1, 20], "INT8", w.reshape(10, 1, 1, 20),
                                                             q(2.0 ** -7)), b]
    model = single_op_model(op, ins, [([1, 20, 20, 10], "INT16", q(out_scale))],
                            {"padding": "SAME", "stride_h": 1, "stride_w": 1})
    return model, x.reshape(1, 20, 20, 20)


@pytest.mark.parametrize("out_scale", [2.0 ** -12, 2.0 ** -3, 2.0 ** -16])
def test_conv_16x8_power_of_two_scales_is_bit_exact(out_scale):
    """The reduced 15-bit multiplier rounds ties half up, as the kernel does."""
    model, x = _pow2_linear("CONV_2D", out_scale)
    assert_exact(model, [x])


@pytest.mark.parametrize("out_scale", [2.0 ** -12, 2.0 ** -3, 2.0 ** -16])
def test_fully_connected_16x8_power_of_two_scales_is_bit_exact(out_scale):
    """The 16x8 FULLY_CONNECTED kernel rescales in double precision and rounds ties away from zero:
    the fixed-point forms (single or double rounding, 31- or 15-bit multiplier) are 1 LSB off here
    on negative ties and identical elsewhere."""
    model, x = _pow2_linear("FULLY_CONNECTED", out_scale)
    assert_exact(model, [x])


def test_fully_connected_16x8_product_beyond_int32_is_int32_min():
    """A rescaled accumulator outside int32 converts to INT32_MIN on x86 (``cvttsd2si``), so a huge
    positive value clamps to -32768, as the interpreter gives."""
    x = int16([6, 20])
    w = _rng.integers(-127, 128, [7, 20]).astype(np.int8)
    bias = np.array([2 ** 50, -2 ** 50, 2 ** 45, -2 ** 45, 2 ** 38, -2 ** 38, 5], np.int64)
    ins = [([6, 20], "INT16", None, q(S_IN)), ([7, 20], "INT8", w, q(0.01)), ([7], "INT64", bias, q(S_IN * 0.01))]
    model = single_op_model("FULLY_CONNECTED", ins, [([6, 7], "INT16", q(0.003))], {})
    assert (run_interpreter(model, [x])[0][:, 0] == -32768).all()
    assert_exact(model, [x])


@pytest.mark.parametrize("dtype", ["INT16", "INT8"])
def test_average_pool_with_unequal_strides_is_bit_exact(dtype):
    """A 3x2 window with stride 3x2 (a keyword spotter's global pool has 13x5): the window sums once
    came from a depthwise convolution, which TensorFlow without oneDNN refuses for unequal strides."""
    lo, hi = (-32768, 32768) if dtype == "INT16" else (-128, 128)
    x = _rng.integers(lo, hi, [2, 9, 10, 3]).astype(np.int16 if dtype == "INT16" else np.int8)
    qp = q(S_IN) if dtype == "INT16" else q(0.05, -3)
    model = single_op_model("AVERAGE_POOL_2D", [(list(x.shape), dtype, None, qp)], [([2, 3, 5, 3], dtype, qp)],
                            {"padding": "VALID", "stride_h": 3, "stride_w": 2, "filter_height": 3, "filter_width": 2},
                            table="Pool2DOptions")
    ref = run_interpreter(model, [x])[0].astype(np.int64)
    got = run_rebuilt(model, [x])[0]
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got.astype(np.int64), ref)


@pytest.mark.parametrize("dtype,zp", [("INT8", 3), ("UINT8", 128)])
@pytest.mark.parametrize("out_scale,out_shift", [(0.1, 0), (0.05, 7)])
def test_average_pool_8bit_with_other_output_parameters_keeps_raw_integers(dtype, zp, out_scale, out_shift):
    """The raw average becomes the output's raw integer, whatever the output's scale and zero point
    (the float pool plus rounding was up to 57 LSB off)."""
    lo, hi = (-128, 128) if dtype == "INT8" else (0, 256)
    x = _rng.integers(lo, hi, [2, 9, 10, 3]).astype(np.int8 if dtype == "INT8" else np.uint8)
    model = single_op_model("AVERAGE_POOL_2D", [(list(x.shape), dtype, None, q(0.05, zp))],
                            [([2, 5, 5, 3], dtype, q(out_scale, zp + out_shift))],
                            {"padding": "SAME", "stride_h": 2, "stride_w": 2, "filter_height": 2, "filter_width": 2},
                            table="Pool2DOptions")
    np.testing.assert_array_equal(run_rebuilt(model, [x])[0], run_interpreter(model, [x])[0])
