"""Legacy builtin ops: BITCAST, FAKE_QUANT, LSH_PROJECTION, SKIP_GRAM, HASHTABLE_LOOKUP,
EMBEDDING_LOOKUP_SPARSE (and CONCAT_EMBEDDINGS, which is deliberately not rebuilt).

Most of these come from TFLite's early text models (LSH projections of hashed n-grams looked up in
embedding tables); today's converter emits only BITCAST (from ``tf.bitcast``). None of the others has
a TensorFlow op that the converter turns back into the same TFLite op, so their rebuilds reproduce
the kernels' exact semantics with plain TensorFlow ops instead (a round trip gives different ops).
"""

from __future__ import annotations

from typing import Any

from .._tf import tf
from ..model.ir import Operator, Subgraph, Tensor
from . import common
from .context import OpContext, is_real_quantized, tf_dtype
from .registry import not_rebuilt, register

not_rebuilt("CONCAT_EMBEDDINGS", "the TFLite runtime has no kernel for CONCAT_EMBEDDINGS (the schema keeps the "
            "op code but no interpreter registers it), so no rebuild could be verified")

#: Tensor types ``tf.bitcast`` reinterprets (bool, string, resource and sub-byte types it cannot).
_BITCAST_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16", "INT8", "UINT8", "INT16", "UINT16", "INT32",
                  "UINT32", "INT64", "UINT64", "COMPLEX64", "COMPLEX128")


def _real_quantized(t: Tensor | None) -> bool:
    """Carried as float32 real values inside the rebuilt graph."""

    return t is not None and is_real_quantized(t)


def _per_tensor(t: Tensor | None) -> bool:
    return not _real_quantized(t) or t.quantization.scale.size == 1


def _raw(x: Any, t: Tensor) -> Any:
    """The integer bytes TFLite sees for a value: quantized tensors go back to their integer grid."""
    return common.quantize_to_int(x, t) if _real_quantized(t) else x


# -- BITCAST ---------------------------------------------------------------------------------------
def _bitcast_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = []
    for what, t in (("input", sg.input_of(op, 0)), ("output", sg.output_of(op, 0))):
        if t is None:
            problems.append(f"BITCAST needs an {what}")
        elif t.type_name not in _BITCAST_TYPES:
            problems.append(f"BITCAST {what} type {t.type_name} cannot be reinterpreted by tf.bitcast")
        elif not _per_tensor(t):
            problems.append(f"BITCAST {what} is quantized per channel")
    return problems


@register("BITCAST", check=_bitcast_check)
def bitcast(ctx: OpContext) -> list[Any]:
    """``tf.bitcast``: the same shape rules as TFLite (a wider input gains a last dimension, a
    narrower one loses it) and the same little-endian byte copy. Quantized tensors are reinterpreted
    through their integer values, as the kernel copies raw bytes."""

    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    y = tf.bitcast(_raw(ctx.input(0), in_t), tf_dtype(out_t.type_name))
    return [common.dequantize_int(y, out_t) if _real_quantized(out_t) else y]


# -- FAKE_QUANT ------------------------------------------------------------------------------------
def _fake_quant_check(op: Operator, sg: Subgraph) -> list[str]:
    o = op.options
    problems = []
    bits = int(o.get("num_bits", 0))
    if not 2 <= bits <= 16:
        problems.append(f"FAKE_QUANT num_bits {bits} is outside [2, 16]")
    lo, hi = float(o.get("min", 0.0)), float(o.get("max", 0.0))
    if not lo < hi:
        problems.append(f"FAKE_QUANT min {lo} is not below max {hi}")
    t = sg.input_of(op, 0)
    if t is None or t.type_name != "FLOAT32":
        problems.append(f"FAKE_QUANT input must be FLOAT32, not {t.type_name if t else 'absent'}")
    return problems


@register("FAKE_QUANT", check=_fake_quant_check)
def fake_quant(ctx: OpContext) -> list[Any]:
    """``tf.quantization.fake_quant_with_min_max_args``: the op FAKE_QUANT was converted from, with the
    same range nudging. (The TFLite runtime refuses narrow_range=True; TensorFlow's definition of it
    is kept.) TFLite rounds half away from zero, TensorFlow with floor(x + 0.5): equal, since the
    shifted value is never negative."""
    o = ctx.options
    return [tf.quantization.fake_quant_with_min_max_args(
        ctx.input(0), min=float(o.get("min", 0.0)), max=float(o.get("max", 0.0)),
        num_bits=int(o.get("num_bits", 8)), narrow_range=bool(o.get("narrow_range", False)))]


# -- LSH_PROJECTION --------------------------------------------------------------------------------
def _lsh_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = []
    kind = op.options.get("type", "UNKNOWN")
    if kind not in ("SPARSE", "DENSE"):
        problems.append(f"LSH_PROJECTION type {kind} is not SPARSE or DENSE (the kernel fails on it)")
    h, x, w = sg.input_of(op, 0), sg.input_of(op, 1), sg.input_of(op, 2)
    if h is None or h.type_name != "FLOAT32" or len(h.shape) != 2:
        problems.append("LSH_PROJECTION hash seeds must be a 2-D FLOAT32 tensor")
    elif h.shape[1] > 32:
        problems.append(f"LSH_PROJECTION hash functions of {h.shape[1]} bits exceed the kernel's 32")
    elif kind == "SPARSE" and h.shape[0] * (1 << h.shape[1]) > 1 << 31:
        problems.append(f"LSH_PROJECTION SPARSE with {h.shape[0]} hashes of {h.shape[1]} bits overflows the "
                        "int32 signatures")
    if x is None or x.type_name in ("STRING", "RESOURCE", "VARIANT", "INT4", "UINT4") or not _per_tensor(x):
        problems.append(f"LSH_PROJECTION input type {x.type_name if x else 'absent'} has no fixed-size rows to hash")
    if w is not None and w.type_name != "FLOAT32":
        problems.append(f"LSH_PROJECTION weight must be FLOAT32, not {w.type_name}")
    return problems


def _row_bytes(x: Any, t: Tensor) -> Any:
    """Each row (first dimension) of ``x`` as the bytes the kernel hashes: [rows, row_bytes] uint8."""
    x = _raw(x, t)
    if x.dtype == tf.bool:
        x = tf.cast(x, tf.uint8)
    return tf.reshape(tf.bitcast(x, tf.uint8), [tf.shape(x)[0], -1])


@register("LSH_PROJECTION", check=_lsh_check)
def lsh_projection(ctx: OpContext) -> list[Any]:
    """Bit (i, j) is the sign of ``sum_r w[r] * int64(Fingerprint64(seed[i, j] bytes + row r bytes))``
    summed in float64 in row order (w = 1 without the weight input). ``tf.fingerprint`` with
    ``farmhash64`` hashes the same bytes with the same function. SPARSE packs each hash's bits (first
    bit most significant) into an int32 plus ``i << num_bits``; DENSE returns the bits."""
    num_hash, num_bits = ctx.in_tensor(0).shape
    seeds = tf.bitcast(tf.reshape(ctx.input(0), [-1]), tf.uint8)  # [S, 4]
    rows = _row_bytes(ctx.input(1), ctx.in_tensor(1))  # [N, K]
    n_seeds, n_rows = num_hash * num_bits, tf.shape(rows)[0]
    keys = tf.concat([tf.broadcast_to(seeds[:, None, :], [n_seeds, n_rows, 4]),
                      tf.broadcast_to(rows[None], [n_seeds, n_rows, tf.shape(rows)[1]])], axis=2)
    prints = tf.fingerprint(tf.reshape(keys, [n_seeds * n_rows, -1]), method="farmhash64")
    values = tf.cast(tf.reshape(tf.bitcast(prints, tf.int64), [n_seeds, n_rows]), tf.float64)
    if ctx.has_input(2):
        values = values * tf.cast(ctx.input(2), tf.float64)[None, :]
    # The kernel accumulates row by row; foldl keeps that order so the sign is exactly the kernel's.
    score = tf.foldl(lambda acc, v: acc + v, tf.transpose(values), initializer=tf.zeros([n_seeds], tf.float64))
    bits = tf.cast(score > 0, tf.int32)
    if ctx.options.get("type") == "DENSE":
        return [bits]
    weights = tf.constant([1 << (num_bits - 1 - j) for j in range(num_bits)], tf.int64)
    offsets = tf.constant([i << num_bits for i in range(num_hash)], tf.int64)
    packed = tf.reduce_sum(tf.cast(tf.reshape(bits, [num_hash, num_bits]), tf.int64) * weights, axis=1)
    return [tf.cast(packed + offsets, tf.int32)]


# -- HASHTABLE_LOOKUP ------------------------------------------------------------------------------
def _hashtable_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = []
    q, k, v = sg.input_of(op, 0), sg.input_of(op, 1), sg.input_of(op, 2)
    out, hits = sg.output_of(op, 0), sg.output_of(op, 1)
    if q is None or q.type_name != "INT32" or k is None or k.type_name != "INT32":
        problems.append("HASHTABLE_LOOKUP lookups and keys must be INT32")
    if v is None or out is None or v.type_name != out.type_name:
        problems.append("HASHTABLE_LOOKUP values and output must have the same type")
    elif not (_per_tensor(v) and _per_tensor(out)):
        problems.append("HASHTABLE_LOOKUP values or output are quantized per channel")
    if hits is None or hits.type_name != "UINT8":
        problems.append("HASHTABLE_LOOKUP needs a UINT8 hits output")
    return problems


def _bsearch(query: Any, keys: Any, n: int | None) -> Any:
    """The classic C ``bsearch`` (probe the middle of [lo, hi), go left on less, right on greater) for
    all queries at once: the index found, or -1. Keys are meant to be sorted; probing as the kernel
    does also gives its answers for duplicate or unsorted keys. (The kernel's comparator is the int32
    subtraction ``a - b``; compiled, it behaves as a plain comparison, also for keys far apart.)"""
    size = tf.shape(keys, out_type=tf.int32)[0]
    lo = tf.zeros_like(query)
    hi = tf.fill(tf.shape(query), size)
    found = -tf.ones_like(query)
    steps = n.bit_length() if n is not None else 32  # at most floor(log2 n) + 1 probes
    for _ in range(steps):
        active = (lo < hi) & (found < 0)
        mid = (lo + hi) // 2
        key = tf.gather(keys, tf.clip_by_value(mid, 0, tf.maximum(size - 1, 0)))
        found = tf.where(active & tf.equal(query, key), mid, found)
        hi = tf.where(active & (query < key), mid, hi)
        lo = tf.where(active & (query > key), mid + 1, lo)
    return found


@register("HASHTABLE_LOOKUP", check=_hashtable_check)
def hashtable_lookup(ctx: OpContext) -> list[Any]:
    """Binary search of each lookup in the sorted int32 keys; a hit copies the value row, a miss gives
    zero bytes (an empty string for strings) and hit 0. Quantized values are copied as integers, so a
    miss is the real value of integer 0 under the output's parameters."""
    key_t, val_t, out_t = ctx.in_tensor(1), ctx.in_tensor(2), ctx.out_tensor(0)
    sig = key_t.shape_signature or key_t.shape
    n = int(sig[0]) if sig and sig[0] >= 0 else None
    idx = _bsearch(ctx.input(0), ctx.input(1), n)
    hit = idx >= 0
    values = _raw(ctx.input(2), val_t)
    rows = tf.gather(values, tf.maximum(idx, 0))
    mask = tf.reshape(hit, tf.concat([tf.shape(hit), tf.ones([tf.rank(rows) - 1], tf.int32)], 0))
    out = tf.where(mask, rows, tf.zeros_like(rows))
    if _real_quantized(val_t):
        out = common.dequantize_int(out, out_t)
    return [out, tf.cast(hit, tf.uint8)]


# -- EMBEDDING_LOOKUP_SPARSE -----------------------------------------------------------------------
def _els_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = []
    combiner = op.options.get("combiner", "SUM")
    if combiner not in ("SUM", "MEAN", "SQRTN"):
        problems.append(f"EMBEDDING_LOOKUP_SPARSE combiner {combiner} is not SUM, MEAN or SQRTN")
    ts = [sg.input_of(op, i) for i in range(5)]
    if any(t is None for t in ts):
        problems.append("EMBEDDING_LOOKUP_SPARSE needs ids, indices, dense_shape, weights and params")
        return problems
    if any(t.type_name != "INT32" for t in ts[:3]):
        problems.append("EMBEDDING_LOOKUP_SPARSE ids, indices and dense_shape must be INT32")
    if ts[3].type_name != "FLOAT32" or ts[4].type_name != "FLOAT32":
        problems.append("EMBEDDING_LOOKUP_SPARSE weights and params must be FLOAT32 (the kernel reads floats)")
    return problems


@register("EMBEDDING_LOOKUP_SPARSE", check=_els_check)
def embedding_lookup_sparse(ctx: OpContext) -> list[Any]:
    """Row-major bucket of each lookup from its indices (last index column ignored), weighted sum of
    the looked-up params rows per bucket, divided per non-empty bucket by the total weight (MEAN) or
    the root of the summed squared weights (SQRTN). Output shape: dense_shape[:-1] + params.shape[1:].
    Indices are meant to be sorted (the TFLite convention); the kernel combines consecutive runs, so
    an unsorted input that returns to an earlier bucket is combined differently there."""
    ids, indices, dense_shape, w, params = ctx.inputs
    lead = dense_shape[:-1]
    strides = tf.math.cumprod(lead, exclusive=True, reverse=True)
    bucket = tf.reduce_sum(indices[:, :-1] * strides[None, :], axis=1)
    num = tf.reduce_prod(lead)
    rank = len(ctx.in_tensor(4).shape)
    rows = tf.gather(params, ids) * tf.reshape(w, [-1] + [1] * (rank - 1))
    out = tf.math.unsorted_segment_sum(rows, bucket, num)
    combiner = ctx.options.get("combiner", "SUM")
    if combiner != "SUM":
        count = tf.math.unsorted_segment_sum(tf.ones_like(w), bucket, num)
        total = tf.math.unsorted_segment_sum(w if combiner == "MEAN" else w * w, bucket, num)
        div = total if combiner == "MEAN" else tf.sqrt(total)
        div = tf.where(count > 0, div, tf.ones_like(div))
        out = out / tf.reshape(div, [-1] + [1] * (rank - 1))
    return [tf.reshape(out, tf.concat([lead, tf.shape(params)[1:]], 0))]


# -- SKIP_GRAM -------------------------------------------------------------------------------------
#: The characters C ``isspace`` accepts in the "C" locale.
_WHITESPACE = (" ", "\t", "\n", "\x0b", "\x0c", "\r")


def _skip_gram_check(op: Operator, sg: Subgraph) -> list[str]:
    o = op.options
    problems = []
    if int(o.get("ngram_size", 0)) < 1:
        problems.append(f"SKIP_GRAM ngram_size {o.get('ngram_size', 0)} is below 1 (the kernel indexes out of range)")
    if int(o.get("max_skip_size", 0)) < 0:
        problems.append(f"SKIP_GRAM max_skip_size {o.get('max_skip_size', 0)} is negative")
    x = sg.input_of(op, 0)
    if x is None or x.type_name != "STRING":
        problems.append("SKIP_GRAM input must be a STRING tensor")
    return problems


def skip_gram_patterns(ngram_size: int, max_skip: int, include_all: bool) -> list[tuple[int, ...]]:
    """Word offsets (from the first word) of every gram one start word yields, in the kernel's order.

    The kernel walks index tuples depth first, each next word at most ``max_skip`` words after the
    previous one, and emits a tuple when it cannot extend it (after all its extensions): a post-order
    walk. Validity depends only on the last offset, so the order is the same for every start word.
    """
    out: list[tuple[int, ...]] = []

    def walk(prefix: tuple[int, ...]) -> None:
        if len(prefix) < ngram_size:
            for gap in range(max_skip + 1):
                walk(prefix + (prefix[-1] + 1 + gap,))
        if len(prefix) == ngram_size or include_all:
            out.append(prefix)

    walk((0,))
    return out


def _words(s: Any) -> Any:
    """The kernel's word split: every whitespace byte ends a word and empty words are dropped, except
    that the scan starts at the second byte, so a leading whitespace byte joins the first word, which
    is then dropped for starting with whitespace (or, if no other whitespace follows, kept whole as
    the only word). Plain byte splits, no regular expression: words need not be valid UTF-8."""
    segments = tf.reshape(s, [1])
    for ws in _WHITESPACE:  # splitting each piece in turn keeps the segments in order
        segments = tf.strings.split(segments, sep=ws).flat_values
    lead_ws = tf.reduce_any(tf.equal(tf.strings.substr(s, 0, 1), list(_WHITESPACE)))
    count = tf.shape(segments)[0]

    def whole() -> Any:
        return tf.reshape(s, [1])

    def split() -> Any:
        rest = segments[tf.where(lead_ws, 2, 0):]  # with a leading space: "" and the dropped first word
        return tf.boolean_mask(rest, tf.strings.length(rest) > 0)

    return tf.cond(lead_ws & tf.equal(count, 2), whole, split)


@register("SKIP_GRAM", check=_skip_gram_check)
def skip_gram(ctx: OpContext) -> list[Any]:
    """The skip-grams of the first string of the input, words joined by one space, in the kernel's
    order: by start word, then by the static pattern order of :func:`skip_gram_patterns`. With fewer
    words than ngram_size the output is empty (even with include_all_ngrams)."""
    o = ctx.options
    size, skip = int(o.get("ngram_size", 0)), int(o.get("max_skip_size", 0))
    patterns = skip_gram_patterns(size, skip, bool(o.get("include_all_ngrams", False)))
    words = _words(tf.reshape(ctx.input(0), [-1])[0])
    n = tf.shape(words)[0]
    start = tf.range(n)[:, None]  # [n, 1]
    grams, valid = [], []
    for p in patterns:
        idx = [start + off for off in p]
        grams.append(tf.strings.join([tf.gather(words, tf.minimum(i, n - 1)) for i in idx], separator=" "))
        valid.append(idx[-1] < n)
    grams_t = tf.reshape(tf.concat(grams, axis=1), [-1])  # start-major, then pattern order
    valid_t = tf.reshape(tf.concat(valid, axis=1), [-1]) & (n >= size)
    return [tf.boolean_mask(grams_t, valid_t)]
