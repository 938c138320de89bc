"""Shape, layout and indexing ops (reshape, slicing, gathers, scatters, padding, tiling...).

Parameters that TFLite passes as tensors (shapes, axes, begin/end, paddings, multiples) are read
with ``ctx.const`` and handed to TensorFlow as Python lists when the model stores them as constants,
so shapes stay static and TFLiteConverter turns each op back into the same single TFLite op. When a
parameter is computed at run time, its tensor value is passed instead (the TF ops accept tensors).

Quantized tensors are real-valued floats inside the rebuilt graph; every op here only moves,
selects or replicates values (or pads with real 0 = the zero point), so its float form is exact.
The kernels move the raw integers and never requantize: when a file gives the output other
parameters than the input (TFLite's TILE, RESHAPE, SQUEEZE, STRIDED_SLICE, SPLIT_V, GATHER,
REVERSE_V2, PADV2, GATHER_ND, SELECT, SELECT_V2 (both operands), TOPK_V2 and SPARSE_TO_DENSE (values and
default) accept that in every kernel; TRANSPOSE, SLICE, SPLIT, PAD, SPACE_TO_DEPTH and
DEPTH_TO_SPACE in the builtin kernels, the default interpreter's XNNPACK refuses them for 8-bit;
MIRROR_PAD, EXPAND_DIMS, UNPACK, SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND refuse mismatched
parameters in Prepare), the same codes are read with the output's parameters
(:func:`.common.raw_codes`, measured against the interpreter in tests/test_ops_shape.py). Padding
ops pad with the output's zero point (PAD, SPACE_TO_BATCH_ND) or the pad value's code on the
output grid (PADV2), so their input is reinterpreted before padding with real 0 / the real pad value.
The exception is uint8 CONCATENATION, whose kernel requantizes inputs with other parameters than
the output's in float32 (:func:`_rescaled_uint8`, faithful mode).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph
from . import integer_kernels
from .common import constant_pad, raw_codes, round_half_away
from .context import OpContext
from .registry import constant_input_check, register


# -- parameter helpers -----------------------------------------------------------------------------
def _ints(ctx: OpContext, i: int) -> list[int] | None:
    """Constant input ``i`` flattened to Python ints, or ``None`` when it is computed at run time."""
    c = ctx.const(i)
    return None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]


def _int_param(ctx: OpContext, i: int) -> Any:
    """Input ``i`` as a list of ints when constant (static shapes), else its tensor value."""
    v = _ints(ctx, i)
    return ctx.input(i) if v is None else v


def _scalar_param(ctx: OpContext, i: int) -> Any:
    """A scalar parameter (axis, k, depth): an ``int`` when constant, else a rank-0 tensor.

    TFLite accepts such scalars as shape ``[]`` or ``[1]`` tensors; TF wants rank 0."""
    v = _ints(ctx, i)
    if v is not None:
        if len(v) != 1:
            raise ctx.unsupported(f"input {i} must hold one value, it has {len(v)}")
        return v[0]
    t = ctx.in_tensor(i)
    x = ctx.input(i)
    x = x if len(t.shape) == 0 else tf.reshape(x, [])
    return x if x.dtype == tf.int32 else tf.cast(x, tf.int32)


def _indices(x: Any) -> Any:
    """TFLite also takes int16 (and int8) indices; TF gathers want int32 or int64."""
    return x if x.dtype in (tf.int32, tf.int64) else tf.cast(x, tf.int32)


def _pairs(ctx: OpContext, i: int) -> Any:
    """A ``[n, 2]`` paddings/crops input as nested lists when constant, else its tensor value."""
    c = ctx.const(i)
    if c is None:
        return ctx.input(i)
    return np.asarray(c).astype(np.int64).reshape(-1, 2).tolist()


def _static_dims(t: Any) -> list[int] | None:
    """The tensor's dims when all are known (no -1 in the shape signature)."""
    sig = t.shape_signature or t.shape
    return None if any(d < 0 for d in sig) else list(sig)


def _raw(ctx: OpContext, outs: list[Any], src: int = 0) -> list[Any]:
    """Every output as the raw integers of input ``src`` read with that output's parameters."""
    return [raw_codes(y, ctx.in_tensor(src), ctx.out_tensor(k)) for k, y in enumerate(outs)]


def _raw_input(ctx: OpContext, i: int = 0) -> Any:
    """Input ``i`` reinterpreted with output 0's parameters (for ops that pad with real 0)."""
    return raw_codes(ctx.input(i), ctx.in_tensor(i), ctx.out_tensor(0))


# -- reshaping -------------------------------------------------------------------------------------
@register("RESHAPE")
def reshape(ctx: OpContext) -> list[Any]:
    """TFLite takes the shape from input 1 only when it is an int32 vector; otherwise from the
    ``new_shape`` option, where the legacy value ``[0]`` means a scalar (reshape.cc)."""
    x = ctx.input(0)
    st = ctx.in_tensor(1)
    if st is not None and st.type_name == "INT32" and len(st.shape) == 1:
        shape = _int_param(ctx, 1)
    elif ctx.options.get("new_shape") is not None:
        shape = [int(d) for d in ctx.options["new_shape"]]
        if shape == [0]:
            shape = []
    else:
        shape = [d if d >= 0 else -1 for d in (ctx.out_tensor(0).shape_signature or ctx.out_tensor(0).shape)]
    return _raw(ctx, [tf.reshape(x, shape)])


@register("SQUEEZE")
def squeeze(ctx: OpContext) -> list[Any]:
    """Empty ``squeeze_dims`` removes every size-1 dim; the static ones are named so the rank stays
    known, unless a dynamic dim must go too (the output rank says so)."""
    x = ctx.input(0)
    dims = [int(d) for d in (ctx.options.get("squeeze_dims") or [])]
    if not dims:
        sig = ctx.in_tensor(0).shape_signature or ctx.in_tensor(0).shape
        dims = [i for i, d in enumerate(sig) if d == 1]
        if len(sig) - len(dims) != len(ctx.out_tensor(0).shape):
            return _raw(ctx, [tf.squeeze(x)])
    return _raw(ctx, [tf.squeeze(x, axis=dims)])


@register("EXPAND_DIMS")
def expand_dims(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.expand_dims(ctx.input(0), _scalar_param(ctx, 1))])


@register("TRANSPOSE")
def transpose(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.transpose(ctx.input(0), _int_param(ctx, 1))])


# -- slicing ---------------------------------------------------------------------------------------
def _strided_slice_check(op: Operator, sg: Subgraph) -> list[str]:
    o = op.options
    if o.get("offset") and (o.get("ellipsis_mask") or o.get("new_axis_mask")):
        return ["offset=true together with ellipsis_mask/new_axis_mask (TFLite indexes `end` by the expanded "
                "axis there, which has no TensorFlow equivalent)"]
    return []


def _offset_begin_end(ctx: OpContext, begin: Any, end: Any, strides: list[int]) -> tuple[Any, Any]:
    """``offset=true``: ``end`` holds sizes. TFLite first normalises ``begin`` (negative index + dim,
    clamp, begin_mask) and then uses ``end = begin + size`` (strided_slice.h EndForAxis); we do the
    same and pass the normalised begin with begin_mask cleared."""
    bmask = int(ctx.options.get("begin_mask", 0))
    n = len(strides)
    dims = _static_dims(ctx.in_tensor(0))
    if isinstance(begin, list) and isinstance(end, list) and dims is not None:
        starts = []
        for i in range(n):
            d, s, b = dims[i], strides[i], begin[i]
            if bmask & (1 << i):
                b = 0 if s > 0 else d - 1
            else:
                b = b + d if b < 0 else b
                b = min(max(b, 0), d) if s > 0 else min(max(b, -1), d - 1)
            starts.append(b)
        return starts, [b + e for b, e in zip(starts, end)]
    shape = tf.shape(ctx.input(0), out_type=tf.int32)[:n]
    b = tf.cast(tf.convert_to_tensor(begin), tf.int32)
    e = tf.cast(tf.convert_to_tensor(end), tf.int32)
    pos = tf.constant([s > 0 for s in strides])
    b = tf.where(b < 0, b + shape, b)
    b = tf.where(pos, tf.clip_by_value(b, 0, shape), tf.clip_by_value(b, -1, shape - 1))
    masked = tf.constant([bool(bmask & (1 << i)) for i in range(n)])
    b = tf.where(masked, tf.where(pos, tf.zeros_like(shape), shape - 1), b)
    return b, b + e


@register("STRIDED_SLICE", check=_strided_slice_check)
def strided_slice(ctx: OpContext) -> list[Any]:
    """Every mask maps onto ``tf.strided_slice`` one to one (same bit meanings)."""
    o = ctx.options
    x = ctx.input(0)
    begin, end, strides = _int_param(ctx, 1), _int_param(ctx, 2), _int_param(ctx, 3)
    begin_mask = int(o.get("begin_mask", 0))
    if o.get("offset"):
        if not isinstance(strides, list):
            raise ctx.unsupported("offset=true with run-time strides (the stride signs must be known)")
        begin, end = _offset_begin_end(ctx, begin, end, strides)
        begin_mask = 0
    return _raw(ctx, [tf.strided_slice(x, begin, end, strides, begin_mask=begin_mask, end_mask=int(o.get("end_mask", 0)),
                                       ellipsis_mask=int(o.get("ellipsis_mask", 0)),
                                       new_axis_mask=int(o.get("new_axis_mask", 0)),
                                       shrink_axis_mask=int(o.get("shrink_axis_mask", 0)))])


@register("SLICE")
def slice_(ctx: OpContext) -> list[Any]:
    """``size = -1`` means "to the end", as in ``tf.slice``."""
    return _raw(ctx, [tf.slice(ctx.input(0), _int_param(ctx, 1), _int_param(ctx, 2))])


# -- joining and splitting -------------------------------------------------------------------------
def _concat_check(op: Operator, sg: Subgraph) -> list[str]:
    act = op.options.get("fused_activation_function", "NONE")
    if act != "NONE":
        return [f"fused activation {act} on CONCATENATION: TFLite's kernel rejects any (concatenation.cc requires "
                "NONE) and the XNNPACK delegate ignores it, so the model has no single meaning"]
    return []


def _is_uint8_per_tensor(t: Any) -> bool:
    return t is not None and t.type_name == "UINT8" and t.is_quantized and t.quantization.scale.size == 1


def _rescaled_uint8(x: Any, t: Any, out: Any) -> Any:
    """One uint8 input of CONCATENATION as the built-in kernel writes it into an output with other
    quantization parameters (``ConcatenationWithScaling``), in float32 with two roundings (no fused
    multiply-add; measured): ``scale = float32(s_in * float32(1 / s_out))``, ``bias = -z_in * scale``,
    ``q_out = clamp(round_half_away(q_in * scale + bias) + z_out, 0, 255)``. An input with the
    output's exact parameters is copied."""
    (s_in, z_in), (s_out, z_out) = ((np.float32(v.quantization.scale[0]), int(v.quantization.zero_point[0]))
                                    for v in (t, out))
    if (s_in == s_out and z_in == z_out) or s_out == 0:
        return x
    if s_in == 0:  # scale 0: every code reads 0 and is written as the output's zero point
        return tf.zeros_like(x)
    scale = np.float32(s_in * (np.float32(1) / s_out))
    bias = np.float32(-z_in) * scale
    codes = tf.cast(integer_kernels.to_int(x, float(s_in)), tf.float32) + float(z_in)  # stored uint8 codes
    q = round_half_away(codes * scale + bias) + float(z_out)
    y = (tf.clip_by_value(q, 0.0, 255.0) - float(z_out)) * float(s_out)
    return integer_kernels.ste(x, y)


@register("CONCATENATION", check=_concat_check)
def concatenation(ctx: OpContext) -> list[Any]:
    """The uint8 kernel requantizes inputs whose parameters differ from the output's (faithful mode:
    its float32 arithmetic, :func:`_rescaled_uint8`; the default interpreter runs that kernel for
    them too, measured; the float concat plus the output rounding is 1 LSB off on ties), the int8
    one refuses them, and the int16 one copies the raw integers (measured): there the codes are read
    with the output's parameters."""
    xs = list(ctx.inputs)
    out = ctx.out_tensor(0)
    ts = [ctx.in_tensor(i) for i in range(len(xs))]
    if out is not None and out.type_name == "INT16":
        xs = [raw_codes(x, t, out) for x, t in zip(xs, ts)]
    elif ctx.builder.options.fake_quant and _is_uint8_per_tensor(out) and all(_is_uint8_per_tensor(t) for t in ts):
        xs = [_rescaled_uint8(x, t, out) for x, t in zip(xs, ts)]
    return [tf.concat(xs, axis=int(ctx.options.get("axis", 0)))]


@register("PACK")
def pack(ctx: OpContext) -> list[Any]:
    return [tf.stack(ctx.inputs, axis=int(ctx.options.get("axis", 0)))]


@register("UNPACK")
def unpack(ctx: OpContext) -> list[Any]:
    return _raw(ctx, list(tf.unstack(ctx.input(0), num=ctx.num_outputs, axis=int(ctx.options.get("axis", 0)))))


@register("SPLIT")
def split(ctx: OpContext) -> list[Any]:
    """Inputs are (axis, value): the axis comes first for SPLIT."""
    return _raw(ctx, list(tf.split(ctx.input(1), ctx.num_outputs, axis=_scalar_param(ctx, 0))), src=1)


@register("SPLIT_V")
def split_v(ctx: OpContext) -> list[Any]:
    """Inputs are (value, size_splits, axis); one size may be -1 (the rest)."""
    sizes = _int_param(ctx, 1)
    return _raw(ctx, list(tf.split(ctx.input(0), sizes, axis=_scalar_param(ctx, 2), num=ctx.num_outputs)))


# -- replication and padding ----------------------------------------------------------------------
@register("TILE")
def tile(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.tile(ctx.input(0), _int_param(ctx, 1))])


@register("BROADCAST_TO")
def broadcast_to(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.broadcast_to(ctx.input(0), _int_param(ctx, 1))])


@register("BROADCAST_ARGS")
def broadcast_args(ctx: OpContext) -> list[Any]:
    return [tf.raw_ops.BroadcastArgs(s0=ctx.input(0), s1=ctx.input(1))]


@register("PAD")
def pad(ctx: OpContext) -> list[Any]:
    """Pads with 0 (for quantized tensors TFLite pads with the zero point, i.e. real 0)."""
    return [constant_pad(_raw_input(ctx), _pairs(ctx, 1))]


@register("PADV2")
def pad_v2(ctx: OpContext) -> list[Any]:
    """The pad value is input 2 (TFLite requires it on the output's quantization grid)."""
    x = _raw_input(ctx)
    if not ctx.has_input(2):
        return [constant_pad(x, _pairs(ctx, 1))]
    c = ctx.const(2)
    value = tf.reshape(ctx.input(2), []) if c is None else np.asarray(c).reshape(-1)[0].item()
    return [constant_pad(x, _pairs(ctx, 1), value)]


_MIRROR_MODES = ("REFLECT", "SYMMETRIC")


@register("MIRROR_PAD", check=lambda op, sg: [] if op.options.get("mode", "REFLECT") in _MIRROR_MODES
          else [f"mirror pad mode {op.options.get('mode')!r}"])
def mirror_pad(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.pad(ctx.input(0), _pairs(ctx, 1), mode=ctx.options.get("mode", "REFLECT"))])


# -- gathering and scattering ----------------------------------------------------------------------
@register("GATHER")
def gather(ctx: OpContext) -> list[Any]:
    o = ctx.options
    return _raw(ctx, [tf.gather(ctx.input(0), _indices(ctx.input(1)), axis=int(o.get("axis", 0)),
                                batch_dims=int(o.get("batch_dims", 0)))])


@register("GATHER_ND")
def gather_nd(ctx: OpContext) -> list[Any]:
    return [tf.gather_nd(_raw_input(ctx), _indices(ctx.input(1)))]


@register("SCATTER_ND")
def scatter_nd(ctx: OpContext) -> list[Any]:
    """Inputs are (indices, updates, shape); duplicate indices add up, in TFLite as in TF."""
    indices = ctx.input(0)
    return [tf.scatter_nd(indices, ctx.input(1), _same_int_type(_int_param(ctx, 2), indices.dtype))]


def _same_int_type(v: Any, dtype: Any) -> Any:
    """A shape parameter (list or tensor) in ``dtype``: TF wants it typed like the indices, TFLite
    allows int32 and int64 to mix."""
    if isinstance(v, list):
        return tf.constant(v, dtype=dtype)
    return v if v.dtype == dtype else tf.cast(v, dtype)


@functools.lru_cache(maxsize=1)
def _xla_dynamic_update_slice() -> Any:
    """XLA's DynamicUpdateSlice (what TFLiteConverter turns into DYNAMIC_UPDATE_SLICE). Its kernel only
    exists under XLA, so it runs in a nested ``jit_compile`` function."""
    from tensorflow.compiler.tf2xla.python import xla  # local: TF is imported lazily

    return tf.function(lambda x, u, i: xla.dynamic_update_slice(x, u, i), jit_compile=True, autograph=False)


@register("DYNAMIC_UPDATE_SLICE")
def dynamic_update_slice(ctx: OpContext) -> list[Any]:
    """Start indices are clamped so the update fits, in TFLite and XLA alike."""
    x, u = ctx.input(0), ctx.input(1)
    return [_xla_dynamic_update_slice()(x, tf.cast(u, x.dtype), ctx.input(2))]


def _embedding_check(op: Operator, sg: Subgraph) -> list[str]:
    t = sg.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
    q = t.quantization if t is not None else None
    if q is not None and q.details:
        return [f"embedding table with {q.details.get('type', 'non-affine')} quantization"]
    return []


@register("EMBEDDING_LOOKUP", check=_embedding_check)
def embedding_lookup(ctx: OpContext) -> list[Any]:
    """Rows of the table (input 1) picked by the ids (input 0). Hybrid tables (int8 weights with a
    float output) are already real-valued here, dequantized per row as TFLite does."""
    return [tf.gather(ctx.input(1), _indices(ctx.input(0)))]


# -- space/depth/batch rearrangements ------------------------------------------------------------
@register("SPACE_TO_DEPTH")
def space_to_depth(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.nn.space_to_depth(ctx.input(0), int(ctx.options["block_size"]))])


@register("DEPTH_TO_SPACE")
def depth_to_space(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.nn.depth_to_space(ctx.input(0), int(ctx.options["block_size"]))])


@register("SPACE_TO_BATCH_ND")
def space_to_batch_nd(ctx: OpContext) -> list[Any]:
    return [tf.space_to_batch_nd(_raw_input(ctx), _int_param(ctx, 1), _pairs(ctx, 2))]


@register("BATCH_TO_SPACE_ND")
def batch_to_space_nd(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.batch_to_space(ctx.input(0), _int_param(ctx, 1), _pairs(ctx, 2))])


@register("REVERSE_V2")
def reverse_v2(ctx: OpContext) -> list[Any]:
    return _raw(ctx, [tf.reverse(ctx.input(0), _int_param(ctx, 1))])


@register("REVERSE_SEQUENCE")
def reverse_sequence(ctx: OpContext) -> list[Any]:
    o = ctx.options
    return [tf.reverse_sequence(ctx.input(0), ctx.input(1), seq_axis=int(o.get("seq_dim", 0)),
                                batch_axis=int(o.get("batch_dim", 0)))]


@register("DILATE", check=constant_input_check(
    1, "run-time dilation factors (only constant ones are rebuilt)"))
def dilate(ctx: OpContext) -> list[Any]:
    """Interior padding: ``dilations[i] - 1`` copies of the padding value between neighbours along
    axis i. No single TF op does this, so each dilated axis is expand_dims + pad + reshape + slice.
    TFLite copies the padding value's raw bytes, i.e. reads it on the output's quantization grid."""
    x = ctx.input(0)
    factors = _ints(ctx, 1)
    value = tf.cast(tf.reshape(ctx.input(2), []), x.dtype)
    pt, ot = ctx.in_tensor(2), ctx.out_tensor(0)
    if pt.is_quantized and ot.is_quantized:
        ps, pz = float(pt.quantization.scale[0]), float(pt.quantization.zero_point[0])
        os_, oz = float(ot.quantization.scale[0]), float(ot.quantization.zero_point[0])
        value = (tf.round(value / ps) + pz - oz) * os_
    rank = len(factors)
    for axis, d in enumerate(factors):
        if d == 1:
            continue
        shape = tf.shape(x)
        y = tf.expand_dims(x, axis + 1)
        pads = [[0, 0]] * (rank + 1)
        pads[axis + 1] = [0, d - 1]
        y = constant_pad(y, pads, value)
        y = tf.reshape(y, tf.concat([shape[:axis], [shape[axis] * d], shape[axis + 1:]], 0))
        end = tf.stack([(shape[axis] - 1) * d + 1 if i == axis else 0 for i in range(rank)])
        x = tf.strided_slice(y, [0] * rank, end, end_mask=((1 << rank) - 1) & ~(1 << axis))
    return [x]


# -- shapes and generated tensors ------------------------------------------------------------------
_INDEX_TYPES = ("INT32", "INT64")


def _index_type_check(key: str, default: str) -> Any:
    def check(op: Operator, sg: Subgraph) -> list[str]:
        v = op.options.get(key, default)
        return [] if v in _INDEX_TYPES else [f"{key} {v} (TFLite allows only INT32 or INT64)"]

    return check


@register("SHAPE", check=_index_type_check("out_type", "INT32"))
def shape(ctx: OpContext) -> list[Any]:
    return [tf.shape(ctx.input(0), out_type=getattr(tf, ctx.options.get("out_type", "INT32").lower()))]


@register("RANK")
def rank(ctx: OpContext) -> list[Any]:
    return [tf.rank(ctx.input(0))]


@register("FILL")
def fill(ctx: OpContext) -> list[Any]:
    """Input 1 is the (scalar) fill value; its dtype is the output's."""
    return [tf.fill(_int_param(ctx, 0), tf.reshape(ctx.input(1), []))]


@register("ZEROS_LIKE")
def zeros_like(ctx: OpContext) -> list[Any]:
    return [tf.zeros_like(ctx.input(0))]


@register("RANGE")
def range_(ctx: OpContext) -> list[Any]:
    start, limit, delta = (tf.reshape(ctx.input(i), []) for i in range(3))
    return [tf.range(start, limit, delta)]


@register("ONE_HOT")
def one_hot(ctx: OpContext) -> list[Any]:
    """Inputs are (indices, depth, on_value, off_value); the output dtype is on_value's."""
    on, off = tf.reshape(ctx.input(2), []), tf.reshape(ctx.input(3), [])
    return [tf.one_hot(ctx.input(0), _scalar_param(ctx, 1), on_value=on, off_value=tf.cast(off, on.dtype),
                       axis=int(ctx.options.get("axis", -1)))]


@register("MATRIX_DIAG")
def matrix_diag(ctx: OpContext) -> list[Any]:
    return [tf.linalg.diag(ctx.input(0))]


@register("MATRIX_SET_DIAG")
def matrix_set_diag(ctx: OpContext) -> list[Any]:
    x = ctx.input(0)
    return [tf.linalg.set_diag(x, tf.cast(ctx.input(1), x.dtype))]


@register("SPARSE_TO_DENSE")
def sparse_to_dense(ctx: OpContext) -> list[Any]:
    """Inputs are (indices, output_shape, values, default_value). TFLite never checks indices
    (``validate_indices`` is a no-op in sparse_to_dense.cc), so TF is told not to either."""
    values, indices = _raw_input(ctx, 2), ctx.input(0)
    default = tf.cast(tf.reshape(_raw_input(ctx, 3), []), values.dtype)
    return [tf.raw_ops.SparseToDense(sparse_indices=indices,
                                     output_shape=_same_int_type(_int_param(ctx, 1), indices.dtype),
                                     sparse_values=values, default_value=default, validate_indices=False)]


# -- selection -------------------------------------------------------------------------------------
@register("SELECT")
def select(ctx: OpContext) -> list[Any]:
    """SELECT (v1): the condition has x's shape, or is a scalar, or a vector over x's first dim."""
    x = _raw_input(ctx, 1)
    return [tf.raw_ops.Select(condition=ctx.input(0), x=x, y=tf.cast(_raw_input(ctx, 2), x.dtype))]


@register("SELECT_V2")
def select_v2(ctx: OpContext) -> list[Any]:
    """SELECT_V2 broadcasts all three inputs."""
    x = _raw_input(ctx, 1)
    return [tf.where(ctx.input(0), x, tf.cast(_raw_input(ctx, 2), x.dtype))]


def _where_check(op: Operator, sg: Subgraph) -> list[str]:
    t = sg.tensors[op.inputs[0]]
    if t.is_quantized and np.any(t.quantization.zero_point != 0):
        return ["WHERE on a quantized input with a non-zero zero point (TFLite tests the raw integers)"]
    return []


@register("WHERE", check=_where_check)
def where(ctx: OpContext) -> list[Any]:
    """The int64 coordinates of the true (non-zero) elements."""
    return [tf.where(ctx.input(0))]


@register("UNIQUE", check=_index_type_check("idx_out_type", "INT32"))
def unique(ctx: OpContext) -> list[Any]:
    y, idx = tf.unique(ctx.input(0), out_idx=getattr(tf, ctx.options.get("idx_out_type", "INT32").lower()))
    return [y, idx]


@register("TOPK_V2")
def topk_v2(ctx: OpContext) -> list[Any]:
    """Inputs are (values, k); outputs are the sorted top-k values and their int32 indices."""
    values, indices = tf.math.top_k(_raw_input(ctx), _scalar_param(ctx, 1), sorted=True)
    return [values, indices]
