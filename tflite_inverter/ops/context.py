"""What a rebuilder sees: :class:`OpContext` (one operator, its options, inputs, weights, state),
:class:`RebuildOptions`, and the dtype helpers shared by the builder and the ops.

It lives in ops/ so that every rebuilder can be typed ``ctx: OpContext`` without importing the
builder (:mod:`tflite_inverter.rebuild` imports the ops, never the other way round): the context
talks to its builder through the small :class:`Builder` protocol, which
:class:`~tflite_inverter.rebuild.GraphBuilder` implements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .._tf import tf
from ..errors import UnsupportedOpError
from ..model import ir
from . import common


@dataclass(frozen=True)
class RebuildOptions:
    fake_quant: bool = True  # faithful: round quantized tensors onto their integer grid
    float_io: bool = False  # float32 inputs/outputs even where the model has integer I/O
    # Re-quantizing with the source's own ranges: the clean float path, plus one
    # tf.quantization.fake_quant_with_min_max_args per per-tensor 8-bit tensor carrying its recorded
    # range, which TFLiteConverter adopts as that tensor's scale and zero point. Implies no fake_quant.
    range_ops: bool = False

    def __post_init__(self) -> None:
        if self.range_ops and self.fake_quant:
            object.__setattr__(self, "fake_quant", False)


class Builder(Protocol):
    """What :class:`OpContext` needs from the graph builder (``rebuild.GraphBuilder``)."""

    options: RebuildOptions

    def value(self, sg: ir.Subgraph, index: int, values: dict[int, Any]) -> Any: ...

    def const_array(self, t: ir.Tensor, where: str, sg: ir.Subgraph | None = None) -> np.ndarray: ...

    def weight(self, sg: ir.Subgraph, t: ir.Tensor, transform: Callable[[np.ndarray], np.ndarray] | None,
               tag: str, where: str) -> Any: ...

    def state_variable(self, sg: ir.Subgraph, t: ir.Tensor) -> Any: ...

    def run_subgraph(self, index: int, inputs: list[Any]) -> list[Any]: ...


_TF_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT32": "int32", "UINT8": "uint8",
    "INT64": "int64", "STRING": "string", "BOOL": "bool", "INT16": "int16", "COMPLEX64": "complex64",
    "COMPLEX128": "complex128", "INT8": "int8", "UINT64": "uint64", "UINT32": "uint32", "UINT16": "uint16",
    "BFLOAT16": "bfloat16", "RESOURCE": "resource", "VARIANT": "variant",
}


def tf_dtype(type_name: str) -> Any:
    name = _TF_DTYPES.get(type_name)
    if name is None:
        raise UnsupportedOpError([f"tensor type {type_name} has no TensorFlow equivalent"])
    return getattr(tf, name)


def is_real_quantized(t: ir.Tensor) -> bool:
    """Quantized integer tensors are carried as float32 real values."""
    return t.is_quantized and t.type_name in ("INT8", "UINT8", "INT16", "INT32", "INT4", "INT64")


def value_dtype(t: ir.Tensor) -> Any:
    """The dtype a tensor has inside the rebuilt graph."""
    return tf.float32 if is_real_quantized(t) else tf_dtype(t.type_name)


class OpContext:
    """What a rebuilder sees: one operator, its options, its inputs, and helpers for weights/state."""

    def __init__(self, builder: Builder, subgraph: ir.Subgraph, op: ir.Operator, values: dict[int, Any]):
        self.builder = builder
        self.subgraph = subgraph
        self.op = op
        self.options = op.options
        self._values = values
        self.absent_read: list[int] = []  # inputs asked for that the operator does not have

    # -- identity ---------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return self.subgraph.where(self.op)

    def unsupported(self, why: str) -> UnsupportedOpError:
        """An error naming this operator; ``raise ctx.unsupported("...")``."""
        return UnsupportedOpError([f"{self.where}: {why}"])

    # -- inputs and outputs -----------------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.op.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.op.outputs)

    def has_input(self, i: int) -> bool:
        return i < len(self.op.inputs) and self.op.inputs[i] >= 0

    def in_tensor(self, i: int) -> ir.Tensor | None:
        return self.subgraph.input_of(self.op, i)

    def out_tensor(self, i: int = 0) -> ir.Tensor:
        return self.subgraph.tensors[self.op.outputs[i]]

    def out_dtype(self, i: int = 0) -> Any:
        return value_dtype(self.out_tensor(i))

    def input(self, i: int) -> Any:
        """The value of input ``i`` (``None`` for an absent optional input)."""
        if not self.has_input(i):
            self.absent_read.append(i)
            return None
        return self.builder.value(self.subgraph, self.op.inputs[i], self._values)

    @property
    def inputs(self) -> list[Any]:
        return [self.input(i) for i in range(self.num_inputs)]

    def is_const(self, i: int) -> bool:
        t = self.in_tensor(i)
        return t is not None and t.is_constant

    def const(self, i: int) -> np.ndarray | None:
        """Input ``i`` as a numpy array if it is a constant (quantized data dequantized to float32,
        float16 widened to float32), else ``None``. Use it for parameters (shapes, axes, paddings)."""
        t = self.in_tensor(i)
        if t is None or not t.is_constant:
            return None
        return self.builder.const_array(t, self.where, self.subgraph)

    def weight(self, i: int, transform: Callable[[np.ndarray], np.ndarray] | None = None,
               tag: str = "") -> Any:
        """Input ``i`` (a constant) as a trainable ``tf.Variable`` after an optional numpy layout
        transform (``tag`` names the transform so one constant used two ways gets two variables)."""
        t = self.in_tensor(i)
        if t is None or not t.is_constant:
            raise self.unsupported(f"input {i} must be a constant weight")
        return self.builder.weight(self.subgraph, t, transform, tag, self.where)

    def activation(self, x: Any, key: str = "fused_activation_function") -> Any:
        return common.apply_activation(x, self.options.get(key, "NONE"), self.where)

    # -- state and subgraphs ----------------------------------------------------------------------
    def state(self, i: int) -> Any:
        """The ``tf.Variable`` behind variable tensor input ``i`` (``is_variable``)."""
        t = self.in_tensor(i)
        if t is None:
            raise self.unsupported(f"input {i} is absent but must be a state tensor")
        return self.builder.state_variable(self.subgraph, t)

    def run_subgraph(self, index: int, inputs: Sequence[Any]) -> list[Any]:
        return self.builder.run_subgraph(index, list(inputs))


