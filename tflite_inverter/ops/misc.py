"""Ops of no other family: non-max suppression, segment reductions, bucketize, 2-D real FFT, random
sampling, hash tables, and DENSIFY (defined in :mod:`.sparse`, imported here so it registers).

Random ops: TFLite's RANDOM_STANDARD_NORMAL / RANDOM_UNIFORM / MULTINOMIAL use the same Philox
generator and distributions as TensorFlow's stateful ``RandomStandardNormal`` / ``RandomUniform`` /
``Multinomial`` kernels, so with a non-zero ``seed``/``seed2`` the rebuilt op draws the very same
numbers on its first run (later runs continue each kernel's own stream). With both seeds 0 both sides
seed themselves nondeterministically, so only the distribution can match; tests check it
statistically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph
from . import sparse  # noqa: F401  (registers DENSIFY)
from .context import OpContext
from .registry import constant_input_check, register


# -- non-max suppression ------------------------------------------------------------------------------
def _nms_check(op: Operator, sg: Subgraph) -> list[str]:
    if len(op.inputs) < 5 or min(op.inputs[:5]) < 0:
        return ["needs boxes, scores, max_output_size, iou_threshold and score_threshold"]
    t = sg.tensors[op.inputs[3]]
    if t.is_constant and t.sparsity is None:
        thr = float(np.asarray(t.data()).reshape(-1)[0]) if t.type_name in ("FLOAT32",) else None
        if thr is not None and not 0.0 <= thr <= 1.0:
            return [f"iou_threshold {thr} is outside [0, 1] (TFLite's kernel then selects boxes repeatedly or "
                    "none; TensorFlow rejects it)"]
    if not sg.tensors[op.inputs[2]].is_constant:
        return ["max_output_size must be a constant (it sizes the padded output)"]
    return []


def _nms(ctx: OpContext, soft: bool) -> tuple[Any, Any, Any]:
    """TFLite's NMS through TF's kernel. TFLite drops a candidate whose IoU with a selected box is
    ``>= iou_threshold``; TF drops it when ``> iou_threshold``; the threshold is therefore lowered to
    the next float32 below it (IoUs are float32, so ``> prev(t)`` is ``>= t``); at 0 every later box
    is dropped, so at most one is kept. Scores must be ``> score_threshold`` on both sides. Equal
    scores: TF visits the lower index first, TFLite's heap order is unspecified."""
    boxes = tf.cast(ctx.input(0), tf.float32)
    scores = tf.cast(ctx.input(1), tf.float32)
    max_out = int(np.asarray(ctx.const(2)).reshape(-1)[0])
    iou = tf.reshape(tf.cast(ctx.input(3), tf.float32), [])
    score_thr = tf.reshape(tf.cast(ctx.input(4), tf.float32), [])
    lowered = tf.maximum(tf.math.nextafter(iou, tf.constant(-np.inf, tf.float32)), 0.0)
    max_out = max(max_out, 0)
    if soft:
        sigma = tf.reshape(tf.cast(ctx.input(5), tf.float32), [])
        sel, sel_scores, n = tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes, scores=scores, max_output_size=max_out, iou_threshold=lowered,
            score_threshold=score_thr, soft_nms_sigma=sigma, pad_to_max_output_size=True)
    else:
        sel, n = tf.raw_ops.NonMaxSuppressionV4(
            boxes=boxes, scores=scores, max_output_size=max_out, iou_threshold=lowered,
            score_threshold=score_thr, pad_to_max_output_size=True)
        sel_scores = None
    n = tf.where(iou <= 0.0, tf.minimum(n, 1), n)
    sel, n = _repeat_degenerate(boxes, scores, score_thr, iou, sel, n, max_out)
    keep = tf.range(max_out) < n
    sel = tf.where(keep, sel, tf.zeros_like(sel))
    if sel_scores is not None:
        sel_scores = tf.where(keep, sel_scores, tf.zeros_like(sel_scores))
    return sel, sel_scores, n


def _repeat_degenerate(boxes: Any, scores: Any, score_thr: Any, iou: Any, sel: Any, n: Any, max_out: int
                       ) -> tuple[Any, Any]:
    """TFLite's NMS pushes a selected candidate back into its queue; popped again it meets only
    itself, which suppresses it (IoU 1) unless the box has no area (IoU 0): then it is selected again
    and again until ``min(#scores > threshold, max_output_size)`` slots are full."""
    b = tf.gather(boxes, sel)
    area = (tf.abs(b[:, 2] - b[:, 0])) * (tf.abs(b[:, 3] - b[:, 1]))
    pos = tf.range(max_out)
    degenerate = (area <= 0.0) & (pos < n) & (iou > 0.0)
    first = tf.reduce_min(tf.where(degenerate, pos, max_out))
    total = tf.minimum(tf.reduce_sum(tf.cast(scores > score_thr, tf.int32)), max_out)
    hit = first < max_out
    rep = tf.gather(sel, tf.minimum(first, max(max_out - 1, 0))) if max_out else tf.zeros([], sel.dtype)
    sel = tf.where(hit & (pos > first), tf.fill(tf.shape(sel), rep), sel)
    return sel, tf.where(hit, total, n)


@register("NON_MAX_SUPPRESSION_V4", check=_nms_check)
def non_max_suppression_v4(ctx: OpContext) -> list[Any]:
    sel, _, n = _nms(ctx, soft=False)
    return [sel, n]


def _nms5_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = _nms_check(op, sg)
    if len(op.inputs) < 6 or op.inputs[5] < 0:
        return problems + ["needs soft_nms_sigma"]
    t = sg.tensors[op.inputs[5]]
    if not t.is_constant:
        return problems + ["soft_nms_sigma must be a constant (soft and hard NMS differ in TFLite)"]
    if float(np.asarray(t.data()).reshape(-1)[0]) > 0.0:
        problems.append("soft NMS (soft_nms_sigma > 0): TFLite applies the IoU hard threshold on top of the "
                        "Gaussian decay, TensorFlow's kernel only the decay")
    return problems


@register("NON_MAX_SUPPRESSION_V5", check=_nms5_check)
def non_max_suppression_v5(ctx: OpContext) -> list[Any]:
    """Hard NMS (``soft_nms_sigma`` 0) that also returns the selected scores."""
    sel, _, n = _nms(ctx, soft=False)
    scores = tf.gather(tf.cast(ctx.input(1), tf.float32), sel)  # hard NMS leaves scores as they are
    scores = tf.where(tf.range(tf.size(sel)) < n, scores, tf.zeros_like(scores))
    return [sel, scores, n]


# -- segment reductions ----------------------------------------------------------------------------------
@register("SEGMENT_SUM")
def segment_sum(ctx: OpContext) -> list[Any]:
    """Sorted segment ids; ``max(id) + 1`` output rows, rows of absent ids are 0 (as in TF)."""
    return [tf.math.segment_sum(ctx.input(0), ctx.input(1))]


def _unsorted(fn_name: str) -> Any:
    def rebuild(ctx: OpContext) -> list[Any]:
        n = ctx.const(2)
        num = int(np.asarray(n).reshape(-1)[0]) if n is not None else tf.reshape(ctx.input(2), [])
        return [getattr(tf.math, fn_name)(ctx.input(0), ctx.input(1), num)]

    rebuild.__doc__ = (f"``tf.math.{fn_name}``: empty segments hold the reduction's identity (0, 1, the "
                       "type's lowest / highest value) in both TFLite and TF.")
    return rebuild


for _name in ("UNSORTED_SEGMENT_SUM", "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_MIN"):
    register(_name)(_unsorted(_name.lower()))


# -- bucketize, FFT ---------------------------------------------------------------------------------------
def _bucketize_check(op: Operator, sg: Subgraph) -> list[str]:
    b = op.options.get("boundaries")
    if b is None:
        return ["BucketizeOptions has no boundaries"]
    b = [float(v) for v in b]
    return [] if all(x <= y for x, y in zip(b, b[1:])) else ["boundaries are not sorted"]


@register("BUCKETIZE", check=_bucketize_check)
def bucketize(ctx: OpContext) -> list[Any]:
    """Index of the first boundary greater than the value (``upper_bound``) on both sides."""
    b = [float(v) for v in ctx.options.get("boundaries") or []]
    return [tf.raw_ops.Bucketize(input=ctx.input(0), boundaries=b)]


@register("RFFT2D", check=constant_input_check(1, "fft_length must be a constant"))
def rfft2d(ctx: OpContext) -> list[Any]:
    """2-D real FFT over the innermost two axes (input cropped / zero-padded to ``fft_length``)."""
    n = [int(v) for v in np.asarray(ctx.const(1)).reshape(-1)]
    return [tf.signal.rfft2d(tf.cast(ctx.input(0), tf.float32), fft_length=n)]


# -- random -----------------------------------------------------------------------------------------------
def _seeds(ctx: OpContext) -> tuple[int, int]:
    o = ctx.options
    return int(o.get("seed", 0) or 0), int(o.get("seed2", 0) or 0)


def _shape_arg(ctx: OpContext) -> Any:
    c = ctx.const(0)
    return tf.constant(np.asarray(c).astype(np.int32)) if c is not None else ctx.input(0)


@register("RANDOM_STANDARD_NORMAL")
def random_standard_normal(ctx: OpContext) -> list[Any]:
    seed, seed2 = _seeds(ctx)
    return [tf.raw_ops.RandomStandardNormal(shape=_shape_arg(ctx), dtype=ctx.out_dtype(0), seed=seed, seed2=seed2)]


@register("RANDOM_UNIFORM")
def random_uniform(ctx: OpContext) -> list[Any]:
    seed, seed2 = _seeds(ctx)
    return [tf.raw_ops.RandomUniform(shape=_shape_arg(ctx), dtype=ctx.out_dtype(0), seed=seed, seed2=seed2)]


@register("MULTINOMIAL")
def multinomial(ctx: OpContext) -> list[Any]:
    seed, seed2 = _seeds(ctx)
    n = ctx.const(1)
    num = tf.constant(int(np.asarray(n).reshape(-1)[0]), tf.int32) if n is not None else \
        tf.reshape(tf.cast(ctx.input(1), tf.int32), [])
    return [tf.raw_ops.Multinomial(logits=tf.cast(ctx.input(0), tf.float32), num_samples=num, seed=seed,
                                   seed2=seed2, output_dtype=ctx.out_dtype(0))]


# -- hash tables --------------------------------------------------------------------------------------------
#: The key/value type pairs TFLite's HASHTABLE kernel supports.
_TABLE_TYPES = {("INT64", "STRING"), ("STRING", "INT64")}


def _table_check(op: Operator, sg: Subgraph) -> list[str]:
    pair = (op.options.get("key_dtype"), op.options.get("value_dtype"))
    if pair not in _TABLE_TYPES:
        return [f"key/value types {pair} (TFLite's hash table supports int64->string and string->int64)"]
    return []


def _new_table(key_dtype: Any, value_dtype: Any) -> Any:
    """Module state behind one ``table_id`` (a ``tf.Module`` so SavedModel tracks it): a mutable TF
    hash table and TFLite's "imported" flag."""
    state = tf.Module(name="tflite_hashtable")
    default = "" if value_dtype == tf.string else 0
    state.table = tf.lookup.experimental.MutableHashTable(key_dtype, value_dtype, default)
    state.imported = tf.Variable(False, trainable=False, name="hashtable_imported")
    return state


def _table_key(table_id: int) -> tuple[str, int]:
    return ("tflite_hashtable", table_id)


@register("HASHTABLE", check=_table_check)
def hashtable(ctx: OpContext) -> list[Any]:
    """One table per ``table_id``, shared by every subgraph (as TFLite's resource map shares it); the
    RESOURCE tensor carries the TF table's handle."""
    o = ctx.options
    kd = tf.string if o["key_dtype"] == "STRING" else tf.int64
    vd = tf.string if o["value_dtype"] == "STRING" else tf.int64
    table = ctx.builder.resource(_table_key(int(o.get("table_id", 0))), lambda: _new_table(kd, vd))
    return [table.table.resource_handle]


def _owning_table(ctx: OpContext) -> Any:
    ti = ctx.op.inputs[0]
    for op in ctx.subgraph.operators:
        if op.name == "HASHTABLE" and ti in op.outputs:
            return ctx.builder.resource(_table_key(int(op.options.get("table_id", 0))), lambda: None)
    raise ctx.unsupported("the table handle does not come from a HASHTABLE op of the same subgraph")


@register("HASHTABLE_FIND")
def hashtable_find(ctx: OpContext) -> list[Any]:
    default = tf.reshape(ctx.input(2), [])
    return [tf.raw_ops.LookupTableFindV2(table_handle=ctx.input(0), keys=ctx.input(1), default_value=default)]


@register("HASHTABLE_SIZE")
def hashtable_size(ctx: OpContext) -> list[Any]:
    return [tf.reshape(tf.raw_ops.LookupTableSizeV2(table_handle=ctx.input(0)), [1])]


@register("HASHTABLE_IMPORT")
def hashtable_import(ctx: OpContext) -> list[Any]:
    """TFLite imports once (later imports are ignored) and keeps the first value of a repeated key;
    inserting the pairs in reverse order keeps the first one."""
    table = _owning_table(ctx)
    keys = tf.reverse(tf.reshape(ctx.input(1), [-1]), [0])
    values = tf.reverse(tf.reshape(ctx.input(2), [-1]), [0])

    def insert() -> Any:
        with tf.control_dependencies([tf.raw_ops.LookupTableInsertV2(table_handle=ctx.input(0), keys=keys,
                                                                     values=values)]):
            return table.imported.assign(True).op

    tf.cond(table.imported, tf.no_op, insert)
    return []
