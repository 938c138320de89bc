"""Measure which TFLite builtin ops have a uint8 (legacy asymmetric per-tensor) CPU kernel.

    python benchmarks/probe_uint8_kernels.py            # probe, print the table and the diff
    python benchmarks/probe_uint8_kernels.py --write    # ... and regenerate targets/uint8_kernels.json
    python benchmarks/probe_uint8_kernels.py --ops CONV_2D,ADD --json out.json

For every op of ``targets/tflite_int8_kernels.json`` plus those of ``targets/uint8_kernels.json`` a
tiny one-op model is written with ``tests/tflite_builder.py`` (:func:`one_op_model`) and run in
ai_edge_litert's interpreter (construct + ``allocate_tensors`` + ``invoke``) in a worker child
process, so a kernel that crashes costs one row, not the probe. Each op is built three ways from
ONE description, in the int8 domain:

* ``INT8``: the control. Activations int8 per-tensor, weights int8 (zero point 0), int32 bias with
  scale ``s_in * s_w``. If the control does not run, the probe model is wrong, not the kernel, and
  the op's uint8 verdict falls back to the previous list (marked so in the table).
* ``UINT8``: the same model as ``quantize --dtype uint8`` would write it (``uint8_rewrite``): every
  int8 tensor becomes uint8 with zero point + 128 (activations ~128, weights 128) and its constant
  data shifted by 128; int32 biases, int16 states, indices and shapes are left alone. Every
  quantized input of the op (both operands of ADD, every input of CONCATENATION, ...) is uint8.
* ``FLOAT32``: the float twin (constants dequantized) -- the reference of tests/test_uint8_kernels.py.

The verdict is the BUILTIN kernels' one (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``): a
delegate may take an op whose builtin kernel would refuse it, and the list is about the kernels.
The UINT8 model is also run with the default resolver (XNNPACK) and reported when it differs.

Each op is probed in ONE common configuration (no fused activation, VALID/SAME padding as written
below, default options), with the output quantization the int8 kernel requires where it fixes it
(LOGISTIC/SOFTMAX 1/256, TANH/L2_NORMALIZATION 1/128, LOG_SOFTMAX 16/256; +128 on the zero point for
uint8). Some kernels take uint8 only in a particular configuration; see :data:`NOTES`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tflite_builder import build_model, patch_model  # noqa: E402

TARGETS = ROOT / "tflite_inverter" / "coverage" / "targets"
UINT8_FILE = TARGETS / "uint8_kernels.json"
INT8_FILE = TARGETS / "tflite_int8_kernels.json"
DATE = "2026-11-24"
DTYPES = ("INT8", "UINT8", "FLOAT32")

#: Configuration remarks, printed in the table and kept in the JSON (``probe_notes``).
NOTES: dict[str, str] = {
    "CAST": "uint8 (quantized) -> float32; casts the raw integers, ignoring scale/zero point",
    "QUANTIZE": "float32 -> uint8 (the model input); uint8 -> uint8 requantize not probed",
    "DEQUANTIZE": "uint8 -> float32",
    "ELU": "accepted at prepare, refused at invoke",
    "EXP": "accepted at prepare, refused at invoke",
    "SQUARED_DIFFERENCE": "accepted at prepare, refused at invoke",
    "SVDF": "int8 scheme with int8 tensors made uint8 (weights_time, state int16)",
    "LSTM": "full kernel, 8x8_16 integer scheme with int8 tensors made uint8 (the 'basic' 5-input "
            "uint8 LSTM kernel type is a different configuration, not probed)",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "8x8_16 integer scheme with int8 tensors made uint8",
    "FILL": "value is a uint8 scalar input",
    "SPARSE_TO_DENSE": "values and default value uint8",
    "TOPK_V2": "uint8 values, int32 indices",
    "SELECT": "bool condition, uint8 operands",
    "SELECT_V2": "bool condition, uint8 operands",
    "LOGISTIC": "output scale 1/256, zero point 0",
    "SOFTMAX": "output scale 1/256, zero point 0",
    "TANH": "output scale 1/128, zero point 128",
    "L2_NORMALIZATION": "output scale 1/128, zero point 128",
    "LOG_SOFTMAX": "output scale 16/256, zero point 255",
    "TRANSPOSE_CONV": "with the optional bias input",
    "CONCATENATION": "inputs and output share one scale/zero point (what int8 models have; the uint8 "
                     "kernel also requantizes differing ones, the int8 kernel refuses them)",
    "PACK": "inputs and output share one scale/zero point",
    "BROADCAST_TO": "op version 2 (the first registered one)",
    "RESIZE_BILINEAR": "align_corners=False, half_pixel_centers=False",
    "RESIZE_NEAREST_NEIGHBOR": "align_corners=False, half_pixel_centers=False",
}


# -- the one-op model description ------------------------------------------------------------------
@dataclass
class OneOp:
    """Collects tensors and one operator, written in the int8 domain and rendered as ``dtype``."""

    dtype: str
    seed: int = 0
    tensors: list[tuple] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    feeds: list[np.ndarray] = field(default_factory=list)  # one array per model input
    quant: dict[int, tuple[float, int]] = field(default_factory=dict)  # tensor -> (scale, zp) as written
    intermediates: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}")
        self.rng = np.random.default_rng(self.seed)

    # tensors ---------------------------------------------------------------------------------
    def _add(self, *entry: Any) -> int:
        self.tensors.append(tuple(entry))
        return len(self.tensors) - 1

    def _q8(self, q8: np.ndarray, scale: float, zp: int, shape: list[int], name: str,
            extra: dict[str, Any] | None = None, const: bool = True) -> tuple:
        """An int8-domain tensor (values ``q8`` or None) rendered in this model's dtype."""
        if self.dtype == "FLOAT32":
            data = None if q8 is None else (scale * (q8.astype(np.float32) - zp)).astype(np.float32)
            return (name, shape, "FLOAT32", data, None, extra)
        shift = 128 if self.dtype == "UINT8" else 0
        data = None if q8 is None else (q8.astype(np.int16) + shift).astype(self.dtype.lower())
        return (name, shape, self.dtype, data, {"scale": [scale], "zero_point": [zp + shift]}, extra)

    def act(self, shape: list[int], scale: float = 0.05, zp: int = 0, *, lo: int = -128, hi: int = 127,
            data: Any = None, variable: bool = False) -> int:
        """A quantized activation: a model input with random int8-domain values in [lo, hi], or a
        constant (``data``, int8 domain), or a variable tensor (state)."""
        name = f"t{len(self.tensors)}"
        extra = {"is_variable": True} if variable else None
        if data is not None:
            idx = self._add(*self._q8(np.asarray(data, np.int8), scale, zp, shape, name))
        else:
            idx = self._add(*self._q8(None, scale, zp, shape, name, extra))
            if not variable:
                q8 = self.rng.integers(lo, hi + 1, size=shape).astype(np.int8)
                self.inputs.append(idx)
                self.feeds.append(self._q8(q8, scale, zp, shape, name)[3])
        self.quant[idx] = (scale, zp)
        return idx

    def weight(self, shape: list[int], scale: float = 0.01, lo: int = -127, hi: int = 127) -> int:
        """A constant weight, symmetric int8 (zero point 0; 128 once uint8)."""
        return self.act(shape, scale, 0, data=self.rng.integers(lo, hi + 1, size=shape))

    def out(self, shape: list[int], scale: float = 0.05, zp: int = 0) -> int:
        """A quantized model output."""
        name = f"t{len(self.tensors)}"
        idx = self._add(*self._q8(None, scale, zp, shape, name))
        self.quant[idx] = (scale, zp)
        self.outputs.append(idx)
        return idx

    def tensor_q8(self, shape: list[int], scale: float, zp: int) -> int:
        """A quantized tensor that is neither an input nor an output (an LSTM intermediate)."""
        idx = self._add(*self._q8(None, scale, zp, shape, f"t{len(self.tensors)}"))
        self.quant[idx] = (scale, zp)
        return idx

    def bias(self, n: int, scale: float) -> int:
        """An int32 bias of scale ``scale`` (= s_in * s_w); float32 in the float twin."""
        vals = self.rng.integers(-200, 201, size=[n]).astype(np.int32)
        name = f"t{len(self.tensors)}"
        if self.dtype == "FLOAT32":
            return self._add(name, [n], "FLOAT32", (vals * scale).astype(np.float32))
        return self._add(name, [n], "INT32", vals, {"scale": [scale], "zero_point": [0]})

    def i16(self, shape: list[int], scale: float, data: Any = None, variable: bool = False) -> int:
        """An int16 tensor of the integer LSTM/SVDF schemes (float in the float twin)."""
        name = f"t{len(self.tensors)}"
        extra = {"is_variable": True} if variable else None
        if self.dtype == "FLOAT32":
            d = None if data is None else (np.asarray(data) * scale).astype(np.float32)
            return self._add(name, shape, "FLOAT32", d, None, extra)
        d = None if data is None else np.asarray(data, np.int16)
        return self._add(name, shape, "INT16", d, {"scale": [scale], "zero_point": [0]}, extra)

    def const(self, values: Any, type_name: str = "INT32", shape: list[int] | None = None) -> int:
        """A non-quantized constant (indices, shapes, axes)."""
        arr = np.asarray(values)
        return self._add(f"t{len(self.tensors)}", list(arr.shape) if shape is None else shape, type_name, arr)

    def raw_in(self, values: np.ndarray, type_name: str) -> int:
        """A non-quantized model input (a bool condition, the float input of QUANTIZE)."""
        idx = self._add(f"t{len(self.tensors)}", list(values.shape), type_name)
        self.inputs.append(idx)
        self.feeds.append(values)
        return idx

    def raw_out(self, shape: list[int], type_name: str) -> int:
        idx = self._add(f"t{len(self.tensors)}", shape, type_name)
        self.outputs.append(idx)
        return idx

    def op(self, name: str, ins: list[int], outs: list[int], options: dict[str, Any] | None = None,
           table: str | None = None, version: int = 1) -> None:
        entry: dict[str, Any] = {"op": name, "inputs": ins, "outputs": outs, "version": version}
        if options is not None or table is not None:
            entry["options"] = options or {}
            entry["options_table"] = table
        self.ops.append(entry)

    def build(self) -> bytes:
        blob = build_model(ops=self.ops, tensors=self.tensors, inputs=self.inputs, outputs=self.outputs,
                           description="probe_uint8_kernels")
        if self.intermediates:
            def add(tree: dict[str, Any]) -> None:
                tree["subgraphs"][0]["operators"][0]["intermediates"] = list(self.intermediates)
            blob = patch_model(blob, add)
        return blob


# -- one description per op --------------------------------------------------------------------------
NHWC = [1, 4, 4, 3]
Spec = Callable[[OneOp], None]
SPECS: dict[str, Spec] = {}


def spec(*names: str) -> Callable[[Spec], Spec]:
    def deco(fn: Spec) -> Spec:
        for n in names:
            SPECS[n] = (lambda b, _n=n: fn(b, _n))
        return fn
    return deco


@spec("ABS", "RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "ELU", "GELU")
def _unary(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    b.op(name, [x], [b.out(NHWC, 0.05, 0)])


@spec("LEAKY_RELU")
def _leaky(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    b.op(name, [x], [b.out(NHWC)], {"alpha": 0.2})


@spec("EXP")
def _exp(b: OneOp, name: str) -> None:
    x = b.act(NHWC, 0.02, 0)  # [-2.56, 2.54] -> e^x in (0.08, 12.7)
    b.op(name, [x], [b.out(NHWC, 0.05, -128)])


@spec("LOG", "RSQRT")
def _positive_unary(b: OneOp, name: str) -> None:
    x = b.act(NHWC, 0.02, -128, lo=-100)  # (0.56, 5.1]
    out = b.out(NHWC, 0.01, 0) if name == "LOG" else b.out(NHWC, 0.01, -128)
    b.op(name, [x], [out])


@spec("LOGISTIC", "TANH")
def _sigmoid_like(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    out = b.out(NHWC, 1 / 256, -128) if name == "LOGISTIC" else b.out(NHWC, 1 / 128, 0)
    b.op(name, [x], [out])


@spec("SOFTMAX", "LOG_SOFTMAX")
def _softmax(b: OneOp, name: str) -> None:
    x = b.act([2, 10])
    if name == "SOFTMAX":
        b.op(name, [x], [b.out([2, 10], 1 / 256, -128)], {"beta": 1.0})
    else:
        b.op(name, [x], [b.out([2, 10], 16 / 256, 127)], {})


@spec("L2_NORMALIZATION")
def _l2(b: OneOp, name: str) -> None:
    x = b.act([1, 2, 8])
    b.op(name, [x], [b.out([1, 2, 8], 1 / 128, 0)], {"fused_activation_function": "NONE"}, "L2NormOptions")


@spec("ADD", "SUB", "MUL", "DIV")
def _arith(b: OneOp, name: str) -> None:
    x = b.act(NHWC, 0.05, 0)
    # DIV: a positive divisor in [2.04, 7.6]
    y = b.act(NHWC, 0.03, -128, lo=-60) if name == "DIV" else b.act(NHWC, 0.03, 10)
    scale = {"ADD": 0.1, "SUB": 0.1, "MUL": 0.2, "DIV": 0.02}[name]
    b.op(name, [x, y], [b.out(NHWC, scale, 0)], {"fused_activation_function": "NONE"})


@spec("MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD")
def _binary_same(b: OneOp, name: str) -> None:
    x = b.act(NHWC, 0.05, 0)
    y = b.act(NHWC, 0.05, 0) if name not in ("FLOOR_DIV", "FLOOR_MOD") else b.act(NHWC, 0.05, -128, lo=-90)
    scale = 0.25 if name == "SQUARED_DIFFERENCE" else 0.05
    table = "MaximumMinimumOptions" if name in ("MAXIMUM", "MINIMUM") else None
    b.op(name, [x, y], [b.out(NHWC, scale, -128 if name == "SQUARED_DIFFERENCE" else 0)], {}, table)


@spec("EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL")
def _compare(b: OneOp, name: str) -> None:
    x, y = b.act(NHWC, 0.05, 0, lo=-4, hi=4), b.act(NHWC, 0.05, 0, lo=-4, hi=4)
    b.op(name, [x, y], [b.raw_out(NHWC, "BOOL")], {})


@spec("ARG_MAX", "ARG_MIN")
def _argmax(b: OneOp, name: str) -> None:
    x = b.act([2, 3, 5])
    axis = b.const(np.array([2], np.int32))
    b.op(name, [x, axis], [b.raw_out([2, 3], "INT32")], {"output_type": "INT32"})


@spec("AVERAGE_POOL_2D", "MAX_POOL_2D")
def _pool(b: OneOp, name: str) -> None:
    x = b.act([1, 6, 6, 3])
    b.op(name, [x], [b.out([1, 3, 3, 3])],
         {"padding": "VALID", "stride_w": 2, "stride_h": 2, "filter_width": 2, "filter_height": 2,
          "fused_activation_function": "NONE"}, "Pool2DOptions")


@spec("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD")
def _reduce(b: OneOp, name: str) -> None:
    x = b.act(NHWC, 0.05, 0, lo=-40, hi=40) if name == "REDUCE_PROD" else b.act(NHWC)
    axis = b.const(np.array([1, 2], np.int32))
    scale = {"SUM": 0.5, "REDUCE_PROD": 0.05}.get(name, 0.05)
    b.op(name, [x, axis], [b.out([1, 1, 1, 3], scale, 0)], {"keep_dims": True}, "ReducerOptions")


@spec("CONV_2D")
def _conv(b: OneOp, name: str) -> None:
    x = b.act([1, 5, 5, 3])
    w = b.weight([4, 3, 3, 3], 0.005)
    bias = b.bias(4, 0.05 * 0.005)
    b.op(name, [x, w, bias], [b.out([1, 5, 5, 4], 0.15, 0)],
         {"padding": "SAME", "stride_w": 1, "stride_h": 1, "dilation_w_factor": 1, "dilation_h_factor": 1,
          "fused_activation_function": "NONE"})


@spec("DEPTHWISE_CONV_2D")
def _dw(b: OneOp, name: str) -> None:
    x = b.act([1, 5, 5, 3])
    w = b.weight([1, 3, 3, 3], 0.01)
    bias = b.bias(3, 0.05 * 0.01)
    b.op(name, [x, w, bias], [b.out([1, 5, 5, 3], 0.1, 0)],
         {"padding": "SAME", "stride_w": 1, "stride_h": 1, "depth_multiplier": 1, "dilation_w_factor": 1,
          "dilation_h_factor": 1, "fused_activation_function": "NONE"})


@spec("FULLY_CONNECTED")
def _fc(b: OneOp, name: str) -> None:
    x = b.act([2, 8])
    w = b.weight([4, 8], 0.01)
    bias = b.bias(4, 0.05 * 0.01)
    b.op(name, [x, w, bias], [b.out([2, 4], 0.08, 0)],
         {"fused_activation_function": "NONE", "weights_format": "DEFAULT", "keep_num_dims": False})


@spec("TRANSPOSE_CONV")
def _tconv(b: OneOp, name: str) -> None:
    shape = b.const(np.array([1, 6, 6, 2], np.int32))
    w = b.weight([2, 3, 3, 3], 0.01)
    x = b.act([1, 3, 3, 3])
    bias = b.bias(2, 0.05 * 0.01)
    b.op(name, [shape, w, x, bias], [b.out([1, 6, 6, 2], 0.15, 0)],
         {"padding": "SAME", "stride_w": 2, "stride_h": 2, "fused_activation_function": "NONE"})


@spec("BATCH_MATMUL")
def _bmm(b: OneOp, name: str) -> None:
    x, y = b.act([1, 2, 3]), b.act([1, 3, 4])
    b.op(name, [x, y], [b.out([1, 2, 4], 0.1, 0)], {"adj_x": False, "adj_y": False})


@spec("CONCATENATION")
def _concat(b: OneOp, name: str) -> None:
    # one scale/zero point for all: the int8 kernel requires it (the uint8 one would also rescale)
    x, y = b.act(NHWC, 0.05, 0), b.act([1, 4, 4, 2], 0.05, 0)
    b.op(name, [x, y], [b.out([1, 4, 4, 5], 0.05, 0)], {"axis": 3, "fused_activation_function": "NONE"})


@spec("PACK")
def _pack(b: OneOp, name: str) -> None:
    x, y = b.act([3, 2]), b.act([3, 2])
    b.op(name, [x, y], [b.out([2, 3, 2])], {"values_count": 2, "axis": 0})


@spec("UNPACK")
def _unpack(b: OneOp, name: str) -> None:
    x = b.act([2, 3, 2])
    b.op(name, [x], [b.out([3, 2]), b.out([3, 2])], {"num": 2, "axis": 0})


@spec("SPLIT")
def _split(b: OneOp, name: str) -> None:
    axis = b.const(np.array(3, np.int32), shape=[])
    x = b.act([1, 4, 4, 4])
    b.op(name, [axis, x], [b.out([1, 4, 4, 2]), b.out([1, 4, 4, 2])], {"num_splits": 2})


@spec("SPLIT_V")
def _split_v(b: OneOp, name: str) -> None:
    x = b.act([1, 4, 4, 5])
    sizes, axis = b.const(np.array([2, 3], np.int32)), b.const(np.array(3, np.int32), shape=[])
    b.op(name, [x, sizes, axis], [b.out([1, 4, 4, 2]), b.out([1, 4, 4, 3])], {"num_splits": 2})


@spec("RESHAPE")
def _reshape(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    b.op(name, [x, b.const(np.array([1, 48], np.int32))], [b.out([1, 48])], {"new_shape": [1, 48]})


@spec("SQUEEZE")
def _squeeze(b: OneOp, name: str) -> None:
    x = b.act([1, 4, 1, 3])
    b.op(name, [x], [b.out([1, 4, 3])], {"squeeze_dims": [2]})


@spec("EXPAND_DIMS")
def _expand(b: OneOp, name: str) -> None:
    x = b.act([4, 3])
    b.op(name, [x, b.const(np.array([0], np.int32))], [b.out([1, 4, 3])], {})


@spec("SHAPE")
def _shape(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    b.op(name, [x], [b.raw_out([4], "INT32")], {"out_type": "INT32"})


@spec("TRANSPOSE")
def _transpose(b: OneOp, name: str) -> None:
    x = b.act([1, 2, 3, 4])
    b.op(name, [x, b.const(np.array([0, 3, 1, 2], np.int32))], [b.out([1, 4, 2, 3])], {})


@spec("SLICE")
def _slice(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    begin, size = b.const(np.array([0, 1, 1, 0], np.int32)), b.const(np.array([1, 2, 2, 3], np.int32))
    b.op(name, [x, begin, size], [b.out([1, 2, 2, 3])], {})


@spec("STRIDED_SLICE")
def _strided(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    begin = b.const(np.array([0, 0, 0, 0], np.int32))
    end = b.const(np.array([1, 4, 4, 3], np.int32))
    strides = b.const(np.array([1, 2, 2, 1], np.int32))
    b.op(name, [x, begin, end, strides], [b.out([1, 2, 2, 3])],
         {"begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0})


@spec("TILE")
def _tile(b: OneOp, name: str) -> None:
    x = b.act([2, 3])
    b.op(name, [x, b.const(np.array([2, 1], np.int32))], [b.out([4, 3])], {})


@spec("BROADCAST_TO")
def _broadcast(b: OneOp, name: str) -> None:
    x = b.act([1, 3])
    # BROADCAST_TO starts at op version 2 (no version-1 registration)
    b.op(name, [x, b.const(np.array([2, 3], np.int32))], [b.out([2, 3])], version=2)


@spec("REVERSE_V2")
def _reverse(b: OneOp, name: str) -> None:
    x = b.act([2, 3])
    b.op(name, [x, b.const(np.array([1], np.int32))], [b.out([2, 3])], {})


@spec("PAD", "MIRROR_PAD")
def _pad(b: OneOp, name: str) -> None:
    x = b.act([1, 3, 3, 2])
    pads = b.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    opts = {"mode": "REFLECT"} if name == "MIRROR_PAD" else {}
    b.op(name, [x, pads], [b.out([1, 5, 5, 2])], opts)


@spec("PADV2")
def _padv2(b: OneOp, name: str) -> None:
    x = b.act([1, 3, 3, 2])
    pads = b.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    value = b.act([], data=np.array(10, np.int8))
    b.op(name, [x, pads, value], [b.out([1, 5, 5, 2])], {})


@spec("BATCH_TO_SPACE_ND")
def _b2s(b: OneOp, name: str) -> None:
    x = b.act([4, 2, 2, 1])
    block, crops = b.const(np.array([2, 2], np.int32)), b.const(np.zeros([2, 2], np.int32))
    b.op(name, [x, block, crops], [b.out([1, 4, 4, 1])], {})


@spec("SPACE_TO_BATCH_ND")
def _s2b(b: OneOp, name: str) -> None:
    x = b.act([1, 4, 4, 1])
    block, pads = b.const(np.array([2, 2], np.int32)), b.const(np.zeros([2, 2], np.int32))
    b.op(name, [x, block, pads], [b.out([4, 2, 2, 1])], {})


@spec("DEPTH_TO_SPACE")
def _d2s(b: OneOp, name: str) -> None:
    x = b.act([1, 2, 2, 4])
    b.op(name, [x], [b.out([1, 4, 4, 1])], {"block_size": 2})


@spec("SPACE_TO_DEPTH")
def _s2d(b: OneOp, name: str) -> None:
    x = b.act([1, 4, 4, 1])
    b.op(name, [x], [b.out([1, 2, 2, 4])], {"block_size": 2})


@spec("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
def _resize(b: OneOp, name: str) -> None:
    x = b.act([1, 3, 3, 2])
    b.op(name, [x, b.const(np.array([6, 6], np.int32))], [b.out([1, 6, 6, 2])],
         {"align_corners": False, "half_pixel_centers": False})


@spec("GATHER")
def _gather(b: OneOp, name: str) -> None:
    x = b.act([5, 3])
    b.op(name, [x, b.const(np.array([4, 0, 2], np.int32))], [b.out([3, 3])], {"axis": 0, "batch_dims": 0})


@spec("GATHER_ND")
def _gather_nd(b: OneOp, name: str) -> None:
    x = b.act([4, 3])
    b.op(name, [x, b.const(np.array([[1], [3]], np.int32))], [b.out([2, 3])], {})


@spec("SELECT", "SELECT_V2")
def _select(b: OneOp, name: str) -> None:
    cond = b.raw_in(b.rng.integers(0, 2, size=[2, 3]).astype(bool), "BOOL")
    x, y = b.act([2, 3]), b.act([2, 3])
    b.op(name, [cond, x, y], [b.out([2, 3])], {})


@spec("PRELU")
def _prelu(b: OneOp, name: str) -> None:
    x = b.act(NHWC)
    alpha = b.act([1, 1, 3], 0.005, 0, data=np.array([[[20, 40, 60]]], np.int8))
    b.op(name, [x, alpha], [b.out(NHWC)])


@spec("FILL")
def _fill(b: OneOp, name: str) -> None:
    dims = b.const(np.array([2, 3], np.int32))
    value = b.act([])
    b.op(name, [dims, value], [b.out([2, 3])], {})


@spec("SPARSE_TO_DENSE")
def _s2d_sparse(b: OneOp, name: str) -> None:
    idx = b.const(np.array([0, 2, 4], np.int32))
    shape = b.const(np.array([6], np.int32))
    values, default = b.act([3]), b.act([], data=np.array(0, np.int8))
    b.op(name, [idx, shape, values, default], [b.out([6])], {"validate_indices": False})


@spec("TOPK_V2")
def _topk(b: OneOp, name: str) -> None:
    x = b.act([2, 6])
    k = b.const(np.array(3, np.int32), shape=[])
    b.op(name, [x, k], [b.out([2, 3]), b.raw_out([2, 3], "INT32")], {})


@spec("CAST")
def _cast(b: OneOp, name: str) -> None:
    x = b.act([2, 4])
    in_type = "FLOAT32" if b.dtype == "FLOAT32" else b.dtype
    b.op(name, [x], [b.raw_out([2, 4], "FLOAT32")], {"in_data_type": in_type, "out_data_type": "FLOAT32"})


@spec("DEQUANTIZE")
def _dequantize(b: OneOp, name: str) -> None:
    x = b.act([2, 4])
    b.op(name, [x], [b.raw_out([2, 4], "FLOAT32")])


@spec("QUANTIZE")
def _quantize(b: OneOp, name: str) -> None:
    x = b.raw_in(b.rng.uniform(-6, 6, size=[2, 4]).astype(np.float32), "FLOAT32")
    b.op(name, [x], [b.out([2, 4])])


@spec("SVDF")
def _svdf(b: OneOp, name: str) -> None:
    batch, n_in, units, memory = 2, 4, 3, 5
    x = b.act([batch, n_in], 0.05, 0)
    wf = b.weight([units, n_in], 0.01)
    wt = b.i16([units, memory], 1 / 4096, b.rng.integers(-2000, 2000, size=[units, memory]))
    bias = b.bias(units, 1 / 4096 * 1 / 2048)
    state = b.i16([batch, units * memory], 1 / 2048, variable=True)
    b.op(name, [x, wf, wt, bias, state], [b.out([batch, units], 0.02, 0)],
         {"rank": 1, "fused_activation_function": "RELU"})


def _lstm_inputs(b: OneOp, batch: int, n_in: int, n_cell: int, x_shape: list[int]) -> list[int]:
    """The 24 inputs of the 8x8_16 integer (no layer norm, no peephole, no projection) LSTM."""
    x = b.act(x_shape, 0.05, 0)
    w_in = [b.weight([n_cell, n_in], 0.01) for _ in range(4)]
    w_rec = [b.weight([n_cell, n_cell], 0.01) for _ in range(4)]
    # gate biases: int32, scale = input scale * weight scale
    biases = [b.bias(n_cell, 0.05 * 0.01) for _ in range(4)]
    out_state = b.act([batch, n_cell], 0.01, 0, variable=True)
    cell_state = b.i16([batch, n_cell], 1 / 2048, variable=True)
    # intermediates: the 4 gate outputs (int16, 2^-12) and the hidden state (8-bit)
    b.intermediates = [b.i16([0], 1 / 4096) for _ in range(4)] + [b.tensor_q8([0], 0.007, 0)]
    return [x, *w_in, *w_rec, -1, -1, -1, *biases, -1, -1, out_state, cell_state, -1, -1, -1, -1]


@spec("LSTM")
def _lstm(b: OneOp, name: str) -> None:
    ins = _lstm_inputs(b, 2, 3, 4, [2, 3])
    b.op(name, ins, [b.out([2, 4], 0.01, 0)],
         {"fused_activation_function": "TANH", "cell_clip": 0.0, "proj_clip": 0.0, "kernel_type": "FULL"},
         "LSTMOptions")


@spec("UNIDIRECTIONAL_SEQUENCE_LSTM")
def _uslstm(b: OneOp, name: str) -> None:
    ins = _lstm_inputs(b, 2, 3, 4, [2, 5, 3])
    b.op(name, ins, [b.out([2, 5, 4], 0.01, 0)],
         {"fused_activation_function": "TANH", "cell_clip": 0.0, "proj_clip": 0.0, "time_major": False},
         "UnidirectionalSequenceLSTMOptions")


def one_op_model(op: str, dtype: str = "UINT8", seed: int = 0) -> tuple[bytes, list[np.ndarray], OneOp]:
    """The probe's one-op model of ``op`` in ``dtype`` (INT8, UINT8 or FLOAT32): ``(model bytes,
    input arrays in model input order, the OneOp description)``. The same ``seed`` gives the same
    int8-domain values in every dtype, so the FLOAT32 model fed the dequantized UINT8 inputs is the
    float reference of the UINT8 one."""
    if op not in SPECS:
        raise KeyError(f"no probe model for {op}")
    b = OneOp(dtype, seed)
    SPECS[op](b)
    return b.build(), b.feeds, b


def dequantized_feeds(q_feeds: list[np.ndarray], q: OneOp) -> list[np.ndarray]:
    """The float twin's inputs equal to the inputs ``q_feeds`` of quantized model ``q``."""
    out = []
    for idx, a in zip(q.inputs, q_feeds):
        qp = q.tensors[idx][4] if len(q.tensors[idx]) > 4 else None
        if qp:
            out.append((qp["scale"][0] * (a.astype(np.float32) - qp["zero_point"][0])).astype(np.float32))
        else:
            out.append(a)
    return out


def compare_to_float(op: str, dtype: str = "UINT8", seed: int = 0) -> list[dict[str, float]]:
    """Run ``op``'s quantized model and its float twin (builtin kernels) on the same values; per
    output ``{"max_abs": ..., "lsb": ...}`` (``lsb`` for quantized outputs: the error in steps of the
    output scale, against the float result clipped to the output's representable range)."""
    qm, qfeeds, qb = one_op_model(op, dtype, seed)
    fm, _, _ = one_op_model(op, "FLOAT32", seed)
    q_out = run_model(qm, qfeeds)
    f_out = run_model(fm, dequantized_feeds(qfeeds, qb))
    rows = []
    for idx, qo, fo in zip(qb.outputs, q_out, f_out):
        qp = qb.tensors[idx][4] if len(qb.tensors[idx]) > 4 else None
        fo = np.asarray(fo, np.float64)
        if not qp:
            rows.append({"max_abs": float(np.max(np.abs(qo.astype(np.float64) - fo))) if qo.size else 0.0})
            continue
        scale, zp = qp["scale"][0], qp["zero_point"][0]
        info = np.iinfo(qo.dtype)
        deq = scale * (qo.astype(np.float64) - zp)
        ref = np.clip(fo, scale * (info.min - zp), scale * (info.max - zp))
        err = float(np.max(np.abs(deq - ref))) if qo.size else 0.0
        rows.append({"max_abs": err, "lsb": err / scale})
    return rows


# -- running -----------------------------------------------------------------------------------------
def run_model(model: bytes, feeds: list[np.ndarray], resolver: str = "builtin") -> list[np.ndarray]:
    """Construct, allocate and invoke ``model`` in ai_edge_litert's interpreter; the outputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = {"builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, "default": OpResolverType.AUTO}[resolver]
    it = Interpreter(model_content=model, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    for det, a in zip(it.get_input_details(), feeds):
        it.set_tensor(det["index"], np.asarray(a, det["dtype"]).reshape(det["shape"]))
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def _probe_one(op: str, dtype: str, resolver: str) -> dict[str, Any]:
    try:
        model, feeds, _ = one_op_model(op, dtype)
    except Exception as exc:  # a bug in a spec
        return {"status": "build", "error": f"{type(exc).__name__}: {exc}"}
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = {"builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, "default": OpResolverType.AUTO}[resolver]
    stage = "load"
    try:
        it = Interpreter(model_content=model, experimental_op_resolver_type=kind)
        stage = "prepare"
        it.allocate_tensors()
        stage = "invoke"
        for det, a in zip(it.get_input_details(), feeds):
            it.set_tensor(det["index"], np.asarray(a, det["dtype"]).reshape(det["shape"]))
        it.invoke()
        outs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    except Exception as exc:
        return {"status": stage, "error": _short(str(exc))}
    res: dict[str, Any] = {"status": "runs", "outputs": [str(o.dtype) for o in outs]}
    if resolver == "builtin":
        try:
            res["vs_float"] = compare_to_float(op, dtype)
        except Exception as exc:  # the float twin of QUANTIZE/CAST is not a valid model
            res["vs_float"] = f"n/a ({_short(str(exc))[:80]})"
    return res


def _short(msg: str) -> str:
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    text = " | ".join(lines)
    cut = text.find("Node number")
    return (text[:cut].strip(" |") if cut > 0 else text)[:300]


def _worker(jobs_path: str) -> int:
    """Child: run the jobs of ``jobs_path``, print ``START i`` and ``RESULT i <json>`` per job."""
    jobs = json.loads(Path(jobs_path).read_text())
    for i, (op, dtype, resolver) in jobs:
        print(f"START {i}", flush=True)
        res = _probe_one(op, dtype, resolver)
        print(f"RESULT {i} {json.dumps(res)}", flush=True)
    return 0


def probe(ops: list[str], verbose: bool = True) -> dict[str, dict[str, Any]]:
    """``{op: {"INT8": res, "UINT8": res, "UINT8_default": res}}``; jobs run in a worker process that
    is restarted after a crash (the job it was running is recorded as ``crash``)."""
    import tempfile

    jobs = []
    for op in ops:
        jobs += [(op, "INT8", "builtin"), (op, "UINT8", "builtin"), (op, "UINT8", "default")]
    results: dict[int, dict[str, Any]] = {}
    pending = list(enumerate(jobs))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory() as tmp:
        while pending:
            path = Path(tmp) / "jobs.json"
            path.write_text(json.dumps([[i, list(j)] for i, j in pending]))
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(path)],
                                  capture_output=True, text=True, env=env, cwd=ROOT)
            started = None
            for line in proc.stdout.splitlines():
                if line.startswith("START "):
                    started = int(line.split()[1])
                elif line.startswith("RESULT "):
                    _, i, payload = line.split(" ", 2)
                    results[int(i)] = json.loads(payload)
                    started = None
            if started is not None:
                errs = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("INFO:")]
                tail = " | ".join(errs[-2:])[:200]
                results[started] = {"status": "crash", "error": f"exit code {proc.returncode}: {tail}"}
                if verbose:
                    print(f"  {jobs[started]}: crashed (exit {proc.returncode})", file=sys.stderr)
            left = [(i, j) for i, j in pending if i not in results]
            if proc.returncode != 0 and started is None and len(left) == len(pending):
                raise RuntimeError(f"probe worker made no progress: {proc.stderr[-2000:]}")
            pending = left
    table: dict[str, dict[str, Any]] = {op: {} for op in ops}
    for i, (op, dtype, resolver) in enumerate(jobs):
        table[op][dtype if resolver == "builtin" else f"{dtype}_default"] = results[i]
    return table


# -- verdicts, table, JSON ---------------------------------------------------------------------------
def verdict(row: dict[str, Any], previous: bool) -> tuple[bool, str]:
    """(has a uint8 kernel, why) from one op's probe results."""
    u8, i8 = row["UINT8"], row["INT8"]
    if u8["status"] == "runs":
        return True, "uint8 model runs (builtin kernels)"
    if i8["status"] != "runs":
        return previous, f"probe model invalid (int8 control {i8['status']}: {i8.get('error', '')[:80]}); kept as before"
    return False, f"uint8 {u8['status']}: {u8.get('error', '')}"


def _cell(res: dict[str, Any]) -> str:
    return res["status"]


def _err_cell(res: dict[str, Any]) -> str:
    """The uint8-vs-float error: ``1.0L`` (LSB of a quantized output), ``=`` (exact), ``d=...``."""
    vf = res.get("vs_float")
    if not isinstance(vf, list):
        return "-" if vf is None else "n/a"
    if any("lsb" in r for r in vf):
        return f"{max(r['lsb'] for r in vf if 'lsb' in r):.2f}L"
    worst = max(r["max_abs"] for r in vf)
    return "=" if worst == 0 else f"d={worst:.3g}"


def format_table(table: dict[str, dict[str, Any]], old: set[str]) -> tuple[str, list[str], dict[str, str]]:
    """The per-op table, the ops with a uint8 kernel, and the reasons of each verdict."""
    lines = [f"{'op':28} {'int8':8} {'uint8':8} {'uint8+xnn':9} {'vs float':9} {'verdict':7} detail", "-" * 110]
    has, why = [], {}
    for op in sorted(table):
        row = table[op]
        ok, reason = verdict(row, op in old)
        why[op] = reason
        if ok:
            has.append(op)
        detail = "" if row["UINT8"]["status"] == "runs" else row["UINT8"].get("error", "")[:90]
        if row["INT8"]["status"] != "runs":
            detail = f"int8 control: {row['INT8'].get('error', '')[:80]}"
        if op in NOTES:
            detail = f"[{NOTES[op]}] {detail}".strip()
        d = row.get("UINT8_default", {})
        lines.append(f"{op:28} {_cell(row['INT8']):8} {_cell(row['UINT8']):8} {_cell(d) if d else '-':9} "
                     f"{_err_cell(row['UINT8']):9} {'yes' if ok else 'no':7} {detail}")
    return "\n".join(lines), has, why


def format_diff(old: set[str], new: set[str], why: dict[str, str]) -> str:
    lines = ["changes vs the previous uint8_kernels.json:"]
    for op in sorted(new - old):
        lines.append(f"  + {op:28} {why.get(op, '')}")
    for op in sorted(old - new):
        lines.append(f"  - {op:28} {why.get(op, 'not probed')}")
    if len(lines) == 1:
        lines.append("  (none)")
    return "\n".join(lines)


def litert_version() -> str:
    from importlib.metadata import version

    return version("ai-edge-litert")


def write_json(has: list[str], table: dict[str, dict[str, Any]], path: Path = UINT8_FILE) -> None:
    ver = litert_version()
    data = {
        "format": "tflite-inverter-uint8-kernels",
        "format_version": 1,
        "title": "TFLite builtin ops with a uint8 (asymmetric, per-tensor quantized) kernel",
        "description": (
            "Builtin ops whose stock TFLite (LiteRT) CPU kernel runs uint8 activations: the legacy "
            "'quantized uint8' scheme that `quantize --dtype uint8` writes. An op of a true-uint8 model that "
            "reads or writes a uint8 tensor and is missing here is reported by name (ops_without_uint8_kernel); "
            "the model is also run in the interpreter, which is the final word. Generated by "
            f"benchmarks/probe_uint8_kernels.py against ai_edge_litert {ver} on {DATE}; regenerate with "
            "`python benchmarks/probe_uint8_kernels.py --write`, do not edit by hand."),
        "source": (
            f"Measured: benchmarks/probe_uint8_kernels.py, ai_edge_litert {ver} ({DATE}). For every op of "
            "tflite_int8_kernels.json plus the previous list, a one-op model with uint8 per-tensor activations "
            "(zero point ~128), uint8 weights (zero point 128) and int32 bias (scale s_in*s_w) in one common "
            "configuration (see probe_notes) was run (allocate_tensors + invoke) with the builtin kernels "
            "(no delegate); an op is listed when it ran. An int8 twin of each model is the control."),
        "probe_notes": {op: NOTES[op] for op in sorted(NOTES) if op in table},
        "not_listed": {op: verdict(table[op], False)[1] for op in sorted(table) if op not in has},
        "ops": sorted(has),
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"regenerate {UINT8_FILE.relative_to(ROOT)}")
    p.add_argument("--ops", help="comma-separated subset to probe (no --write then)")
    p.add_argument("--json", help="also dump the raw probe results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    old = set(json.loads(UINT8_FILE.read_text())["ops"])
    int8 = set(json.loads(INT8_FILE.read_text())["ops"])
    ops = sorted(int8 | old) if not args.ops else [o.strip() for o in args.ops.split(",")]
    missing = [o for o in ops if o not in SPECS]
    if missing:
        print(f"no probe model for: {', '.join(missing)}", file=sys.stderr)
        return 2
    table = probe(ops)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    text, has, why = format_table(table, old)
    print(f"ai_edge_litert {litert_version()}: {len(has)} of {len(ops)} probed ops run with uint8\n")
    print(text)
    print()
    print(format_diff(old & set(ops), set(has), why))
    if args.write:
        if args.ops:
            print("--write needs the full probe (no --ops)", file=sys.stderr)
            return 2
        write_json(has, table)
        print(f"\nwrote {UINT8_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
