"""The StableHLO builtins the TFLite runtime executes: PAD, GATHER, SCATTER, REDUCE_WINDOW, AND, CASE,
RNG_BIT_GENERATOR (ADD, MULTIPLY, MAXIMUM, MINIMUM and SHIFT_LEFT live in :mod:`.elementwise`,
COMPOSITE in :mod:`.control_flow`).

Each is rebuilt from plain TensorFlow ops (never ``tf.raw_ops.Xla*``: those only run under XLA and do
not convert back), following the TFLite kernels (``tensorflow/lite/kernels/stablehlo_*.cc``), which
sometimes differ from the StableHLO spec: GATHER clamps start indices so the slice fits, SCATTER drops
updates that land outside the operand and applies them in row-major order (the last write wins),
REDUCE_WINDOW and SCATTER read their body subgraph only for the one operator's opcode (a ``check``
sees only the op's own subgraph, so an unrecognised body is refused by name when building).

The kernels copy and combine raw elements whatever the quantization says: a quantized int8 input is
reinterpreted bit for bit on the output's grid, and ``+``/``*`` bodies add raw integers (wrapping).
So quantized values are turned back into their stored integers (:func:`_raw`), processed, and read on
the output's grid (:func:`_real`).

Every other STABLEHLO_* builtin of the schema has no TFLite kernel: a model holding one cannot run in
TFLite, so nothing could verify a rebuild; those are listed with :func:`.registry.not_rebuilt`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph, Tensor
from .common import constant_pad, integer_range
from .context import OpContext
from .registry import not_rebuilt, register

# -- ops without a TFLite kernel -------------------------------------------------------------------
_NO_KERNEL = (
    "ABS", "BROADCAST_IN_DIM", "CBRT", "CLAMP", "COMPARE", "CONCATENATE", "CONVERT", "CONVOLUTION", "COSINE",
    "CUSTOM_CALL", "DIVIDE", "DOT_GENERAL", "DYNAMIC_SLICE", "DYNAMIC_UPDATE_SLICE", "EXPONENTIAL", "FLOOR",
    "IOTA", "LOG", "LOGISTIC", "NEGATE", "OR", "POWER", "REDUCE", "REMAINDER", "RESHAPE", "RSQRT", "SELECT",
    "SLICE", "SORT", "SUBTRACT", "TANH", "TRANSPOSE", "WHILE",
)
for _name in _NO_KERNEL:
    not_rebuilt(f"STABLEHLO_{_name}", f"STABLEHLO_{_name} has no kernel in the TFLite runtime (the schema marks it "
                "'no runtime support'), so the model cannot run in TFLite and no rebuild could be verified")


# -- helpers -----------------------------------------------------------------------------------------
def _is_q(t: Tensor | None) -> bool:
    return t is not None and t.is_quantized and t.type_name in ("INT8", "UINT8", "INT16", "INT32", "INT64")


def _q_problems(op: Operator, sg: Subgraph, indices: tuple[int, ...]) -> list[str]:
    """Per-axis quantized data tensors cannot be reinterpreted with one scale: name them."""
    out = []
    for i in indices:
        ti = op.inputs[i] if i >= 0 else op.outputs[-1 - i]
        if ti >= 0 and _is_q(sg.tensors[ti]) and sg.tensors[ti].quantization.scale.size != 1:
            out.append(f"per-axis quantized tensor {ti} ({sg.tensors[ti].name!r}) (only per-tensor is rebuilt)")
    return out


def _raw(x: Any, t: Tensor | None) -> Any:
    """A quantized tensor's stored integers (as float32, exact), else ``x`` itself."""
    if not _is_q(t):
        return x
    s, z = float(t.quantization.scale[0]), float(t.quantization.zero_point[0])
    return tf.round(x / s) + z


def _real(q: Any, t: Tensor) -> Any:
    """Stored integers read on tensor ``t``'s grid (identity for unquantized ``t``)."""
    if not _is_q(t):
        return q
    s, z = float(t.quantization.scale[0]), float(t.quantization.zero_point[0])
    return (q - z) * s


def _wrap(q: Any, t: Tensor) -> Any:
    """Raw integers carried as float wrapped into ``t``'s integer type (C++ narrowing)."""
    if not _is_q(t):
        return q
    lo, hi = integer_range(t.type_name)
    return tf.math.floormod(q - lo, float(hi - lo + 1)) + lo


def _scalar(x: Any) -> Any:
    return tf.reshape(x, [])


def _static_shape(ctx: OpContext, x: Any, what: str) -> list[int]:
    if x.shape.rank is None or any(d is None for d in x.shape.as_list()):
        raise ctx.unsupported(f"{what} needs a static shape, it has {x.shape}")
    return [int(d) for d in x.shape.as_list()]


def _longs(options: dict[str, Any], key: str) -> list[int]:
    return [int(v) for v in (options.get(key) or [])]


def _interior_pad(x: Any, axis: int, k: int, fill: Any) -> Any:
    """``k`` copies of ``fill`` between neighbours along ``axis`` (StableHLO interior padding)."""
    shape = x.shape.as_list()
    n = shape[axis]
    if k == 0 or n <= 1:
        return x
    y = tf.expand_dims(x, axis + 1)
    block = tf.fill(shape[:axis + 1] + [k] + shape[axis + 1:], fill)
    y = tf.concat([y, block], axis + 1)
    y = tf.reshape(y, shape[:axis] + [n * (k + 1)] + shape[axis + 1:])
    begin = [0] * len(shape)
    size = shape[:axis] + [(n - 1) * (k + 1) + 1] + shape[axis + 1:]
    return tf.slice(y, begin, size)


def _edge_pad(x: Any, low: list[int], high: list[int], fill: Any) -> Any:
    """Edge padding with ``fill``; negative amounts crop (StableHLO)."""
    if any(v > 0 for v in low + high):
        x = constant_pad(x, [[max(lo, 0), max(hi, 0)] for lo, hi in zip(low, high)], fill)
    if any(v < 0 for v in low + high):
        shape = x.shape.as_list()
        begin = [max(-lo, 0) for lo in low]
        size = [d - b - max(-hi, 0) for d, b, hi in zip(shape, begin, high)]
        x = tf.slice(x, begin, size)
    return x


def _rank_check(op: Operator, sg: Subgraph, lengths: dict[str, int]) -> list[str]:
    """Option vectors whose length does not match the operand rank."""
    out = []
    for key, want in lengths.items():
        got = len(op.options.get(key) or [])
        if got != want:
            out.append(f"{key} has {got} entries, the operand needs {want}")
    return out


# -- STABLEHLO_AND -------------------------------------------------------------------------------------
def _and_check(op: Operator, sg: Subgraph) -> list[str]:
    t = sg.tensors[op.inputs[0]]
    if t.type_name.startswith("FLOAT") or _is_q(t):
        return [f"STABLEHLO_AND on {t.type_name}{' quantized' if _is_q(t) else ''} data (the kernel takes "
                "booleans and plain integers)"]
    return []


@register("STABLEHLO_AND", check=_and_check)
def stablehlo_and(ctx: OpContext) -> list[Any]:
    """Logical AND of booleans, bitwise AND of integers (the kernel's ``&``)."""
    a, b = ctx.input(0), ctx.input(1)
    if a.dtype == tf.bool:
        return [tf.logical_and(a, b)]
    return [tf.bitwise.bitwise_and(a, b)]


# -- STABLEHLO_PAD -------------------------------------------------------------------------------------
def _pad_check(op: Operator, sg: Subgraph) -> list[str]:
    rank = len(sg.tensors[op.inputs[0]].shape)
    out = _rank_check(op, sg, {"edge_padding_low": rank, "edge_padding_high": rank, "interior_padding": rank})
    if any(v < 0 for v in _longs(op.options, "interior_padding")):
        out.append(f"negative interior_padding {_longs(op.options, 'interior_padding')}")
    return out + _q_problems(op, sg, (0, 1, -1))


@register("STABLEHLO_PAD", check=_pad_check)
def stablehlo_pad(ctx: OpContext) -> list[Any]:
    """Interior padding, then edge padding (negative = crop), all with the padding value (input 1).

    Without interior padding or crops this is one ``tf.pad`` (PAD/PADV2 on a round trip)."""
    o = ctx.options
    low, high = _longs(o, "edge_padding_low"), _longs(o, "edge_padding_high")
    interior = _longs(o, "interior_padding")
    x = _raw(ctx.input(0), ctx.in_tensor(0))
    fill = tf.cast(_scalar(_raw(ctx.input(1), ctx.in_tensor(1))), x.dtype)
    shape = _static_shape(ctx, x, "STABLEHLO_PAD")
    out_shape = [(n - 1) * (k + 1) + 1 + lo + hi for n, k, lo, hi in zip(shape, interior, low, high)]
    if any(d <= 0 for d in out_shape):  # the kernel then gives an all-zero shape
        return [tf.zeros([0] * len(shape), ctx.out_dtype())]
    for axis, k in enumerate(interior):
        x = _interior_pad(x, axis, k, fill)
    return [_real(_edge_pad(x, low, high, fill), ctx.out_tensor())]


# -- STABLEHLO_GATHER ----------------------------------------------------------------------------------
def _index_vectors(ctx: OpContext, indices: Any, ivd: int) -> Any:
    """Indices with the index vector moved last (an implicit trailing 1 when ``ivd == rank``)."""
    rank = indices.shape.rank
    if ivd == rank:
        return tf.expand_dims(indices, -1)
    if not 0 <= ivd < rank:
        raise ctx.unsupported(f"index_vector_dim {ivd} is outside the indices' rank {rank}")
    if ivd == rank - 1:
        return indices
    return tf.transpose(indices, [d for d in range(rank) if d != ivd] + [ivd])


def _implicit_index_vector(op: Operator, sg: Subgraph) -> list[str]:
    """``index_vector_dim == rank(indices)`` (an implicit trailing index vector of 1) is valid StableHLO,
    but the TFLite kernels then read the indices' shape out of bounds (``Dims(rank)``): undefined
    behaviour, nothing to reproduce."""
    ivd = int(op.options.get("index_vector_dim", 0))
    rank = len(sg.tensors[op.inputs[1]].shape)
    if ivd == rank:
        return [f"index_vector_dim {ivd} equals the indices' rank (an implicit index vector), which the TFLite "
                "kernel reads out of bounds"]
    if not 0 <= ivd < rank:
        return [f"index_vector_dim {ivd} is outside the indices' rank {rank}"]
    return []


def _gather_check(op: Operator, sg: Subgraph) -> list[str]:
    o = op.options
    rank = len(sg.tensors[op.inputs[0]].shape)
    out = _rank_check(op, sg, {"slice_sizes": rank}) + _implicit_index_vector(op, sg)
    sim = _longs(o, "start_index_map")
    if len(set(sim)) != len(sim) or any(not 0 <= d < rank for d in sim):
        out.append(f"start_index_map {sim} is not a set of operand dimensions")
    return out + _q_problems(op, sg, (0, -1))


@register("STABLEHLO_GATHER", check=_gather_check)
def stablehlo_gather(ctx: OpContext) -> list[Any]:
    """General StableHLO gather as one ``tf.gather_nd`` over the indexed dimensions.

    Start indices are clamped to ``[0, dim - slice_size]`` (as the kernel does). The dimensions not in
    ``start_index_map`` start at 0, so they are a static slice; the indexed ones are gathered with
    every offset of the slice window; then slice dimensions are put in operand order, the collapsed
    ones dropped, and the result transposed so offset dims sit at ``offset_dims``."""
    o = ctx.options
    x = _raw(ctx.input(0), ctx.in_tensor(0))
    shape = _static_shape(ctx, x, "STABLEHLO_GATHER")
    r = len(shape)
    sim = _longs(o, "start_index_map")
    sizes = _longs(o, "slice_sizes")
    collapsed = set(_longs(o, "collapsed_slice_dims"))
    offset_dims = _longs(o, "offset_dims")
    if any(not 0 <= s <= n for s, n in zip(sizes, shape)) or any(sizes[d] != 1 for d in collapsed):
        raise ctx.unsupported(f"slice_sizes {sizes} do not fit operand {shape} / collapsed dims {sorted(collapsed)}")
    idx = _index_vectors(ctx, ctx.input(1), int(o.get("index_vector_dim", 0)))
    batch = _static_shape(ctx, idx, "STABLEHLO_GATHER indices")[:-1]
    if idx.shape[-1] != len(sim):
        raise ctx.unsupported(f"index vectors have {idx.shape[-1]} entries, start_index_map {sim} names {len(sim)}")
    rest = [d for d in range(r) if d not in sim]
    if any(sizes[d] != shape[d] for d in rest):
        x = tf.slice(x, [0] * r, [sizes[d] if d in rest else shape[d] for d in range(r)])
    if sim != list(range(len(sim))):
        x = tf.transpose(x, sim + rest)
    limit = tf.constant([shape[d] - sizes[d] for d in sim], idx.dtype)
    starts = tf.clip_by_value(idx, tf.zeros_like(limit), limit)
    window = [sizes[d] for d in sim]
    grid = np.moveaxis(np.indices(window), 0, -1).astype(idx.dtype.as_numpy_dtype)
    coords = tf.reshape(starts, batch + [1] * len(sim) + [len(sim)]) + grid
    y = tf.gather_nd(x, coords)  # [batch..., sizes[sim]..., sizes[rest]...]
    nb = len(batch)
    order = sim + rest
    perm = list(range(nb)) + [nb + order.index(d) for d in range(r)]
    if perm != list(range(len(perm))):
        y = tf.transpose(y, perm)
    kept = [sizes[d] for d in range(r) if d not in collapsed]
    if len(kept) != r:
        y = tf.reshape(y, batch + kept)
    if len(offset_dims) != len(kept):
        raise ctx.unsupported(f"offset_dims {offset_dims} do not match the {len(kept)} uncollapsed slice dims")
    out_rank = nb + len(kept)
    batch_iter = iter(range(nb))
    perm = [nb + offset_dims.index(p) if p in offset_dims else next(batch_iter) for p in range(out_rank)]
    if perm != list(range(out_rank)):
        y = tf.transpose(y, perm)
    return [_real(y, ctx.out_tensor())]


# -- bodies of SCATTER / REDUCE_WINDOW -----------------------------------------------------------------
#: Body opcode -> computation, as the kernels recognise them (scatter: StableHLO opcodes only).
_SCATTER_BODIES = {"STABLEHLO_ADD": "add", "STABLEHLO_MULTIPLY": "mul", "STABLEHLO_MAXIMUM": "max",
                   "STABLEHLO_MINIMUM": "min"}
_WINDOW_BODIES = {"ADD": "add", "STABLEHLO_ADD": "add", "MUL": "mul", "STABLEHLO_MULTIPLY": "mul",
                  "MAXIMUM": "max", "STABLEHLO_MAXIMUM": "max", "MINIMUM": "min", "STABLEHLO_MINIMUM": "min",
                  "LOGICAL_AND": "all", "STABLEHLO_AND": "all", "LOGICAL_OR": "any", "STABLEHLO_OR": "any"}


def _body_kind(op: Operator, sg: Subgraph, key: str, table: dict[str, str], empty: str | None,
               model_subgraphs: Any) -> tuple[str | None, str | None]:
    """(computation, problem) for the body subgraph named by option ``key``."""
    idx = op.options.get(key)
    if idx is None or not 0 <= int(idx) < len(model_subgraphs) or int(idx) == sg.index:
        return None, f"{key} {idx!r} does not name another subgraph"
    body = model_subgraphs[int(idx)]
    if not body.operators:
        if empty is None:
            return None, f"body subgraph {idx} is empty (the kernel needs exactly one operator)"
        return empty, None
    if len(body.operators) != 1:
        return None, (f"body subgraph {idx} has {len(body.operators)} operators (the kernel recognises only a "
                      "single one)")
    name = body.operators[0].key
    if name not in table:
        return None, f"body subgraph {idx} computes {name} (the kernel recognises only {sorted(table)})"
    return table[name], None


# -- STABLEHLO_SCATTER ---------------------------------------------------------------------------------
def _scatter_check(op: Operator, sg: Subgraph) -> list[str]:
    o = op.options
    rank = len(sg.tensors[op.inputs[0]].shape)
    out = _implicit_index_vector(op, sg)
    sdod = _longs(o, "scatter_dims_to_operand_dims")
    if len(set(sdod)) != len(sdod) or any(not 0 <= d < rank for d in sdod):
        out.append(f"scatter_dims_to_operand_dims {sdod} is not a set of operand dimensions")
    if len(_longs(o, "update_window_dims")) + len(_longs(o, "inserted_window_dims")) != rank:
        out.append(f"update_window_dims {_longs(o, 'update_window_dims')} and inserted_window_dims "
                   f"{_longs(o, 'inserted_window_dims')} do not cover the operand's {rank} dimensions")
    return out + _q_problems(op, sg, (0, 2, -1))


def _scatter_body_check(op: Operator, sg: Subgraph, model: Any) -> list[str]:
    _, problem = _body_kind(op, sg, "update_computation_subgraph_index", _SCATTER_BODIES, "update", model.subgraphs)
    return [problem] if problem else []


@register("STABLEHLO_SCATTER", check=_scatter_check, model_check=_scatter_body_check)
def stablehlo_scatter(ctx: OpContext) -> list[Any]:
    """General StableHLO scatter: every update element gets its full operand coordinate (start index
    from ``scatter_dims_to_operand_dims`` + window offset with ``inserted_window_dims`` as zeros), those
    outside the operand are dropped (the kernel's choice), and the body combines them:

    * replace (empty body): the last update in row-major order wins, as in the kernel's loop — the
      winner per element is found with ``unsorted_segment_max`` over update positions;
    * add / max / min: ``tf.tensor_scatter_nd_{add,max,min}``; mul: ``unsorted_segment_prod``.

    Dropped updates go to one extra trailing element that is cut off afterwards."""
    o = ctx.options
    kind, problem = _body_kind(ctx.op, ctx.subgraph, "update_computation_subgraph_index", _SCATTER_BODIES,
                               "update", ctx.builder.model.subgraphs)
    if problem:
        raise ctx.unsupported(problem)
    xt, ut, ot = ctx.in_tensor(0), ctx.in_tensor(2), ctx.out_tensor()
    x = _raw(ctx.input(0), xt)
    upd = tf.cast(_raw(ctx.input(2), ut), x.dtype)
    shape = _static_shape(ctx, x, "STABLEHLO_SCATTER")
    ushape = _static_shape(ctx, upd, "STABLEHLO_SCATTER updates")
    r, ur = len(shape), len(ushape)
    uwd, iwd = _longs(o, "update_window_dims"), _longs(o, "inserted_window_dims")
    sdod = _longs(o, "scatter_dims_to_operand_dims")
    usd = [d for d in range(ur) if d not in uwd]
    idx = _index_vectors(ctx, ctx.input(1), int(o.get("index_vector_dim", 0)))
    idx = idx if idx.dtype == tf.int32 else tf.cast(idx, tf.int32)  # TFLite's segment ops take int32
    k = len(sdod)
    if idx.shape[-1] != k or idx.shape.rank - 1 != len(usd):
        raise ctx.unsupported(f"indices {ctx.input(1).shape} do not fit updates {ushape} with update_window_dims "
                              f"{uwd} and scatter_dims_to_operand_dims {sdod}")
    # Full start coordinates: index vector entries at their operand dims, 0 elsewhere.
    idx = tf.concat([idx, tf.zeros_like(idx[..., :1])], -1)
    starts = tf.gather(idx, [sdod.index(d) if d in sdod else k for d in range(r)], axis=-1)
    if usd + uwd != list(range(ur)):
        upd = tf.transpose(upd, usd + uwd)
    window = [ushape[d] for d in uwd]
    wod = [d for d in range(r) if d not in iwd]
    grid = np.zeros(window + [r], np.int32)
    grid[..., wod] = np.moveaxis(np.indices(window), 0, -1)
    coords = tf.reshape(starts, [ushape[d] for d in usd] + [1] * len(window) + [r]) + grid
    coords = tf.reshape(coords, [-1, r])
    upd = tf.reshape(upd, [-1])
    size = int(np.prod(shape))
    valid = tf.reduce_all(tf.logical_and(coords >= 0, coords < tf.constant(shape, tf.int32)), axis=-1)
    strides = np.cumprod([1] + shape[::-1])[:-1][::-1].astype(np.int32)
    flat = tf.where(valid, tf.reduce_sum(coords * strides, -1), tf.constant(size, tf.int32))
    base = tf.concat([tf.reshape(x, [-1]), tf.zeros([1], x.dtype)], 0)
    if kind == "update":
        pos = tf.where(valid, tf.range(tf.size(flat)), tf.constant(-1, tf.int32))
        winner = tf.math.unsorted_segment_max(pos, flat, size + 1)
        has = winner >= 0
        y = tf.where(has, tf.gather(upd, tf.maximum(winner, 0)), base)
    elif kind == "mul":
        y = base * tf.math.unsorted_segment_prod(upd, flat, size + 1)
    else:
        fn = {"add": tf.tensor_scatter_nd_add, "max": tf.tensor_scatter_nd_max, "min": tf.tensor_scatter_nd_min}[kind]
        y = fn(base, flat[:, None], upd)
    y = tf.reshape(y[:size], shape)
    if kind in ("add", "mul"):
        y = _wrap(y, ot)
    return [_real(y, ot)]


# -- STABLEHLO_REDUCE_WINDOW ---------------------------------------------------------------------------
def _reduce_window_check(op: Operator, sg: Subgraph) -> list[str]:
    rank = len(sg.tensors[op.inputs[0]].shape)
    keys = ("window_dimensions", "window_strides", "base_dilations", "window_dilations")
    out = _rank_check(op, sg, {**dict.fromkeys(keys, rank), "padding": 2 * rank})
    for key in keys:
        if any(v <= 0 for v in _longs(op.options, key)):
            out.append(f"{key} {_longs(op.options, key)} must be positive")
    t = sg.tensors[op.inputs[0]]
    out += _q_problems(op, sg, (0, 1, -1))
    return out + (
        [f"STABLEHLO_REDUCE_WINDOW on {t.type_name} (the kernel has no such type)"]
        if t.type_name in ("FLOAT16", "BFLOAT16", "UINT16", "UINT32", "UINT64", "STRING") else [])


def _combine(kind: str, a: Any, b: Any) -> Any:
    if kind == "add":
        return a + b
    if kind == "mul":
        return a * b
    if kind == "max":
        return tf.maximum(a, b)
    if kind == "min":
        return tf.minimum(a, b)
    if kind == "all":
        return tf.logical_and(a, b)
    return tf.logical_or(a, b)


def _reduce_window_body_check(op: Operator, sg: Subgraph, model: Any) -> list[str]:
    _, problem = _body_kind(op, sg, "body_subgraph_index", _WINDOW_BODIES, None, model.subgraphs)
    return [problem] if problem else []


@register("STABLEHLO_REDUCE_WINDOW", check=_reduce_window_check, model_check=_reduce_window_body_check)
def stablehlo_reduce_window(ctx: OpContext) -> list[Any]:
    """Base dilation and edge padding/cropping with the init value (input 1), then a window reduction.

    The window is a box and the body associative and commutative, so the reduction runs one axis at a
    time: ``window`` strided slices per axis combined with the body (``sum(window)`` slices in all,
    not their product), and the init value joins once at the end. A logical body (AND/OR) applies
    C++ ``&&``/``||`` to the element type, giving 0/1 for integers."""
    o = ctx.options
    kind, problem = _body_kind(ctx.op, ctx.subgraph, "body_subgraph_index", _WINDOW_BODIES, None,
                               ctx.builder.model.subgraphs)
    if problem:
        raise ctx.unsupported(problem)
    ot = ctx.out_tensor()
    x = _raw(ctx.input(0), ctx.in_tensor(0))
    init = tf.cast(_scalar(_raw(ctx.input(1), ctx.in_tensor(1))), x.dtype)
    shape = _static_shape(ctx, x, "STABLEHLO_REDUCE_WINDOW")
    r = len(shape)
    wdims, strides = _longs(o, "window_dimensions"), _longs(o, "window_strides")
    base_dil, win_dil = _longs(o, "base_dilations"), _longs(o, "window_dilations")
    pad = _longs(o, "padding")
    out_dtype = x.dtype
    if kind in ("all", "any"):
        x = x if x.dtype == tf.bool else tf.not_equal(x, tf.zeros_like(x))
        init = init if init.dtype == tf.bool else tf.not_equal(init, tf.zeros_like(init))
    for axis, d in enumerate(base_dil):
        x = _interior_pad(x, axis, d - 1, init)
    x = _edge_pad(x, pad[0::2], pad[1::2], init)
    padded = x.shape.as_list()
    eff = [(w - 1) * wd + 1 for w, wd in zip(wdims, win_dil)]
    out_shape = [0 if n < e else (n - e) // s + 1 for n, e, s in zip(padded, eff, strides)]
    if any(d == 0 for d in out_shape) or any(d <= 0 for d in padded):
        y = tf.zeros(out_shape, x.dtype)
    else:
        for axis in range(r):
            w, s, wd, n_out = wdims[axis], strides[axis], win_dil[axis], out_shape[axis]
            if w == 1 and s == 1:
                continue
            acc = None
            for k in range(w):
                begin = [0] * r
                end = list(x.shape.as_list())
                step = [1] * r
                begin[axis], end[axis], step[axis] = k * wd, k * wd + (n_out - 1) * s + 1, s
                part = tf.strided_slice(x, begin, end, step)
                acc = part if acc is None else _combine(kind, acc, part)
            x = acc
        y = _combine(kind, tf.broadcast_to(init, x.shape), x)
    if y.dtype != out_dtype:
        y = tf.cast(y, out_dtype)
    if kind in ("add", "mul"):
        y = _wrap(y, ot)
    return [_real(y, ot)]


# -- STABLEHLO_CASE ------------------------------------------------------------------------------------
def _case_check(op: Operator, sg: Subgraph) -> list[str]:
    branches = [int(b) for b in (op.options.get("branch_subgraph_indices") or [])]
    if not branches:
        return ["STABLEHLO_CASE has no branch_subgraph_indices"]
    if sg.index in branches:
        return [f"STABLEHLO_CASE branch {sg.index} is the subgraph the op is in (infinite recursion)"]
    return []


@register("STABLEHLO_CASE", check=_case_check)
def stablehlo_case(ctx: OpContext) -> list[Any]:
    """``tf.switch_case`` over the branch subgraphs, given inputs 1.. of the op. An index outside
    ``[0, n)`` runs the last branch (kernel and spec), which ``tf.switch_case`` does natively."""
    branches = [int(b) for b in (ctx.options.get("branch_subgraph_indices") or [])]
    model = ctx.builder.model
    args = [ctx.input(i) for i in range(1, ctx.num_inputs)]
    dtypes = [ctx.out_dtype(k) for k in range(ctx.num_outputs)]
    for b in branches:
        if not 0 <= b < len(model.subgraphs):
            raise ctx.unsupported(f"branch subgraph {b} does not exist")
        sub = model.subgraphs[b]
        if len(sub.inputs) != len(args) or len(sub.outputs) != ctx.num_outputs:
            raise ctx.unsupported(f"branch subgraph {b} takes {len(sub.inputs)} inputs / gives {len(sub.outputs)} "
                                  f"outputs; the op passes {len(args)} / expects {ctx.num_outputs}")

    def branch(b: int) -> Any:
        def fn() -> list[Any]:
            outs = ctx.run_subgraph(b, args)
            return [v if v.dtype == d else tf.cast(v, d) for v, d in zip(outs, dtypes)]

        return fn

    index = tf.reshape(ctx.input(0), [])
    n = len(branches)
    index = tf.where(tf.logical_or(index < 0, index >= n), tf.constant(n - 1, index.dtype), index)
    out = tf.switch_case(index, [branch(b) for b in branches])
    return list(out) if isinstance(out, (list, tuple)) else [out]


# -- STABLEHLO_RNG_BIT_GENERATOR -------------------------------------------------------------------------
_MASK32 = 0xFFFFFFFF


def _u32(x: Any) -> Any:
    return tf.cast(tf.bitwise.bitwise_and(x, tf.constant(_MASK32, tf.uint64)), tf.uint32)


def _rotl(x: Any, r: int) -> Any:
    return tf.bitwise.bitwise_or(tf.bitwise.left_shift(x, tf.constant(r, tf.uint32)),
                                 tf.bitwise.right_shift(x, tf.constant(32 - r, tf.uint32)))


def _philox(k0: Any, k1: Any, c: list[Any]) -> list[Any]:
    """Philox4x32-10 (Salmon et al. 2011) on uint32 tensors, as ``tflite::rng::Philox4x32``."""
    for _ in range(10):
        p0 = tf.cast(c[0], tf.uint64) * tf.constant(0xD2511F53, tf.uint64)
        p1 = tf.cast(c[2], tf.uint64) * tf.constant(0xCD9E8D57, tf.uint64)
        hi0, lo0 = _u32(tf.bitwise.right_shift(p0, tf.constant(32, tf.uint64))), _u32(p0)
        hi1, lo1 = _u32(tf.bitwise.right_shift(p1, tf.constant(32, tf.uint64))), _u32(p1)
        c = [tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(hi1, c[1]), k0), lo1,
             tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(hi0, c[3]), k1), lo0]
        k0 = k0 + tf.constant(0x9E3779B9, tf.uint32)
        k1 = k1 + tf.constant(0xBB67AE85, tf.uint32)
    return c


def _threefry(k0: Any, k1: Any, c: list[Any]) -> list[Any]:
    """Threefry2x32-20 (Salmon et al. 2011) on uint32 tensors, as ``tflite::rng::Threefry2x32``."""
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    k2 = tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(k0, k1), tf.constant(0x1BD11BDA, tf.uint32))
    x0, x1 = c[0] + k0, c[1] + k1
    for b, (r, ks0, ks1) in enumerate(((0, k1, k2), (1, k2, k0), (0, k0, k1), (1, k1, k2), (0, k2, k0)), 1):
        for rot in rotations[r]:
            x0 = x0 + x1
            x1 = tf.bitwise.bitwise_xor(_rotl(x1, rot), x0)
        x0 = x0 + ks0
        x1 = x1 + ks1 + tf.constant(b, tf.uint32)
    return [x0, x1]


def _rng_check(op: Operator, sg: Subgraph) -> list[str]:
    state, out = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[1]]
    algo = op.options.get("algorithm", "DEFAULT")
    problems = []
    if state.type_name != "UINT64" or len(state.shape) != 1:
        problems.append(f"initial state of type {state.type_name} and shape {list(state.shape)} (the kernel needs a "
                        "1-D UINT64 tensor)")
    elif state.shape[0] not in ((2,) if algo == "THREEFRY" else (2, 3)):
        problems.append(f"{algo} state of {state.shape[0]} words")
    if out.type_name not in ("INT32", "UINT32", "INT64", "UINT64"):
        problems.append(f"output type {out.type_name} (the kernel writes INT32/UINT32/INT64/UINT64)")
    if algo not in ("DEFAULT", "PHILOX", "THREEFRY"):
        problems.append(f"algorithm {algo!r}")
    if any(d < 0 for d in out.shape_signature):
        problems.append("an output of dynamic shape (the kernel needs a static one)")
    return problems


@register("STABLEHLO_RNG_BIT_GENERATOR", check=_rng_check)
def stablehlo_rng_bit_generator(ctx: OpContext) -> list[Any]:
    """Counter-based random bits from the state input, bit for bit as the kernel: key = state words
    0-1, counter = words 2-3 (Philox also words 4-5 of a 3-word state, else the key again); one
    Philox4x32 / Threefry2x32 block per 4 / 2 output words, counting up the low counter word with a
    carry into the next; the new state is the key and the advanced counter words. DEFAULT is Philox.
    """
    algo = ctx.options.get("algorithm", "DEFAULT")
    state = ctx.input(0)
    n_state = ctx.in_tensor(0).shape[0]
    out_t = ctx.out_tensor(1)
    n = int(np.prod(out_t.shape)) * (2 if out_t.type_name in ("INT64", "UINT64") else 1)
    words = tf.reshape(tf.stack([_u32(state), _u32(tf.bitwise.right_shift(state, tf.constant(32, tf.uint64)))],
                                -1), [-1])
    k0, k1 = words[0], words[1]
    width = 2 if algo == "THREEFRY" else 4
    blocks = -(-n // width)
    c = tf.cast(words[2], tf.uint64) + tf.constant(np.arange(blocks + 1, dtype=np.uint64))
    c0 = _u32(c)
    c1 = words[3] + _u32(tf.bitwise.right_shift(c, tf.constant(32, tf.uint64)))
    if algo == "THREEFRY":
        lanes = _threefry(k0, k1, [c0[:blocks], c1[:blocks]])
    else:
        c2, c3 = (words[4], words[5]) if n_state == 3 else (k0, k1)
        lanes = _philox(k0, k1, [c0[:blocks], c1[:blocks], tf.fill([blocks], c2), tf.fill([blocks], c3)])
    bits = tf.reshape(tf.stack(lanes, -1), [-1])[:n]
    if out_t.type_name in ("INT64", "UINT64"):
        pairs = tf.cast(tf.reshape(bits, [-1, 2]), tf.uint64)
        bits = tf.bitwise.bitwise_or(pairs[:, 0], tf.bitwise.left_shift(pairs[:, 1], tf.constant(32, tf.uint64)))
    out = tf.reshape(tf.bitcast(bits, ctx.out_dtype(1)) if bits.dtype != ctx.out_dtype(1) else bits,
                     list(out_t.shape))
    new = tf.cast(tf.stack([k0, k1, c0[blocks], c1[blocks]]), tf.uint64)
    new_state = tf.bitwise.bitwise_or(new[0::2], tf.bitwise.left_shift(new[1::2], tf.constant(32, tf.uint64)))
    if n_state == 3:
        new_state = tf.concat([new_state, state[2:]], 0)
    return [new_state, out]
