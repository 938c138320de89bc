"""Sparse constants (TFLite ``SparsityParameters``) and the DENSIFY op.

A sparse constant stores its non-zero values in traversal order plus, per traversal level, either a
dense size or a CSR pair (``array_segments``, ``array_indices``). Blocked layouts (``block_map``) add
one inner level per blocked dimension. :func:`densify` expands one into the dense array of the
tensor's shape, following TFLite's ``FormatConverter::SparseToDense``. It walks the levels
breadth-first with numpy (the reference walks them depth-first one element at a time; the order of the
leaves, and so the order values are consumed in, is the same).

The file is untrusted: every index, segment and size is checked, and a malformed structure raises
:class:`InvalidModelError` naming the tensor (the reference kernel would read or write out of bounds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidModelError
from ..model.ir import Tensor
from .context import OpContext
from .registry import register

_DENSE, _SPARSE_CSR = 0, 1
_VECTOR_DTYPES = {"Int32Vector": "<i4", "Uint16Vector": "<u2", "Uint8Vector": "u1"}


def _where(t: Tensor) -> str:
    return f"sparse tensor {t.index} ({t.name!r})"


def _index_vector(t: Tensor, vec: Any, what: str) -> np.ndarray:
    """An ``array_segments``/``array_indices`` union value as an int64 array.

    The reader gives ``{"type": "Int32Vector"|"Uint16Vector"|"Uint8Vector", "values": ...}`` where
    ``values`` is a list, or an ``{"offset", "length"}`` byte span into the file (ubyte vectors).
    """
    if not isinstance(vec, dict) or vec.get("type") is None:
        raise InvalidModelError(f"{_where(t)}: sparse dimension has no {what}")
    kind = vec["type"]
    if kind not in _VECTOR_DTYPES:
        raise InvalidModelError(f"{_where(t)}: {what} has unknown vector type {kind!r}")
    values = vec.get("values")
    if values is None:
        return np.zeros(0, np.int64)
    if isinstance(values, dict):
        dtype = np.dtype(_VECTOR_DTYPES[kind])
        off, length = int(values.get("offset", -1)), int(values.get("length", -1))
        storage = t._storage
        size = len(storage) if storage is not None else 0
        nbytes = length * dtype.itemsize
        if off < 0 or length < 0 or off + nbytes > size:
            raise InvalidModelError(f"{_where(t)}: {what} span ({off}, {length}) lies outside the file")
        return np.frombuffer(storage, dtype=dtype, count=length, offset=off).astype(np.int64)
    try:
        return np.asarray(values, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise InvalidModelError(f"{_where(t)}: {what} is not a vector of integers") from None


def _int_list(t: Tensor, v: Any, what: str) -> list[int]:
    if v is None:
        return []
    try:
        return [int(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
    except (TypeError, ValueError):
        raise InvalidModelError(f"{_where(t)}: {what} is not a list of integers") from None


def densify(t: Tensor) -> np.ndarray:
    """Expand the sparse constant ``t`` into a dense array of ``t.shape`` (its storage dtype)."""
    sp = t.sparsity or {}
    where = _where(t)
    shape = [int(d) for d in t.shape]
    rank = len(shape)
    if any(d < 0 for d in shape):
        raise InvalidModelError(f"{where}: shape {shape} has an unknown dimension")
    order = _int_list(t, sp.get("traversal_order"), "traversal_order")
    block_map = _int_list(t, sp.get("block_map"), "block_map")
    dims = sp.get("dim_metadata") or []
    total = rank + len(block_map)
    if len(order) != total or len(dims) != total:
        raise InvalidModelError(f"{where}: traversal_order has {len(order)} entries and dim_metadata {len(dims)}, "
                                f"but rank {rank} + {len(block_map)} block dimensions = {total}")
    if sorted(order[:rank]) != list(range(rank)) or sorted(order[rank:]) != list(range(rank, total)):
        raise InvalidModelError(f"{where}: traversal_order {order} is not a permutation of the dense dimensions "
                                "followed by the block dimensions")
    if any(not 0 <= b < rank for b in block_map) or len(set(block_map)) != len(block_map):
        raise InvalidModelError(f"{where}: block_map {block_map} names a dimension outside rank {rank}")

    # Per-level metadata (level i describes traversal position i).
    formats, sizes, segments, indices = [], [], [], []
    for lv, d in enumerate(dims):
        if not isinstance(d, dict):
            raise InvalidModelError(f"{where}: dim_metadata[{lv}] is not a table")
        fmt = int(d.get("format") or 0)
        if fmt == _DENSE:
            size = int(d.get("dense_size") or 0)
            if size < 0:
                raise InvalidModelError(f"{where}: dim_metadata[{lv}] has negative dense_size {size}")
            formats.append(fmt)
            sizes.append(size)
            segments.append(None)
            indices.append(None)
        elif fmt == _SPARSE_CSR:
            formats.append(fmt)
            sizes.append(0)
            segments.append(_index_vector(t, d.get("array_segments"), f"dim_metadata[{lv}].array_segments"))
            indices.append(_index_vector(t, d.get("array_indices"), f"dim_metadata[{lv}].array_indices"))
        else:
            raise InvalidModelError(f"{where}: dim_metadata[{lv}] has unknown format {fmt}")

    # Block sizes as the reference derives them: block k's size is the dense size of the level named
    # by traversal_order[rank + k].
    block_size = []
    for k in range(len(block_map)):
        lv = order[rank + k]
        if formats[lv] != _DENSE or sizes[lv] <= 0:
            raise InvalidModelError(f"{where}: block dimension {k} (level {lv}) is not a dense dimension of "
                                    "positive size")
        block_size.append(sizes[lv])

    values = np.asarray(t.data()).reshape(-1)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    # Breadth-first walk: `pos` is each partial path's prev_idx, `idx` its per-level indices.
    pos = np.zeros(1, np.int64)
    idx = np.zeros((1, 0), np.int64)
    for lv in range(total):
        if formats[lv] == _DENSE:
            n = sizes[lv]
            pos = (pos[:, None] * n + np.arange(n, dtype=np.int64)[None, :]).reshape(-1)
            idx = np.concatenate([np.repeat(idx, n, axis=0),
                                  np.tile(np.arange(n, dtype=np.int64), idx.shape[0])[:, None]], axis=1)
        else:
            seg, ind = segments[lv], indices[lv]
            if seg.size and (np.any(seg[1:] < seg[:-1]) or seg[0] < 0 or seg[-1] > ind.size):
                raise InvalidModelError(f"{where}: dim_metadata[{lv}].array_segments are not non-decreasing "
                                        f"offsets within the {ind.size} indices")
            if pos.size and (pos.max() + 1 >= seg.size):
                raise InvalidModelError(f"{where}: dim_metadata[{lv}] has {max(seg.size - 1, 0)} segments, "
                                        f"but the level above has {int(pos.max()) + 1} positions")
            start, stop = seg[pos], seg[pos + 1]
            lengths = stop - start
            parent = np.repeat(np.arange(pos.size), lengths)
            child = (np.arange(parent.size, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
                     + np.repeat(start, lengths))
            pos = child
            idx = np.concatenate([idx[parent], ind[child][:, None]], axis=1)
        if pos.size > count:
            raise InvalidModelError(f"{where}: level {lv} expands to {pos.size} entries, more than the "
                                    f"{count} elements of shape {shape}")
    if idx.shape[0] > values.size:
        raise InvalidModelError(f"{where}: the sparsity structure addresses {idx.shape[0]} values, but the "
                                f"buffer holds {values.size}")

    # Leaf -> dense coordinate: the first `rank` levels name the blocked coordinates, the block levels
    # refine them (coordinate * block_size + offset).
    coord = np.zeros((idx.shape[0], rank), np.int64)
    for lv in range(rank):
        coord[:, order[lv]] = idx[:, lv]
    for lv in range(rank, total):
        k = order[lv] - rank
        dim = block_map[k]
        coord[:, dim] = coord[:, dim] * block_size[k] + idx[:, lv]
    if coord.size and (np.any(coord < 0) or np.any(coord >= np.asarray(shape, np.int64)[None, :])):
        raise InvalidModelError(f"{where}: an index of the sparsity structure lies outside shape {shape}")
    dense = np.zeros(count, dtype=values.dtype)
    if coord.shape[0]:
        flat = np.ravel_multi_index(tuple(coord.T), shape) if rank else np.zeros(coord.shape[0], np.int64)
        dense[flat] = values[: coord.shape[0]]
    return dense.reshape(shape)


@register("DENSIFY")
def densify_op(ctx: OpContext) -> list[Any]:
    """DENSIFY turns a sparse constant into a dense tensor; the builder already densifies constants
    (``GraphBuilder.const_array``), so the output is the dense weight itself."""
    if not ctx.is_const(0):
        raise ctx.unsupported("DENSIFY input is not a constant (TFLite only densifies sparse weights)")
    from .._tf import tf

    t = ctx.in_tensor(0)
    if t.type_name in ("FLOAT32", "FLOAT16") or t.is_quantized:
        return [tf.identity(ctx.weight(0))]
    return [tf.constant(ctx.const(0))]
