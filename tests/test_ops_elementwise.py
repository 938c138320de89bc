"""Element-wise ops: every rebuilder against the TFLite interpreter, float32 and (where TFLite has an
integer kernel) int8, plus the option values the converter never writes (patched into converted
models: fused activations, opcodes such as RELU_0_TO_1 and the STABLEHLO_* element-wise builtins)."""

from __future__ import annotations

import functools
import struct

import numpy as np
import pytest
import tensorflow as tf
import tflite

from tflite_inverter.model.reader import read_model
from tflite_inverter.rebuild import make_module

from .helpers import (
    assert_float_close,
    assert_quantized_close,
    convert_single,
    op_names,
    quantized_inputs,
    random_like,
    reference_activation,
    run_builtin,
    run_interpreter,
    run_rebuilt,
    to_tflite,
    uniform_calibration,
)

F32 = tf.float32


# -- patching converted models: option values and opcodes the converter never emits --------------
def patch_opcode(model: bytes, old: int, new: int, version: int | None = None) -> bytes:
    """Rewrite an OperatorCode ``old`` -> ``new`` (both code fields: TFLite reads the larger of
    builtin_code and deprecated_builtin_code), optionally with a new version."""
    m = tflite.Model.GetRootAs(model, 0)
    buf = bytearray(model)
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        if oc.BuiltinCode() == old:
            tab = oc._tab
            off = tab.Offset(10)  # field 3: builtin_code (int32)
            assert off, "builtin_code not stored"
            struct.pack_into("<i", buf, tab.Pos + off, new)
            dep = tab.Offset(4)  # field 0: deprecated_builtin_code (int8)
            if dep:
                struct.pack_into("<b", buf, tab.Pos + dep, min(new, 127))
            if version is not None:
                voff = tab.Offset(8)  # field 2: version (int32)
                assert voff, "version not stored"
                struct.pack_into("<i", buf, tab.Pos + voff, version)
            return bytes(buf)
    raise AssertionError(f"no operator code {old}")


def patch_fused_activation(model: bytes, value: int, op_index: int = 0) -> bytes:
    """Overwrite field 0 (fused_activation_function) of an operator's builtin options."""
    m = tflite.Model.GetRootAs(model, 0)
    tab = m.Subgraphs(0).Operators(op_index).BuiltinOptions()
    off = tab.Offset(4)
    assert off, "fused_activation_function not stored (convert with a non-NONE activation)"
    buf = bytearray(model)
    buf[tab.Pos + off] = value
    return bytes(buf)


BUILTIN = {n: getattr(tflite.BuiltinOperator, n) for n in dir(tflite.BuiltinOperator) if n.isupper()}

# -- float32 unary ops ------------------------------------------------------------------------------
SHAPE = [2, 3, 8]
UNARY = {
    # op: (TensorFlow form, input low, input high)
    "ABS": (tf.abs, -4, 4),
    "CEIL": (tf.math.ceil, -4, 4),
    "COS": (tf.cos, -4, 4),
    "EXP": (tf.exp, -4, 4),
    "FLOOR": (tf.floor, -4, 4),
    "LOG": (tf.math.log, 0.01, 10),
    "NEG": (tf.negative, -4, 4),
    "ROUND": (tf.round, -4, 4),
    "RSQRT": (tf.math.rsqrt, 0.01, 10),
    "SIN": (tf.sin, -4, 4),
    "SQRT": (tf.sqrt, 0, 10),
    "SQUARE": (tf.square, -4, 4),
    "SIGN": (tf.sign, -4, 4),
    "RELU": (tf.nn.relu, -4, 4),
    "RELU6": (tf.nn.relu6, -3, 9),
    "RELU_N1_TO_1": (lambda x: tf.clip_by_value(x, -1.0, 1.0), -3, 3),
    "LOGISTIC": (tf.sigmoid, -10, 10),
    "TANH": (tf.tanh, -5, 5),
    "ELU": (tf.nn.elu, -4, 4),
    "HARD_SWISH": (lambda x: x * tf.nn.relu6(x + 3.0) / 6.0, -6, 6),
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_float_matches_interpreter(op):
    fn, lo, hi = UNARY[op]
    specs = [tf.TensorSpec(SHAPE, F32)]
    model = convert_single(fn, specs, op)
    assert_float_close(model, random_like(specs, seed=1, low=lo, high=hi), rtol=1e-6, atol=1e-6)


def test_round_is_half_to_even_like_tflite():
    specs = [tf.TensorSpec([8], F32)]
    model = convert_single(tf.round, specs, "ROUND")
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 3.7], np.float32)
    got = run_rebuilt(model, [x])[0]
    np.testing.assert_array_equal(got, [0, 2, 2, -0.0, -2, -2, 0, 4])
    np.testing.assert_array_equal(got, run_interpreter(model, [x])[0])


@pytest.mark.parametrize("alpha", [0.01, 0.2, 1.7, -0.5])  # 1.0 is folded away
def test_leaky_relu_float_every_alpha(alpha):
    specs = [tf.TensorSpec(SHAPE, F32)]
    model = convert_single(lambda x: tf.nn.leaky_relu(x, alpha), specs, "LEAKY_RELU")
    assert read_model(model).main.operators[0].options["alpha"] == pytest.approx(alpha)
    assert_float_close(model, random_like(specs, seed=2, low=-4, high=4), rtol=0, atol=0)


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_float_both_forms(approximate):
    specs = [tf.TensorSpec(SHAPE, F32)]
    model = convert_single(lambda x: tf.nn.gelu(x, approximate=approximate), specs, "GELU")
    assert read_model(model).main.operators[0].options.get("approximate", False) is approximate
    assert_float_close(model, random_like(specs, seed=3, low=-5, high=5), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("x_shape,alpha_shape", [
    ([1, 4, 4, 6], [6]), ([1, 4, 4, 6], [1, 1, 6]), ([1, 4, 4, 6], [4, 4, 6]), ([5, 6], [6]), ([5, 6], [1]),
])
def test_prelu_float_broadcast_alpha(x_shape, alpha_shape):
    alpha = np.random.default_rng(4).uniform(-0.5, 0.8, alpha_shape).astype(np.float32)
    specs = [tf.TensorSpec(x_shape, F32)]
    # The converter fuses Keras' form only when alpha has rank(x) - 1; give it that shape.
    a = tf.constant(alpha.reshape([1] * (len(x_shape) - 1 - alpha.ndim) + list(alpha.shape))
                    if alpha.ndim < len(x_shape) - 1 else alpha)
    model = convert_single(lambda x: tf.nn.relu(x) + (-a) * tf.nn.relu(-x), specs, "PRELU")
    assert_float_close(model, random_like(specs, seed=5, low=-3, high=3), rtol=0, atol=0)


def test_prelu_alpha_reshape_keeps_broadcast():
    from tflite_inverter.ops.elementwise import _prelu_alpha_shape

    assert _prelu_alpha_shape((16,), 4) == [1, 1, 16]
    assert _prelu_alpha_shape((1, 1, 1, 16), 4) == [1, 1, 16]
    assert _prelu_alpha_shape((8, 8, 16), 4) == [8, 8, 16]
    assert _prelu_alpha_shape((2, 8, 8, 16), 4) is None  # alpha varies over the batch: no Keras form
    assert _prelu_alpha_shape((16,), 1) is None


# -- float32 binary ops (with broadcasting) -----------------------------------------------------------
BINARY = {
    # op: (TensorFlow form, (low, high) of input 0, (low, high) of input 1)
    "ADD": (tf.add, (-4, 4), (-4, 4)),
    "SUB": (tf.subtract, (-4, 4), (-4, 4)),
    "MUL": (tf.multiply, (-4, 4), (-4, 4)),
    "DIV": (tf.divide, (-4, 4), (0.5, 4)),
    "FLOOR_DIV": (tf.math.floordiv, (-8, 8), (-3, -0.5)),
    "FLOOR_MOD": (tf.math.floormod, (-8, 8), (0.5, 3)),
    "POW": (tf.pow, (0.1, 3), (-2, 2)),
    "SQUARED_DIFFERENCE": (tf.math.squared_difference, (-4, 4), (-4, 4)),
    "MAXIMUM": (tf.maximum, (-4, 4), (-4, 4)),
    "MINIMUM": (tf.minimum, (-4, 4), (-4, 4)),
    "ATAN2": (tf.math.atan2, (-4, 4), (-4, 4)),
}
BROADCASTS = [([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [3, 1]), ([1, 4], [3, 1])]
# TFLite's ATAN2 requires equal shapes (the converter rejects broadcasting ones).
BINARY_CASES = [(op, shapes) for op in sorted(BINARY) for shapes in BROADCASTS
                if op != "ATAN2" or shapes[0] == shapes[1]]


@pytest.mark.parametrize("op,shapes", BINARY_CASES, ids=[f"{o}-{s[0]}x{s[1]}" for o, s in BINARY_CASES])
def test_binary_float_matches_interpreter(op, shapes):
    fn, r0, r1 = BINARY[op]
    specs = [tf.TensorSpec(shapes[0], F32), tf.TensorSpec(shapes[1], F32)]
    model = convert_single(fn, specs, op)
    x = [random_like(specs[:1], seed=6, low=r0[0], high=r0[1])[0],
         random_like(specs[1:], seed=7, low=r1[0], high=r1[1])[0]]
    assert_float_close(model, x, rtol=1e-6, atol=1e-6)


COMPARISONS = {"EQUAL": tf.equal, "NOT_EQUAL": tf.not_equal, "LESS": tf.less, "LESS_EQUAL": tf.less_equal,
               "GREATER": tf.greater, "GREATER_EQUAL": tf.greater_equal}


@pytest.mark.parametrize("dtype", [tf.float32, tf.int32])
@pytest.mark.parametrize("op", sorted(COMPARISONS))
def test_comparison_matches_interpreter_with_ties(op, dtype):
    specs = [tf.TensorSpec([4, 6], dtype), tf.TensorSpec([6], dtype)]
    model = convert_single(COMPARISONS[op], specs, op)
    rng = np.random.default_rng(8)
    x = [rng.integers(-2, 3, size=[4, 6]).astype(dtype.as_numpy_dtype),
         rng.integers(-2, 3, size=[6]).astype(dtype.as_numpy_dtype)]  # small integers: many ties
    assert_float_close(model, x)


@pytest.mark.parametrize("op,fn", [("LOGICAL_AND", tf.logical_and), ("LOGICAL_OR", tf.logical_or),
                                   ("LOGICAL_NOT", tf.logical_not)])
def test_logical_ops_match_interpreter(op, fn):
    specs = [tf.TensorSpec([3, 4], tf.bool), tf.TensorSpec([4], tf.bool)][:1 if op == "LOGICAL_NOT" else 2]
    model = convert_single(fn, specs, op)
    assert_float_close(model, random_like(specs, seed=9))


@pytest.mark.parametrize("dtype", [tf.float32, tf.int32])
def test_add_n_matches_interpreter(dtype):
    specs = [tf.TensorSpec([2, 5], dtype)] * 3
    model = convert_single(lambda a, b, c: tf.add_n([a, b, c]), specs, "ADD_N")
    assert_float_close(model, random_like(specs, seed=10), rtol=1e-6, atol=1e-6)


# -- integer (non-quantized) arithmetic -------------------------------------------------------------
INT_BINARY = {
    "ADD": tf.add, "SUB": tf.subtract, "MUL": tf.multiply, "DIV": tf.truncatediv,
    "FLOOR_DIV": tf.math.floordiv, "FLOOR_MOD": tf.math.floormod, "MAXIMUM": tf.maximum,
    "MINIMUM": tf.minimum, "SQUARED_DIFFERENCE": tf.math.squared_difference, "POW": tf.pow,
}


@pytest.mark.parametrize("op", sorted(INT_BINARY))
def test_int32_binary_matches_interpreter(op):
    specs = [tf.TensorSpec([3, 6], tf.int32), tf.TensorSpec([6], tf.int32)]
    model = convert_single(INT_BINARY[op], specs, op)
    rng = np.random.default_rng(11)
    a = rng.integers(-20, 21, size=[3, 6]).astype(np.int32)
    b = np.array([-7, -3, -2, 2, 3, 5], np.int32) if op != "POW" else np.array([0, 1, 2, 3, 4, 5], np.int32)
    assert_float_close(model, [a, b])


def test_int32_div_truncates_toward_zero():
    specs = [tf.TensorSpec([6], tf.int32)] * 2
    model = convert_single(tf.truncatediv, specs, "DIV")
    a = np.array([-7, 7, -7, 7, -1, 5], np.int32)
    b = np.array([2, 2, -2, -2, 3, -3], np.int32)
    got = run_rebuilt(model, [a, b])[0]
    np.testing.assert_array_equal(got, [-3, 3, 3, -3, 0, -1])
    np.testing.assert_array_equal(got, run_interpreter(model, [a, b])[0])


@pytest.mark.parametrize("dtype,op,fn", [
    (tf.int16, "ADD", tf.add), (tf.int16, "MUL", tf.multiply),
    (tf.int64, "ADD", tf.add), (tf.int64, "SUB", tf.subtract), (tf.int64, "MUL", tf.multiply),
    (tf.int64, "MAXIMUM", tf.maximum),
])
def test_int16_int64_arithmetic_matches_interpreter(dtype, op, fn):
    specs = [tf.TensorSpec([2, 4], dtype), tf.TensorSpec([2, 4], dtype)]
    model = convert_single(fn, specs, op)
    rng = np.random.default_rng(12)
    x = [rng.integers(-100, 100, size=[2, 4]).astype(dtype.as_numpy_dtype) for _ in range(2)]
    out = read_model(model).main.tensors[read_model(model).main.outputs[0]]
    assert out.type_name == dtype.name.upper()
    assert_float_close(model, x)


@pytest.mark.parametrize("op,fn", [("ABS", tf.abs), ("NEG", tf.negative), ("SIGN", tf.sign)])
def test_int32_unary_matches_interpreter(op, fn):
    specs = [tf.TensorSpec([10], tf.int32)]
    model = convert_single(fn, specs, op)
    assert_float_close(model, [np.arange(-5, 5, dtype=np.int32)])


@pytest.mark.parametrize("dtype", [tf.int8, tf.uint8, tf.int16, tf.int32])
@pytest.mark.parametrize("op,fn", [("BITWISE_XOR", tf.bitwise.bitwise_xor),
                                   ("RIGHT_SHIFT", tf.bitwise.right_shift)])
def test_bitwise_ops_match_interpreter(op, fn, dtype):
    specs = [tf.TensorSpec([8], dtype), tf.TensorSpec([8], dtype)]
    model = convert_single(fn, specs, op)
    info = np.iinfo(dtype.as_numpy_dtype)
    a = np.array([info.min, info.max, 0, 1, 100, 77, info.min // 3, info.max // 5]).astype(dtype.as_numpy_dtype)
    b = np.array([1, 2, 0, 3, 5, 1, 6, 4]).astype(dtype.as_numpy_dtype)
    if op == "RIGHT_SHIFT":
        b[-1] = info.bits + 3  # out-of-range shift: both clamp to bits - 1
        if info.min < 0:
            b[-2] = -1
    assert_float_close(model, [a, b])


# -- complex -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op,fn", [("REAL", tf.math.real), ("IMAG", tf.math.imag), ("COMPLEX_ABS", tf.abs)])
def test_complex_parts_match_interpreter(op, fn):
    specs = [tf.TensorSpec([3, 4], tf.complex64)]
    model = convert_single(fn, specs, op)
    rng = np.random.default_rng(13)
    x = (rng.normal(size=[3, 4]) + 1j * rng.normal(size=[3, 4])).astype(np.complex64)
    assert_float_close(model, [x], rtol=1e-6, atol=1e-6)


# -- CAST -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [
    (tf.float32, tf.int32), (tf.int32, tf.float32), (tf.bool, tf.float32), (tf.float32, tf.bool),
    (tf.int32, tf.int64), (tf.uint8, tf.float32), (tf.int64, tf.int32), (tf.float32, tf.uint8),
])
def test_cast_matches_interpreter(src, dst):
    specs = [tf.TensorSpec([10], src)]
    model = convert_single(lambda x: tf.cast(x, dst), specs, "CAST")
    if src.is_floating:
        x = np.array([-2.7, -1.5, -0.5, 0.0, 0.4, 0.5, 1.5, 2.5, 3.9, 200.2], np.float32)
        if dst == tf.uint8:
            x = np.abs(x)
    elif src == tf.bool:
        x = np.arange(10) % 3 == 0
    else:
        x = np.arange(10).astype(src.as_numpy_dtype) * 7
    assert_float_close(model, [x])


def test_cast_of_quantized_tensor_casts_integer_codes():
    """TFLite's CAST ignores quantization: int8 -> float32 yields the raw codes. A float-I/O int8
    model ends in DEQUANTIZE; turning that into CAST gives such an op."""
    specs = [tf.TensorSpec([4, 8], F32)]
    model = to_tflite(tf.nn.relu6, specs, "int8_float_io")
    assert op_names(model)[-1] == "DEQUANTIZE"
    patched = patch_opcode(model, BUILTIN["DEQUANTIZE"], BUILTIN["CAST"])
    assert op_names(patched)[-1] == "CAST"
    x = random_like(specs, seed=14, low=-1, high=1)
    ref = run_interpreter(patched, x)[0]
    assert np.all(ref == np.round(ref)) and ref.max() > 10  # raw integer codes, not real values
    np.testing.assert_array_equal(run_rebuilt(patched, x)[0], ref)


def test_cast_to_quantized_tensor_stores_truncated_values_as_codes():
    """QUANTIZE float -> int8 turned into CAST: the codes are the float values truncated."""
    specs = [tf.TensorSpec([4, 8], F32)]
    model = to_tflite(tf.nn.relu6, specs, "int8_float_io")
    assert op_names(model)[0] == "QUANTIZE"
    patched = patch_opcode(model, BUILTIN["QUANTIZE"], BUILTIN["CAST"])
    assert op_names(patched)[0] == "CAST"
    x = random_like(specs, seed=15, low=-100, high=100)
    assert_float_close(patched, x, rtol=0, atol=1e-6)


# -- fused activations on ADD / SUB / MUL / DIV --------------------------------------------------------
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4, "SIGN_BIT": 5}
FUSED_OPS = {"ADD": (tf.add, np.add), "SUB": (tf.subtract, np.subtract), "MUL": (tf.multiply, np.multiply),
             "DIV": (tf.divide, np.divide)}


@functools.cache
def _relu_fused_model(op: str, mode: str) -> bytes:
    """A converted ``op`` with a fused RELU, so the activation field is stored and can be patched."""
    specs = (tf.TensorSpec([3, 8], F32), tf.TensorSpec([3, 8], F32))
    fn = FUSED_OPS[op][0]
    model = to_tflite(lambda a, b: tf.nn.relu(fn(a, b)), specs, mode,
                      calibration=uniform_calibration(specs, -8, 8) if mode != "float" else None)
    ops = read_model(model).main.operators
    assert [o.name for o in ops if o.name == op] == [op]
    assert next(o for o in ops if o.name == op).options["fused_activation_function"] == "RELU"
    return model


def _fused_inputs(op: str) -> list[np.ndarray]:
    rng = np.random.default_rng(16)
    a = rng.uniform(-8, 8, size=[3, 8]).astype(np.float32)
    b = rng.uniform(0.5, 3, size=[3, 8]).astype(np.float32) if op == "DIV" else \
        rng.uniform(-4, 4, size=[3, 8]).astype(np.float32)
    return [a, b]


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("op", list(FUSED_OPS))
def test_fused_activation_float_every_value(op, act):
    model = patch_fused_activation(_relu_fused_model(op, "float"), ACTIVATIONS[act])
    assert read_model(model).main.operators[0].options["fused_activation_function"] == act
    x = _fused_inputs(op)
    got = run_rebuilt(model, x)[0]
    want = reference_activation(FUSED_OPS[op][1](x[0], x[1]), act)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if act not in ("TANH", "SIGN_BIT"):
        assert_float_close(model, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("act", ["TANH", "SIGN_BIT"])
def test_interpreter_ignores_tanh_and_sign_bit_fused_into_add(act):
    """Documents a TFLite quirk: CalculateActivationRange treats TANH and SIGN_BIT as 'no clamp', so
    the interpreter returns the plain sum. The rebuild follows the schema's definition instead (tested
    above); a verifier comparing such a file against the interpreter will report the difference."""
    model = patch_fused_activation(_relu_fused_model("ADD", "float"), ACTIVATIONS[act])
    x = _fused_inputs("ADD")
    np.testing.assert_allclose(run_interpreter(model, x)[0], x[0] + x[1], rtol=1e-6)


@pytest.mark.parametrize("act", ["NONE", "RELU", "RELU_N1_TO_1", "RELU6"])
@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL"])
def test_fused_activation_int8(op, act):
    model = patch_fused_activation(_relu_fused_model(op, "int8"), ACTIVATIONS[act])
    ops = read_model(model).main.operators
    assert [o.options["fused_activation_function"] for o in ops] == [act]
    assert_quantized_close(model, quantized_inputs(model, _fused_inputs(op)), max_lsb=1,
                           min_within_1=1.0)


# -- int8 kernels ---------------------------------------------------------------------------------------
INT8_UNARY = {
    # op: (TensorFlow form, calibration/input low, high)
    "ABS": (tf.abs, -4, 4),
    "RSQRT": (tf.math.rsqrt, 0.1, 8),
    "SQRT": (tf.sqrt, 0, 8),
    "EXP": (tf.exp, -3, 2),
    "LOG": (tf.math.log, 0.1, 8),
    "LOGISTIC": (tf.sigmoid, -8, 8),
    "TANH": (tf.tanh, -4, 4),
    "RELU": (tf.nn.relu, -3, 9),
    "RELU6": (tf.nn.relu6, -3, 9),
    "RELU_N1_TO_1": (lambda x: tf.clip_by_value(x, -1.0, 1.0), -3, 3),
    "LEAKY_RELU": (lambda x: tf.nn.leaky_relu(x, 0.1), -4, 4),
    "HARD_SWISH": (lambda x: x * tf.nn.relu6(x + 3.0) / 6.0, -6, 6),
    "GELU": (tf.nn.gelu, -4, 4),
}


@pytest.mark.parametrize("op", sorted(INT8_UNARY))
def test_unary_int8_within_one_lsb(op):
    fn, lo, hi = INT8_UNARY[op]
    specs = [tf.TensorSpec([4, 64], F32)]
    model = convert_single(fn, specs, op, "int8", uniform_calibration(specs, lo, hi))
    x = random_like(specs, seed=17, low=lo, high=hi)
    assert_quantized_close(model, quantized_inputs(model, x), max_lsb=1, min_within_1=1.0)


def test_elu_int8_kernel_the_converter_does_not_emit():
    """The converter keeps ELU in float inside int8 models; swapping the opcode of an int8 TANH
    (version 1: the only one the resolver registers) runs TFLite's int8 ELU kernel."""
    specs = [tf.TensorSpec([4, 64], F32)]
    model = convert_single(tf.tanh, specs, "TANH", "int8", uniform_calibration(specs, -2, 2))
    patched = patch_opcode(model, BUILTIN["TANH"], BUILTIN["ELU"], version=1)
    assert op_names(patched) == ["ELU"]
    x = random_like(specs, seed=18, low=-2, high=2)
    assert_quantized_close(patched, quantized_inputs(patched, x), max_lsb=1, min_within_1=1.0)


def test_neg_int8_negates_raw_codes_like_tflite():
    """TFLite's int8 NEG negates codes and ignores the scales (here input zp -1, output scale 1/128
    zp 0: a real-valued negation would be far off); -(-128) wraps to -128."""
    specs = [tf.TensorSpec([256], F32)]
    model = convert_single(tf.tanh, specs, "TANH", "int8", uniform_calibration(specs, -2, 2))
    patched = patch_opcode(model, BUILTIN["TANH"], BUILTIN["NEG"], version=1)
    assert op_names(patched) == ["NEG"]
    codes = np.arange(-128, 128).astype(np.int8)
    ref = run_interpreter(patched, [codes])[0]
    np.testing.assert_array_equal(ref, (-codes.astype(np.int32)).astype(np.int8))
    np.testing.assert_array_equal(run_rebuilt(patched, [codes])[0], ref)


def test_prelu_int8_within_one_lsb():
    alpha = tf.constant(np.linspace(-0.4, 0.6, 16, dtype=np.float32).reshape(1, 1, 16))
    specs = [tf.TensorSpec([1, 4, 4, 16], F32)]
    model = convert_single(lambda x: tf.nn.relu(x) + (-alpha) * tf.nn.relu(-x), specs, "PRELU", "int8",
                           uniform_calibration(specs, -4, 4))
    x = random_like(specs, seed=19, low=-4, high=4)
    assert_quantized_close(model, quantized_inputs(model, x), max_lsb=1, min_within_1=1.0)


INT8_BINARY = {
    "ADD": tf.add, "SUB": tf.subtract, "MUL": tf.multiply, "MAXIMUM": tf.maximum, "MINIMUM": tf.minimum,
    "SQUARED_DIFFERENCE": tf.math.squared_difference,
}


@pytest.mark.parametrize("op", sorted(INT8_BINARY))
def test_binary_int8_within_one_lsb(op):
    specs = [tf.TensorSpec([4, 16], F32), tf.TensorSpec([16], F32)]
    model = convert_single(INT8_BINARY[op], specs, op, "int8", uniform_calibration(specs, -3, 3))
    x = random_like(specs, seed=20, low=-3, high=3)
    assert_quantized_close(model, quantized_inputs(model, x), max_lsb=1, min_within_1=1.0)


@pytest.mark.parametrize("op", sorted(COMPARISONS))
def test_comparison_int8_exact(op):
    """The converter keeps NOT_EQUAL in float; an int8 EQUAL with its opcode swapped runs it."""
    specs = [tf.TensorSpec([4, 16], F32), tf.TensorSpec([4, 16], F32)]
    src = "EQUAL" if op == "NOT_EQUAL" else op
    model = convert_single(COMPARISONS[src], specs, src, "int8", uniform_calibration(specs, -2, 2))
    if op != src:
        model = patch_opcode(model, BUILTIN[src], BUILTIN[op])
        assert op_names(model) == [op]
    x = random_like(specs, seed=21, low=-2, high=2)
    x[1][:2] = x[0][:2]  # ties
    assert_float_close(model, quantized_inputs(model, x))  # bool output: exact


def test_comparison_int8_uses_tflite_grid_of_1_over_256():
    """TFLite compares int8 values as round(real * 256): with scales below 1/256 distinct codes can
    compare equal. The rebuild reproduces that (a plain float comparison would not)."""
    specs = [tf.TensorSpec([64], F32), tf.TensorSpec([64], F32)]
    model = convert_single(tf.equal, specs, "EQUAL", "int8", uniform_calibration(specs, -0.1, 0.1))
    m = read_model(model)
    scales = [float(m.main.tensors[t].quantization.scale[0]) for t in m.main.operators[0].inputs]
    assert max(scales) < 1 / 256
    rng = np.random.default_rng(27)
    a = rng.integers(-128, 128, size=64).astype(np.int8)
    b = np.clip(a.astype(int) + rng.integers(-1, 2, size=64), -128, 127).astype(np.int8)
    ref = run_interpreter(model, [a, b])[0]
    np.testing.assert_array_equal(run_rebuilt(model, [a, b])[0], ref)
    assert np.any(ref & (a != b))  # distinct codes that TFLite calls equal


def test_div_int8_converted_is_bit_exact_including_minus_one():
    """A converted int8 DIV, code for code: numerator codes one step below the zero point (v1 = -1,
    CountLeadingSignBits 31, the kernel's rounding shift past 31 bits, x86 behaviour) included."""
    specs = [tf.TensorSpec([8, 32], F32), tf.TensorSpec([8, 32], F32)]
    cal = [[a, np.abs(b) + 0.5] for a, b in uniform_calibration(specs, -2, 2)]
    model = convert_single(tf.divide, specs, "DIV", "int8", cal)
    m = read_model(model)
    zp = int(m.main.tensors[m.main.operators[0].inputs[0]].quantization.zero_point[0])
    rng = np.random.default_rng(22)
    a = rng.integers(-128, 128, size=[8, 32]).astype(np.int8)
    b = quantized_inputs(model, [a.astype(np.float32), rng.uniform(0.5, 2.5, size=[8, 32]).astype(np.float32)])[1]
    assert (a.astype(int) - zp == -1).any()
    np.testing.assert_array_equal(run_rebuilt(model, [a, b])[0], run_interpreter(model, [a, b])[0])


def test_relu_0_to_1_float_and_int8():
    """No TensorFlow form converts to RELU_0_TO_1; a converted RELU gets its opcode swapped."""
    specs = [tf.TensorSpec([4, 32], F32)]
    model = patch_opcode(convert_single(tf.nn.relu, specs, "RELU"), BUILTIN["RELU"], BUILTIN["RELU_0_TO_1"])
    assert op_names(model) == ["RELU_0_TO_1"]
    x = random_like(specs, seed=23, low=-2, high=3)
    assert_float_close(model, x, rtol=0, atol=0)
    np.testing.assert_array_equal(run_rebuilt(model, x)[0], np.clip(x[0], 0, 1))
    qmodel = convert_single(tf.nn.relu, specs, "RELU", "int8", uniform_calibration(specs, -2, 3))
    qmodel = patch_opcode(qmodel, BUILTIN["RELU"], BUILTIN["RELU_0_TO_1"], version=1)
    assert_quantized_close(qmodel, quantized_inputs(qmodel, x), max_lsb=1, min_within_1=1.0)


@pytest.mark.parametrize("op,fn", [("ADD", tf.add), ("SUB", tf.subtract), ("MUL", tf.multiply)])
def test_binary_int16x8_within_one_lsb(op, fn):
    specs = [tf.TensorSpec([4, 16], F32), tf.TensorSpec([4, 16], F32)]
    model = to_tflite(fn, specs, "int16x8", calibration=uniform_calibration(specs, -3, 3))
    m = read_model(model)
    target = next(o for o in m.main.operators if o.name == op)
    out = m.main.tensors[target.outputs[0]]
    assert out.type_name == "INT16"
    x = random_like(specs, seed=24, low=-3, high=3)
    assert_float_close(model, x, rtol=0, atol=1.01 * float(out.quantization.scale[0]))


# -- STABLEHLO element-wise builtins the interpreter runs -------------------------------------------------
@pytest.mark.parametrize("op,ref", [("STABLEHLO_ADD", np.add), ("STABLEHLO_MULTIPLY", np.multiply),
                                    ("STABLEHLO_MAXIMUM", np.maximum), ("STABLEHLO_MINIMUM", np.minimum)])
@pytest.mark.parametrize("dtype", [tf.float32, tf.int32])
def test_stablehlo_elementwise_matches_interpreter(op, ref, dtype):
    specs = [tf.TensorSpec([3, 5], dtype)] * 2
    model = patch_opcode(convert_single(tf.maximum, specs, "MAXIMUM"), BUILTIN["MAXIMUM"], BUILTIN[op])
    assert op_names(model) == [op]
    x = random_like(specs, seed=25) if dtype.is_floating else \
        [np.random.default_rng(26).integers(-50, 50, size=[3, 5]).astype(np.int32) for _ in range(2)]
    assert_float_close(model, x, rtol=0, atol=0)
    np.testing.assert_array_equal(run_rebuilt(model, x)[0], ref(x[0], x[1]))


def test_stablehlo_elementwise_on_quantized_tensors_is_refused_by_name():
    """The runtime adds the stored integers and ignores the scales: not what a real-valued rebuild does."""
    from tflite_inverter.ops.registry import support

    specs = [tf.TensorSpec([3, 5], tf.float32)] * 2
    model = patch_opcode(convert_single(tf.maximum, specs, "MAXIMUM", mode="int8"), BUILTIN["MAXIMUM"],
                         BUILTIN["STABLEHLO_ADD"])
    m = read_model(model)
    op = next(o for o in m.main.operators if o.name == "STABLEHLO_ADD")
    ok, why = support(op, m.main)
    assert not ok and "stored integers" in why, why


def test_stablehlo_shift_left_matches_interpreter_for_in_range_shifts():
    specs = [tf.TensorSpec([8], tf.int32)] * 2
    model = patch_opcode(convert_single(tf.maximum, specs, "MAXIMUM"), BUILTIN["MAXIMUM"],
                         BUILTIN["STABLEHLO_SHIFT_LEFT"])
    a = np.array([-100, 100, -1, 12345, 7, -7, 1 << 20, -(1 << 20)], np.int32)
    s = np.array([1, 2, 31, 0, 28, 3, 11, 10], np.int32)
    assert_float_close(model, [a, s])


# -- round trip: the rebuilt graph converts back to the same single builtin ---------------------------
ROUND_TRIP = {
    "DIV_int": (tf.truncatediv, [tf.TensorSpec([6], tf.int32)] * 2, "DIV"),
    "HARD_SWISH": (UNARY["HARD_SWISH"][0], [tf.TensorSpec(SHAPE, F32)], "HARD_SWISH"),
    "PRELU": (lambda x: tf.nn.relu(x) + tf.constant([-0.1, 0.2, 0.3] * 2) * tf.nn.relu(-x),
              [tf.TensorSpec([4, 6], F32)], "PRELU"),
    "GELU": (lambda x: tf.nn.gelu(x, approximate=True), [tf.TensorSpec(SHAPE, F32)], "GELU"),
    "RELU_N1_TO_1": (UNARY["RELU_N1_TO_1"][0], [tf.TensorSpec(SHAPE, F32)], "RELU_N1_TO_1"),
    "ADD_relu6": (lambda a, b: tf.nn.relu6(a + b), [tf.TensorSpec(SHAPE, F32)] * 2, "ADD"),
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIP))
def test_rebuilt_graph_converts_back_to_the_same_op(case):
    fn, specs, op = ROUND_TRIP[case]
    model = to_tflite(fn, specs)
    original = read_model(model).main.operators
    assert [o.name for o in original] == [op]
    module = make_module(read_model(model))
    concrete = module.concrete[module.plans[0].key]
    again = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module).convert()
    ops = read_model(again).main.operators
    assert [o.name for o in ops] == [op]
    assert ops[0].options == original[0].options


# -- exact int8 SQUARED_DIFFERENCE (faithful mode) -------------------------------------------------
def _all_int8_code_pairs(shape_a, shape_b, seed: int) -> list[np.ndarray]:
    """Inputs of the given shapes; when both are [1, 65536] every pair of int8 codes occurs once."""
    if list(shape_a) == list(shape_b) == [1, 65536]:
        codes = np.arange(-128, 128)
        return [np.repeat(codes, 256).reshape(shape_a).astype(np.int8),
                np.tile(codes, 256).reshape(shape_b).astype(np.int8)]
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, shape).astype(np.int8) for shape in (shape_a, shape_b)]


#: (scales (a, b, out), zero points (a, b, out), shapes). Only int8 has a quantized kernel.
_SQD_CASES = [
    ((0.02, 0.05, 0.03), (3, -2, 5), ([1, 65536], [1, 65536])),
    ((0.02, 0.02, 0.02), (0, 0, -128), ([1, 65536], [1, 65536])),  # most ties: double rounding shows
    ((0.05, 0.02, 0.011), (-128, 127, -128), ([1, 65536], [1, 65536])),
    ((0.02, 0.05, 0.2), (3, -2, 5), ([1, 65536], [1, 65536])),  # output scale above the inputs'
    ((0.01, 0.01, 1e-5), (3, -2, 5), ([1, 65536], [1, 65536])),  # output saturates
    ((0.3, 0.001, 0.5), (0, 0, 0), ([1, 65536], [1, 65536])),
    ((0.02, 0.05, 0.03), (3, -2, 5), ([2, 3, 4, 100], [3, 1, 100])),  # broadcasting
]


@pytest.mark.parametrize("scales,zps,shapes", _SQD_CASES)
def test_quantized_squared_difference_is_bit_exact(scales, zps, shapes):
    """Every pair of int8 codes against the default interpreter, which runs the built-in kernel."""
    from .tflite_builder import single_op_model

    qs = [{"scale": [s], "zero_point": [z]} for s, z in zip(scales, zps)]
    out_shape = list(np.broadcast_shapes(*shapes))
    model = single_op_model("SQUARED_DIFFERENCE", [(shapes[0], "INT8", None, qs[0]), (shapes[1], "INT8", None, qs[1])],
                            [(out_shape, "INT8", qs[2])], {}, "SquaredDifferenceOptions")
    inputs = _all_int8_code_pairs(shapes[0], shapes[1], seed=4)
    ref = run_interpreter(model, inputs)[0].astype(int)
    np.testing.assert_array_equal(run_builtin(model, inputs)[0].astype(int), ref)
    np.testing.assert_array_equal(run_rebuilt(model, inputs)[0].astype(int), ref)


# -- int16 LUT kernels (EXP, LOG, RSQRT, GELU): LUTPopulate<int16_t> + interpolating LUTLookup ---------
@pytest.mark.parametrize("op, opts", [("EXP", None), ("LOG", None), ("RSQRT", None),
                                      ("GELU", {"approximate": False}), ("GELU", {"approximate": True})],
                         ids=["EXP", "LOG", "RSQRT", "GELU", "GELU-approximate"])
@pytest.mark.parametrize("s_in, s_out", [(4 / 32768, 60 / 32768), (8 / 32768, 3 / 32768), (1e-3, 4e-4),
                                         (6 / 32768, 1 / 32768)])
def test_int16_lut_ops_are_bit_exact(op, opts, s_in, s_out):
    """Every int16 input code (RSQRT: the non-negative ones, the kernel refuses negative inputs)."""
    from .tflite_builder import build_model

    x = np.arange(0 if op == "RSQRT" else -32768, 32768).astype(np.int16)
    q = [{"scale": [s], "zero_point": [0]} for s in (s_in, s_out)]
    model = build_model(tensors=[("x", [x.size], "INT16", None, q[0]), ("y", [x.size], "INT16", None, q[1])],
                        ops=[(op, [0], [1], "GeluOptions" if opts else None, opts)], inputs=[0], outputs=[1])
    ref = run_interpreter(model, [x])[0].astype(np.int32)
    got = run_rebuilt(model, [x])[0].astype(np.int32)
    np.testing.assert_array_equal(got, ref)


_GEMMLOWP_SCALES = [("LOGISTIC", 2.0**-12), ("TANH", 2.0**-12), ("TANH", 2.0**-11)]
_TABLE_SCALES = [(op, s) for op in ("LOGISTIC", "TANH")
                 for s in (0.05 / 256, 1e-4, 3e-4, 2.0**-13, 2.0**-11, 1 / 6144, 7e-4) if (op, s) not in _GEMMLOWP_SCALES]


@pytest.mark.parametrize("op, s_in", _GEMMLOWP_SCALES + _TABLE_SCALES)
def test_int16_logistic_tanh_are_bit_exact_on_every_code(op, s_in):
    """int16 LOGISTIC / TANH over every input code. A power-of-two input scale (Q3.12, and for TANH
    Q4.11: measured) takes the kernel's gemmlowp fixed-point path (it was 6 / 12 LSB off through the
    float form); any other scale the sigmoid-table path, exact with the kernel's own table as measured
    (it was 1 LSB off on some codes with the table computed from the formula, which 44 entries
    exceed by one)."""
    from .tflite_builder import build_model

    x = np.arange(-32768, 32768).astype(np.int16)
    q = [{"scale": [s], "zero_point": [0]} for s in (s_in, 1 / 32768)]
    model = build_model(tensors=[("x", [x.size], "INT16", None, q[0]), ("y", [x.size], "INT16", None, q[1])],
                        ops=[(op, [0], [1], None, None)], inputs=[0], outputs=[1])
    ref = run_interpreter(model, [x])[0].astype(np.int32)
    got = run_rebuilt(model, [x])[0].astype(np.int32)
    np.testing.assert_array_equal(got, ref)


def test_the_shipped_sigmoid_table_is_the_interpreters():
    """The stored ``sigmoid_table_uint16`` (ops/int16_sigmoid_table.json) equals a fresh measurement
    from the interpreter's int16 TANH (benchmarks/probe_sigmoid_table.py), and it is not the formula's."""
    from benchmarks.probe_sigmoid_table import measure
    from tflite_inverter.ops.elementwise import sigmoid_table

    measured = np.array(measure())
    np.testing.assert_array_equal(sigmoid_table(), measured)
    formula = np.minimum(np.floor(65536.0 / (1.0 + np.exp(-np.arange(256) / 24.0)) + 0.5), 65535)
    assert np.count_nonzero(measured != formula) == 44
