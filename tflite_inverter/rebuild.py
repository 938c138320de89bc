"""Rebuild: IR -> a TF2 ``tf.Module`` with one ``tf.function`` per signature.

The builder walks each subgraph in execution order and feeds every operator to its registered
rebuilder (see :mod:`.ops.registry`). It owns the value table, the weights (``tf.Variable`` so the
model can be fine-tuned), the state of variable tensors and resource variables, subgraph calls
(WHILE/IF bodies), the signatures, and fake-quant placement.

Values are kept in the *real* domain: a quantized tensor (int8/uint8/int16 with a scale) is carried
as float32. In the default faithful mode every quantized op output is rounded onto its recorded
integer grid (fake quantization), which makes the float graph reproduce the integer model; model
inputs and outputs keep their integer dtypes unless ``float_io``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._tf import tensorflow_op_error, tf
from .errors import InvalidModelError, InverterError, UnsupportedOpError
from .model import ir
from .ops import common, registry
from .ops.context import OpContext, RebuildOptions, is_real_quantized, tf_dtype, value_dtype


def sanitize(name: str, fallback: str) -> str:
    """A name limited to ``[A-Za-z0-9_]`` that does not start with a digit (SavedModel keys)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name or "").strip("_")
    s = re.sub(r"_+", "_", s)
    if not s:
        s = fallback
    if s[0].isdigit():
        s = "t_" + s
    return s


class GraphBuilder:
    """Interprets IR subgraphs into TensorFlow ops while a ``tf.function`` traces."""

    def __init__(self, model: ir.Model, options: RebuildOptions, module: tf.Module):
        self.model = model
        self.options = options
        self.module = module
        self._weights: dict[tuple[int, int, str], Any] = {}
        self._state: dict[Any, Any] = {}

    # -- constants and weights --------------------------------------------------------------------
    def const_array(self, t: ir.Tensor, where: str, sg: ir.Subgraph | None = None) -> np.ndarray:
        if t.sparsity is not None:
            from .ops.sparse import densify  # local: only sparse models need it

            data = densify(t)
        else:
            data = t.data()
        details = t.quantization.details if t.quantization is not None else None
        if details and details.get("type") == "BlockwiseQuantization":
            return self._dequantize_blockwise(data, t, details, sg, where)
        if t.is_quantized and t.type_name not in ("FLOAT32", "FLOAT16"):
            return common.dequantize_array(data, t.quantization)
        if t.type_name == "FLOAT16":
            return np.asarray(data, dtype=np.float32)
        return np.asarray(data)

    def _dequantize_blockwise(self, data: np.ndarray, t: ir.Tensor, details: dict[str, Any],
                              sg: ir.Subgraph | None, where: str) -> np.ndarray:
        """Blockwise weights: ``w[..., i] = (q[..., i] - zp[..., i // B]) * scale[..., i // B]`` with the
        scales (and optional zero points) stored in other constant tensors of the subgraph."""
        block = int(details.get("block_size") or 0)
        si, zi = int(details.get("scales", -1)), int(details.get("zero_points", -1))
        n = len(sg.tensors) if sg is not None else 0
        if sg is None or block <= 0 or not 0 <= si < n or zi >= n or not data.ndim or data.shape[-1] % block:
            raise InvalidModelError(f"{where}: tensor {t.index} ({t.name!r}) has blockwise quantization "
                                    f"(block_size {block}, scales tensor {si}) that does not fit its shape {t.shape}")
        blocks = data.shape[-1] // block
        scales = self.const_array(sg.tensors[si], where, sg).astype(np.float32)
        if scales.shape != (*data.shape[:-1], blocks):
            raise InvalidModelError(f"{where}: blockwise scales of tensor {t.index} have shape {scales.shape}, "
                                    f"expected {(*data.shape[:-1], blocks)}")
        q = data.astype(np.float32).reshape(*data.shape[:-1], blocks, block)
        if zi >= 0:
            q = q - self.const_array(sg.tensors[zi], where, sg).astype(np.float32)[..., None]
        return (q * scales[..., None]).reshape(data.shape).astype(np.float32)

    def weight(self, sg: ir.Subgraph, t: ir.Tensor, transform: Callable[[np.ndarray], np.ndarray] | None,
               tag: str, where: str) -> Any:
        key = (sg.index, t.index, tag)
        if key not in self._weights:
            arr = self.const_array(t, where, sg)
            if transform is not None:
                arr = transform(arr)
            arr = np.ascontiguousarray(arr).reshape(np.shape(arr))  # keep 0-d constants 0-d
            trainable = arr.dtype.kind in "fc"
            name = sanitize(t.name, f"tensor_{t.index}")
            with tf.init_scope():
                var = tf.Variable(arr, name=name, trainable=trainable)
            self._weights[key] = var
            self.module.tflite_weights.append(var)
        return self._weights[key]

    def state_variable(self, sg: ir.Subgraph, t: ir.Tensor) -> Any:
        key = (sg.index, t.index)
        if key not in self._state:
            if t.is_constant:
                init = self.const_array(t, "", sg)
            else:
                shape = [max(d, 1) if d >= 0 else 1 for d in t.shape_signature] if t.shape_signature else list(t.shape)
                init = np.zeros(shape, dtype=np.float32 if is_real_quantized(t) else t.dtype)
            with tf.init_scope():
                var = tf.Variable(init, name=sanitize(t.name, f"state_{t.index}"), trainable=False)
            self._state[key] = var
            self.module.tflite_state.append(var)
        return self._state[key]

    def resource(self, key: Any, create: Callable[[], Any]) -> Any:
        """A named piece of module state (resource variables, hash tables), created once."""
        if key not in self._state:
            with tf.init_scope():
                self._state[key] = create()
            self.module.tflite_state.append(self._state[key])
        return self._state[key]

    # -- values -----------------------------------------------------------------------------------
    def value(self, sg: ir.Subgraph, ti: int, values: dict[int, Any]) -> Any:
        if ti in values:
            return values[ti]
        t = sg.tensors[ti]
        if t.is_variable:
            return self.state_variable(sg, t).read_value()
        if t.is_constant:
            if t.type_name in ("FLOAT32", "FLOAT16") or is_real_quantized(t):
                v = tf.identity(self.weight(sg, t, None, "", ""))
                if t.type_name == "FLOAT16" and not t.is_quantized:
                    v = tf.cast(v, tf.float16)
            else:
                v = tf.constant(self.const_array(t, "", sg), dtype=tf_dtype(t.type_name))
            values[ti] = v
            return v
        raise InvalidModelError(f"subgraph {sg.index}: tensor {ti} ({t.name!r}) is read before any operator "
                                "produces it")

    def post_output(self, sg: ir.Subgraph, ti: int, v: Any) -> Any:
        t = sg.tensors[ti]
        want = value_dtype(t)
        if v.dtype != want and want not in (tf.resource, tf.variant):
            v = tf.cast(v, want)
        if self.options.fake_quant and is_real_quantized(t):
            v = common.fake_quant(v, t)
        elif self.options.range_ops and common.has_8bit_range(t):
            v = common.range_fake_quant(v, t)
        return v

    # -- execution --------------------------------------------------------------------------------
    def run_subgraph(self, index: int, inputs: list[Any]) -> list[Any]:
        sg = self.model.subgraphs[index]
        if len(inputs) != len(sg.inputs):
            raise InvalidModelError(f"subgraph {index} takes {len(sg.inputs)} inputs, called with {len(inputs)}")
        values: dict[int, Any] = dict(zip(sg.inputs, inputs))
        for op in sg.operators:
            spec = registry.find(op.key)
            if spec is None:
                raise UnsupportedOpError([f"{sg.where(op)}: no rebuilder"])
            ctx = OpContext(self, sg, op, values)
            try:
                outs = spec.fn(ctx)
                if len(outs) != len(op.outputs):
                    raise UnsupportedOpError([f"{sg.where(op)}: rebuilder returned {len(outs)} outputs, the op "
                                              f"has {len(op.outputs)}"])
                for ti, v in zip(op.outputs, outs):
                    if ti < 0 or v is None:
                        continue
                    values[ti] = self.post_output(sg, ti, v)
            except InverterError:
                raise
            except Exception as exc:
                if ctx.absent_read and _fed_none(exc):  # the rebuilder passed on a missing input
                    missing = sorted(set(ctx.absent_read))
                    how = "absent (-1)" if all(k < len(op.inputs) for k in missing) else \
                        f"missing (the operator has {len(op.inputs)} inputs)"
                    raise InvalidModelError(f"{sg.where(op)}: input(s) {', '.join(map(str, missing))} {how}, but "
                                            "the op needs them") from None
                # TensorFlow's shape inference is the check of each op's shapes: a file whose recorded
                # shapes/types no TensorFlow op accepts is invalid (the interpreter's Prepare fails too).
                why = tensorflow_op_error(exc)
                if why is None:
                    raise
                raise InvalidModelError(f"{sg.where(op)}: TensorFlow rejects the op with the shapes/types the "
                                        f"file gives it: {why}") from None
        return [self.value(sg, ti, values) for ti in sg.outputs]


def _fed_none(exc: BaseException) -> bool:
    """Whether ``exc`` is TensorFlow refusing a ``None`` where a tensor was needed (an absent input
    that a rebuilder passed on)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (ValueError, TypeError)) and ("None values not supported" in str(e)
                                                       or "'NoneType'" in str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


@dataclass(frozen=True)
class IOSpec:
    name: str  # sanitized key used in the SavedModel signature
    tensor: ir.Tensor
    dtype: Any  # TensorFlow dtype at the signature boundary
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class SignaturePlan:
    key: str
    subgraph_index: int
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    tflite_input_names: tuple[str, ...]  # names the TFLite signature runner uses
    tflite_output_names: tuple[str, ...]  # the SignatureDef's outputs (the first ones of ``outputs``)
    #: Outputs of the subgraph that the SignatureDef does not name: they follow the named ones in
    #: ``outputs`` (so the SavedModel exposes them and the verifier compares them too); the TFLite
    #: signature runner does not return them, the verifier reads them by tensor index.
    extra_outputs: tuple[IOSpec, ...] = ()
    #: The SignatureDef does not name the subgraph's inputs (see :func:`plan_signatures`): the plan is
    #: over the subgraph's own inputs/outputs, the interpreter is run (and verified) without the
    #: signature runner, and this says so (printed by ``convert``).
    subgraph_io_note: str = ""


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        seen.setdefault(n, 0)
        out.append(n)
    return out


def plan_signatures(model: ir.Model, options: RebuildOptions) -> list[SignaturePlan]:
    """One plan per SignatureDef (or ``serving_default`` over subgraph 0 when the file has none).

    A SignatureDef that names fewer outputs than its subgraph has (e.g. none at all) gets the
    subgraph's other outputs appended, named after their tensors: a signature without outputs
    would be a SavedModel nobody can use and a verification that compares nothing.

    A SignatureDef of subgraph 0 whose inputs are not exactly the subgraph's inputs (a file whose
    uint8 I/O was added in front of an int8 graph by a third-party tool still names the old int8
    tensors) is planned over the subgraph's own inputs and outputs, with a note. TFLite's signature
    runner maps each name to its tensor index and writes the value there; when that tensor is not a
    subgraph input, the op producing it overwrites the value on invoke, and the outputs do not
    depend on what was passed (and a named intermediate output may share arena memory with another
    tensor). What the interpreter does run meaningfully is the subgraph on its inputs: that is what is
    rebuilt and verified. Inputs and outputs keep the signature's name when they are tied to the
    named tensor by one QUANTIZE/DEQUANTIZE/CAST, else their tensor names.
    """

    def io(sg: ir.Subgraph, pairs: list[tuple[str, int]], kind: str) -> tuple[IOSpec, ...]:
        names = _unique([sanitize(n, f"{kind}_{k}") for k, (n, _) in enumerate(pairs)])
        specs = []
        for name, (_, ti) in zip(names, pairs):
            t = sg.tensors[ti]
            if is_real_quantized(t):
                dtype = tf.float32 if options.float_io else tf_dtype(t.type_name)
            else:
                dtype = tf_dtype(t.type_name)
            shape = tuple(None if d < 0 else d for d in (t.shape_signature or t.shape))
            specs.append(IOSpec(name, t, dtype, shape))
        return tuple(specs)

    plans = []
    if model.signatures:
        for s in model.signatures:
            sg = model.subgraphs[s.subgraph_index]
            if s.subgraph_index == 0 and sorted(ti for _, ti in s.inputs) != sorted(sg.inputs):
                ins, outs_, note = _subgraph_io(sg, s)
                plans.append(SignaturePlan(s.key, 0, io(sg, ins, "input"), io(sg, outs_, "output"), (), (),
                                           subgraph_io_note=note))
                continue
            named = {ti for _, ti in s.outputs}
            extra = [(sg.tensors[ti].name, ti) for ti in sg.outputs if ti not in named]
            outs = io(sg, list(s.outputs) + extra, "output")
            plans.append(SignaturePlan(s.key, s.subgraph_index, io(sg, list(s.inputs), "input"), outs,
                                       tuple(n for n, _ in s.inputs), tuple(n for n, _ in s.outputs),
                                       outs[len(s.outputs):]))
    else:
        sg = model.subgraphs[0]
        ins = [(sg.tensors[i].name, i) for i in sg.inputs]
        outs = [(sg.tensors[i].name, i) for i in sg.outputs]
        plans.append(SignaturePlan("serving_default", 0, io(sg, ins, "input"), io(sg, outs, "output"), (), ()))
    return plans


#: Ops a converter puts between a model's real I/O and the tensors an old SignatureDef still names.
_IO_ADAPTERS = ("QUANTIZE", "DEQUANTIZE", "CAST")


def _subgraph_io(sg: ir.Subgraph, s: Any) -> tuple[list[tuple[str, int]], list[tuple[str, int]], str]:
    """(inputs, outputs, note) of a signature planned over its subgraph's own I/O (see
    :func:`plan_signatures`)."""
    sig_in = {ti: n for n, ti in s.inputs}
    sig_out = {ti: n for n, ti in s.outputs}

    def named(ti: int, names: dict[int, str], inward: bool) -> str:
        """The signature's name of ``ti``, or of the tensor one adapter op away from it (an input
        feeding a named tensor, a named tensor feeding an output), else the tensor's own name."""
        if ti in names:
            return names[ti]
        for op in sg.operators:
            here, there = (op.inputs, op.outputs) if inward else (op.outputs, op.inputs)
            if op.name in _IO_ADAPTERS and here[:1] == (ti,) and there and there[0] in names:
                return names[there[0]]
        return sg.tensors[ti].name

    def name_in(ti: int) -> str:
        return named(ti, sig_in, True)

    def name_out(ti: int) -> str:
        return named(ti, sig_out, False)

    ins = [(name_in(ti), ti) for ti in sg.inputs]
    outs = [(name_out(ti), ti) for ti in sg.outputs]

    def desc(pairs: Any) -> str:
        return ", ".join(f"{n!r} -> tensor {ti} ({sg.tensors[ti].name!r})" for n, ti in pairs) or "none"

    note = (f"signature {s.key!r} names as inputs {desc(s.inputs)}, not exactly the inputs of subgraph 0 "
            f"({', '.join(f'tensor {ti} ({sg.tensors[ti].name!r})' for ti in sg.inputs)}): TFLite's signature "
            "runner writes each value into the named tensor, where the op producing it overwrites it on invoke "
            "(and a subgraph input it does not name is never set), so its outputs would not follow the inputs "
            "given. Rebuilt and verified on the "
            f"subgraph's own inputs ({', '.join(n for n, _ in ins)}) and outputs ({', '.join(n for n, _ in outs)}), "
            "as the interpreter runs the model without the signature")
    return ins, outs, note


def check_supported(model: ir.Model) -> None:
    """Raise one :class:`UnsupportedOpError` listing every op (with its location) we cannot rebuild."""
    problems = []
    for sg in model.subgraphs:
        available = set(sg.inputs)
        for op in sg.operators:
            ok, why = registry.support(op, sg, model)
            if not ok:
                problems.append(f"{sg.where(op)}: {why}")
            for k, ti in enumerate(op.inputs):
                if ti < 0 or ti in available:
                    continue
                t = sg.tensors[ti]
                if not (t.is_constant or t.is_variable or t.type_name in ("RESOURCE", "VARIANT")):
                    problems.append(f"{sg.where(op)}: input {k} reads tensor {ti} ({t.name!r}), which has no "
                                    "data, no producer and is not a subgraph input (uninitialized memory in TFLite)")
            available.update(ti for ti in op.outputs if ti >= 0)
    if problems:
        raise UnsupportedOpError(problems)


def make_module(model: ir.Model, options: RebuildOptions | None = None) -> Any:
    """Build the ``tf.Module`` (weights as variables, one ``tf.function`` per signature).

    The functions are traced here, so every weight variable exists before the module is saved.
    Raises :class:`UnsupportedOpError` listing every unsupported op before anything is built.
    """
    options = options or RebuildOptions()
    check_supported(model)
    module = tf.Module(name="rebuilt_tflite")
    module.tflite_weights = []  # tracked lists: SavedModel saves every variable in them
    module.tflite_state = []
    builder = GraphBuilder(model, options, module)
    plans = plan_signatures(model, options)
    module.plans = plans
    module.concrete = {}
    for plan in plans:
        fn = _make_function(builder, plan)
        module.concrete[plan.key] = fn.get_concrete_function()
        setattr(module, "sig_" + sanitize(plan.key, "signature"), fn)
    return module


def _make_function(builder: GraphBuilder, plan: SignaturePlan) -> Any:
    specs = [tf.TensorSpec(shape=s.shape, dtype=s.dtype, name=s.name) for s in plan.inputs]
    opts = builder.options

    sg = builder.model.subgraphs[plan.subgraph_index]
    position = {ti: k for k, ti in enumerate(sg.inputs)}
    missing = [ti for ti in sg.inputs if ti not in {s.tensor.index for s in plan.inputs}]
    if missing or any(s.tensor.index not in position for s in plan.inputs):
        raise InvalidModelError(f"signature {plan.key!r} does not name exactly the inputs of subgraph {sg.index}")

    def fn(*args: Any) -> dict[str, Any]:
        vals: list[Any] = [None] * len(sg.inputs)
        for spec, x in zip(plan.inputs, args):
            t = spec.tensor
            if is_real_quantized(t):
                x = common.dequantize_int(x, t) if not opts.float_io else x
                if opts.fake_quant and opts.float_io:
                    x = common.fake_quant(x, t)
                elif opts.range_ops and common.has_8bit_range(t):
                    x = common.range_fake_quant(x, t)
            vals[position[t.index]] = x
        outs = dict(zip(sg.outputs, builder.run_subgraph(plan.subgraph_index, vals)))
        result = {}
        for spec in plan.outputs:
            t = spec.tensor
            y = outs[t.index] if t.index in outs else builder.value(sg, t.index, {})
            if is_real_quantized(t) and not opts.float_io:
                y = common.quantize_to_int(y, t)
            elif y.dtype != spec.dtype:
                y = tf.cast(y, spec.dtype)
            result[spec.name] = tf.identity(y, name=spec.name)
        return result

    fn.__name__ = sanitize(plan.key, "signature")
    return tf.function(fn, input_signature=specs, autograph=False)
