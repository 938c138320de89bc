"""Deep chains of quantized ops (issue 10): a seeded random graph of 20-60 ops drawn from the ops the
kernel table measures exact, converted by TFLiteConverter with full-integer quantization (int8, and
int16 activations with int8 weights), rebuilt faithfully and compared end to end with the
interpreter, code by code. When every op is exact, so is the chain: a 1-LSB slip anywhere is
amplified by the ops after it, so this fails where a one-op test might pass by luck.

The ops are TensorFlow functions the converter turns into one TFLite op each (FULLY_CONNECTED,
CONV_2D, DEPTHWISE_CONV_2D, ADD, SUB, MUL, MAXIMUM, MINIMUM, RELU, RELU6, LEAKY_RELU, ABS,
AVERAGE_POOL_2D, MAX_POOL_2D, CONCATENATION, RESHAPE, TRANSPOSE, MEAN; int8 also LOGISTIC, TANH,
HARD_SWISH, SOFTMAX, which are exact there). Shapes stay [1, 8, 8, C].
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tflite_inverter.model.reader import read_model

from .helpers import run_interpreter, run_rebuilt, to_tflite

SHAPE = [1, 8, 8, 4]


def _ops(rng: np.random.Generator, int16: bool):
    c = SHAPE[-1]

    def const(shape):
        return tf.constant(rng.uniform(-1, 1, size=shape).astype(np.float32))

    w1 = [const([1, 1, c, c]) for _ in range(4)]
    dw = [const([3, 3, c, 1]) for _ in range(4)]
    fc = [const([c, c]) for _ in range(4)]
    k = [const([1, 1, 1, c]) for _ in range(4)]
    ops = {
        "conv": lambda x, i: tf.nn.conv2d(x, w1[i % 4], 1, "SAME"),
        "depthwise": lambda x, i: tf.nn.depthwise_conv2d(x, dw[i % 4], [1, 1, 1, 1], "SAME"),
        "fc": lambda x, i: tf.reshape(tf.matmul(tf.reshape(x, [-1, c]), fc[i % 4]), SHAPE),
        "add": lambda x, i: x + k[i % 4],
        "sub": lambda x, i: x - k[(i + 1) % 4],
        "mul": lambda x, i: x * k[(i + 2) % 4],
        "maximum": lambda x, i: tf.maximum(x, k[i % 4]),
        "minimum": lambda x, i: tf.minimum(x, k[(i + 3) % 4]),
        "relu": lambda x, i: tf.nn.relu(x),
        "relu6": lambda x, i: tf.nn.relu6(x * 4.0),
        "leaky_relu": lambda x, i: tf.nn.leaky_relu(x, 0.2),
        "abs": lambda x, i: tf.abs(x),
        "avg_pool": lambda x, i: tf.nn.avg_pool2d(x, 3, 1, "SAME"),
        "max_pool": lambda x, i: tf.nn.max_pool2d(x, 3, 1, "SAME"),
        "concat_split": lambda x, i: tf.split(tf.concat([x, x * 0.5], axis=-1), 2, axis=-1)[0],
        "transpose": lambda x, i: tf.transpose(tf.transpose(x, [0, 2, 1, 3]), [0, 2, 1, 3]),
        "mean": lambda x, i: x + tf.reduce_mean(x, axis=[1, 2], keepdims=True),
    }
    if not int16:  # 8-bit LUT ops (exact in the table); their int16 forms are not all exact
        ops.update({
            "logistic": lambda x, i: tf.sigmoid(x),
            "tanh": lambda x, i: tf.tanh(x),
            "hard_swish": lambda x, i: x * tf.nn.relu6(x + 3.0) / 6.0,
            "softmax": lambda x, i: tf.nn.softmax(x) * 4.0,
        })
    return ops


def _chain(seed: int, int16: bool) -> tuple[bytes, list[str]]:
    rng = np.random.default_rng(seed)
    ops = _ops(rng, int16)
    names = list(ops)
    picked = [names[j] for j in rng.integers(0, len(names), size=int(rng.integers(20, 61)))]

    def fn(x):
        for i, name in enumerate(picked):
            x = ops[name](x, i)
            if i % 4 == 3:  # keep the range bounded so that no tensor saturates its whole grid
                x = tf.clip_by_value(x, -4.0, 4.0)
        return x

    cal = [[rng.uniform(-1, 1, size=SHAPE).astype(np.float32)] for _ in range(24)]
    model = to_tflite(fn, [tf.TensorSpec(SHAPE, tf.float32)], "int16x8" if int16 else "int8", calibration=cal)
    return model, picked


@pytest.mark.parametrize("int16", [False, True], ids=["int8", "int16x8"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_deep_random_chain_of_exact_ops_is_reproduced_exactly(seed, int16):
    model, picked = _chain(seed, int16)
    m = read_model(model)
    kinds = {op.name for op in m.main.operators}
    assert len(m.main.operators) >= 20, (len(m.main.operators), picked)
    rng = np.random.default_rng(100 + seed)
    x = rng.uniform(-1, 1, size=SHAPE).astype(np.float32)
    if not int16:  # int8 I/O: feed codes
        q = m.main.tensors[m.main.inputs[0]].quantization
        x = np.clip(np.round(x / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8)
    ref = run_interpreter(model, [x])[0]
    got = run_rebuilt(model, [x])[0]
    if int16:  # float I/O around QUANTIZE / DEQUANTIZE: compare in LSBs of the last int16 tensor
        out_op = next(op for op in m.main.operators if op.name == "DEQUANTIZE" and op.outputs[0] in m.main.outputs)
        scale = float(m.main.tensors[out_op.inputs[0]].quantization.scale[0])
        diff = np.abs(ref.astype(np.float64) - got.astype(np.float64)) / scale
    else:
        diff = np.abs(ref.astype(np.int64) - got.astype(np.int64))
    assert diff.max() < 0.01, (f"{diff.max():.2f} LSB after {len(m.main.operators)} ops "
                               f"({', '.join(sorted(kinds))}): chain {picked}")
