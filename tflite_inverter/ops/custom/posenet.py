"""``PosenetDecoderOp``: Coral's multi-person pose decoder (PersonLab), and BodyPix instance masks.

Semantics follow google-coral libcoral ``coral/posenet/posenet_decoder{,_op}.cc``:

* inputs: heatmap logits ``[1, H, W, 17]``, short offsets ``[1, H, W, 34]`` (17 y then 17 x), mid
  offsets ``[1, H, W, 64]`` (fwd y, fwd x, bwd y, bwd x for 16 edges), optionally long offsets
  ``[1, H, W, 34]``; offsets are in pixels and divided by ``stride`` into block space.
* root candidates: every heatmap value ``>= logodds(score_threshold)`` that no value of its 3x3
  window exceeds, at its cell refined by the short offsets (clamped to the grid), pushed in scan order
  (y, x, keypoint) into a ``std::priority_queue`` and popped by decreasing score. Quantized heatmaps
  have many equal scores, and which of them pops first decides results, so the queue is emulated
  with libstdc++'s exact ``push_heap`` / ``pop_heap`` steps (a heap of candidate indices in a
  ``tf.while_loop``).
* a candidate within ``nms_radius / stride`` (squared distance ``<=``) of the same keypoint of an
  accepted pose is skipped; otherwise the pose is decoded along the 17-keypoint tree: a child is its
  parent's position moved by the bilinearly sampled mid offset of the edge, then 5 times by the
  short offset of the child (clamped each time); its score is the sampled heatmap logit. Since the
  skeleton is a tree, each keypoint's position depends only on its parent, so the kernel's priority
  queue order does not matter and the tree is walked in a fixed order per root keypoint. The kernel
  indexes the first backward edge (id 16) without the backward shift (``edge_id > kNumEdges``); that
  quirk is reproduced.
* a pose is kept when the mean of its 17 keypoint sigmoids ``>= score_threshold``; at most
  ``max_detections`` are kept. Soft keypoint NMS then rescores each pose (in decreasing score order)
  as the mean of its keypoint scores that are not within the radius of the same keypoint of a
  higher-ranked pose; poses are re-sorted and the ones ``>= score_threshold`` are output, keypoints
  scaled by ``stride`` (``y, x`` order). Sums run over keypoint scores sorted in decreasing order,
  one float32 addition at a time, like the kernel.
* with long offsets (BodyPix, 5 outputs): each cell of the 33x33 grid follows the long offsets of
  every keypoint (3 steps) to an embedding and is assigned to the pose with the least summed squared
  distance; mask ``[1, max_detections, 33, 33]`` is 1 there. With no pose the kernel assigns every
  cell to mask 0, which is reproduced.

Outputs are float32 ``[1, M, 17, 2]``, ``[1, M, 17]``, ``[1, M]``, ``[1]`` (+ masks). Slots past the
pose count are left unwritten by the kernel; they are 0 here. One known difference: the kernel
orders poses with exactly equal instance scores by an unstable ``std::sort`` (introsort); here the
earlier-accepted pose ranks first. That only matters for bit-identical pose scores.
The heap is libstdc++'s; a kernel built against another C++ library (libc++, MSVC) could pop equal
scores in another order. The kernel folds ``1 / stride`` into the dequantization scale of UINT8
offsets; here the dequantized offsets are scaled, which can differ by an ulp when the stride is not a
power of two.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..._tf import tf
from ...model.ir import Operator, Subgraph
from ..context import OpContext
from ..registry import register

NUM_KP = 17
NUM_EDGES = 16
REFINE_STEPS = 5
MASK_REFINE_STEPS = 2
MASK_SIZE = 33

# nose, l/r eye, l/r ear, l/r shoulder, l/r elbow, l/r wrist, l/r hip, l/r knee, l/r ankle
_FWD = [(0, 1), (1, 3), (0, 2), (2, 4), (0, 5), (5, 7), (7, 9), (5, 11), (11, 13), (13, 15),
        (0, 6), (6, 8), (8, 10), (6, 12), (12, 14), (14, 16)]
EDGES: list[tuple[int, int]] = _FWD + [(c, p) for p, c in _FWD]


def _mid_channels(edge: int) -> tuple[int, int]:
    """Mid-offset channels (y, x) the kernel reads for edge ``edge`` (its ``> kNumEdges`` quirk kept)."""
    e = edge + NUM_EDGES if edge > NUM_EDGES else edge
    return e, NUM_EDGES + e


def tree_walks() -> np.ndarray:
    """``[17, 16, 4]`` int32: for each root keypoint, (node, parent, mid y channel, mid x channel) in an
    order where a parent comes before its children."""
    out = np.zeros((NUM_KP, NUM_KP - 1, 4), np.int32)
    for root in range(NUM_KP):
        done, frontier, steps = {root}, [root], []
        while frontier:
            p = frontier.pop(0)
            for k, (a, b) in enumerate(EDGES):
                if a == p and b not in done:
                    done.add(b)
                    frontier.append(b)
                    steps.append((b, p, *_mid_channels(k)))
        out[root] = steps
    return out


def logodds(p: float) -> np.float32:
    """The kernel's logit of the threshold: ``-log(1 / (p + 1e-6) - 1)`` in double, stored as float."""
    return np.float32(-math.log(1.0 / (float(np.float32(p)) + 1e-6) - 1.0))


def _params(op: Operator) -> dict[str, Any]:
    o = op.flex_options if isinstance(op.flex_options, dict) else {}
    return {k: o.get(k) for k in ("max_detections", "score_threshold", "stride", "nms_radius")}


def _check(op: Operator, sg: Subgraph) -> list[str]:
    if not isinstance(op.flex_options, dict):
        return ["custom options are not a FlexBuffer map"]
    p = _params(op)
    missing = [k for k, v in p.items() if not isinstance(v, (int, float)) or isinstance(v, bool)]
    if missing:
        return [f"options {missing} are missing or not numbers"]
    problems = []
    if int(p["stride"]) <= 0:
        problems.append(f"stride {p['stride']} must be positive (the kernel rejects it)")
    if int(p["max_detections"]) <= 0:
        problems.append(f"max_detections {p['max_detections']} must be positive")
    masks = len(op.inputs) == 4
    if (len(op.inputs), len(op.outputs)) not in ((3, 4), (4, 5)) or min(op.inputs) < 0:
        return problems + [f"{len(op.inputs)} inputs / {len(op.outputs)} outputs; the kernel takes 3/4 or 4/5"]
    ts = [sg.tensors[i] for i in op.inputs]
    want = [NUM_KP, 2 * NUM_KP, 4 * NUM_EDGES] + ([2 * NUM_KP] if masks else [])
    for name, t, c in zip(("heatmaps", "short offsets", "mid offsets", "long offsets"), ts, want):
        if t.type_name not in ("UINT8", "FLOAT32"):
            problems.append(f"{name} are {t.type_name}; the kernel takes UINT8 or FLOAT32")
        if len(t.shape) != 4 or t.shape[0] != 1 or t.shape[3] != c or min(t.shape) <= 0:
            problems.append(f"{name} have shape {list(t.shape)}, the kernel needs static [1, H, W, {c}]")
    if not problems and any(t.shape[1:3] != ts[0].shape[1:3] for t in ts[1:3]):
        problems.append("heatmaps and offsets have different grids")
    if masks and not problems and tuple(ts[3].shape[1:3]) != (MASK_SIZE, MASK_SIZE):
        problems.append(f"long offsets grid {list(ts[3].shape[1:3])}: the kernel's masks are fixed at 33x33")
    return problems


def _sample(flat: Any, h: int, w: int, c: int, y: Any, x: Any, ch: Any) -> Any:
    """Bilinear sample of the ``[H, W, C]`` tensor ``flat`` (flattened) at ``(y, x)``, channel ``ch``
    (broadcast together), with the kernel's float32 formula."""
    def axis(v: Any, n: int) -> tuple[Any, Any, Any]:
        vp = tf.clip_by_value(v, 0.0, n - 1.0)
        lo, hi = tf.floor(vp), tf.math.ceil(vp)
        return tf.cast(lo, tf.int32), tf.cast(hi, tf.int32), v - lo

    y0, y1, yl = axis(y, h)
    x0, x1, xl = axis(x, w)

    def at(yi: Any, xi: Any) -> Any:
        return tf.gather(flat, (yi * w + xi) * c + ch)

    return (1.0 - yl) * ((1.0 - xl) * at(y0, x0) + xl * at(y0, x1)) + yl * ((1.0 - xl) * at(y1, x0) + xl * at(y1, x1))


def _ordered_sum(v: Any) -> Any:
    """Sum along the last axis of size 17, one float32 addition at a time from the first element."""
    total = v[..., 0]
    for k in range(1, v.shape[-1]):
        total = total + v[..., k]
    return total


def _sq_dist(ay: Any, ax: Any, by: Any, bx: Any) -> Any:
    dy, dx = by - ay, bx - ax
    return dy * dy + dx * dx


def _put(t: Any, i: Any, v: Any) -> Any:
    return tf.tensor_scatter_nd_update(t, [[i]], [v])


def _sift_up(heap: Any, hole: Any, item: Any, scores: Any) -> Any:
    """libstdc++ ``__push_heap`` (top 0): move parents down while ``parent score < item score``."""
    s = scores[item]

    def cond(hole: Any, heap: Any) -> Any:
        return (hole > 0) & (tf.gather(scores, heap[tf.maximum(hole - 1, 0) // 2]) < s)

    def body(hole: Any, heap: Any) -> tuple[Any, Any]:
        parent = (hole - 1) // 2
        return parent, _put(heap, hole, heap[parent])

    hole, heap = tf.while_loop(cond, body, (hole, heap))
    return _put(heap, hole, item)


def build_heap(scores: Any) -> Any:
    """The kernel's ``std::priority_queue`` after pushing candidates ``0..K-1`` in scan order: a heap
    of candidate indices. Equal scores come out in the order libstdc++'s heap gives them."""
    k = tf.size(scores)

    def body(i: Any, heap: Any) -> tuple[Any, Any]:
        return i + 1, _sift_up(heap, i, i, scores)

    return tf.while_loop(lambda i, _: i < k, body, (tf.constant(0), tf.zeros([k], tf.int32)))[1]


def heap_pop(heap: Any, size: Any, scores: Any) -> tuple[Any, Any]:
    """libstdc++ ``pop_heap`` on ``heap[:size]``: (top item, heap of the remaining ``size - 1``)."""
    top, n = heap[0], size - 1
    last = heap[tf.maximum(n, 0)]

    def cond(hole: Any, child: Any, heap: Any) -> Any:
        return child < (n - 1) // 2

    def body(hole: Any, child: Any, heap: Any) -> tuple[Any, Any, Any]:
        child = 2 * (child + 1)
        child = tf.where(tf.gather(scores, heap[child]) < tf.gather(scores, heap[child - 1]), child - 1, child)
        return child, child, _put(heap, hole, heap[child])

    hole, child, heap = tf.while_loop(cond, body, (tf.constant(0), tf.constant(0), heap))
    lone = tf.equal(n % 2, 0) & tf.equal(child, (n - 2) // 2) & (n > 0)  # a last parent with one child
    hole, heap = tf.cond(lone, lambda: (2 * child + 1, _put(heap, hole, heap[2 * child + 1])), lambda: (hole, heap))
    return top, tf.cond(n > 0, lambda: _sift_up(heap, hole, last, scores), lambda: heap)


def decode_poses(hm: Any, short: Any, mid: Any, max_det: int, thr: float, stride: int, nms_radius: float
                 ) -> tuple[Any, Any, Any, Any]:
    """Decode poses from ``[H, W, 17]`` logits and block-space ``[H, W, 34]`` / ``[H, W, 64]`` offsets.

    Returns keypoints ``[M, 17, 2]`` (pixels), keypoint scores ``[M, 17]``, pose scores ``[M]``, count."""
    h, w = int(hm.shape[0]), int(hm.shape[1])
    thr32 = np.float32(thr)
    r2 = np.float32(np.float32(nms_radius) / np.float32(stride)) ** 2
    hm_f, short_f, mid_f = tf.reshape(hm, [-1]), tf.reshape(short, [-1]), tf.reshape(mid, [-1])

    # root candidates: local maxima (no window value greater) at or above the logit threshold
    pooled = tf.nn.max_pool2d(hm[None], 3, 1, "SAME")[0]
    cand = tf.cast(tf.where((hm >= logodds(thr)) & (hm >= pooled)), tf.int32)
    cy, cx, cid = cand[:, 0], cand[:, 1], cand[:, 2]
    cscore = tf.gather_nd(hm, cand)
    dy = tf.gather_nd(short, tf.stack([cy, cx, cid], 1))
    dx = tf.gather_nd(short, tf.stack([cy, cx, cid + NUM_KP], 1))
    py = tf.clip_by_value(tf.cast(cy, tf.float32) + dy, 0.0, h - 1.0)
    px = tf.clip_by_value(tf.cast(cx, tf.float32) + dx, 0.0, w - 1.0)
    heap = build_heap(cscore)
    walks = tf.constant(tree_walks())

    def decode(ry: Any, rx: Any, rid: Any) -> tuple[Any, Any, Any]:
        walk = walks[rid]

        def step(s: Any, ys: Any, xs: Any) -> tuple[Any, Any, Any]:
            node, parent = walk[s, 0], walk[s, 1]
            off = _sample(mid_f, h, w, 4 * NUM_EDGES, ys[parent], xs[parent], walk[s, 2:4])
            y = tf.clip_by_value(ys[parent] + off[0], 0.0, h - 1.0)
            x = tf.clip_by_value(xs[parent] + off[1], 0.0, w - 1.0)
            sch = tf.stack([node, node + NUM_KP])
            for _ in range(REFINE_STEPS):
                off = _sample(short_f, h, w, 2 * NUM_KP, y, x, sch)
                y = tf.clip_by_value(y + off[0], 0.0, h - 1.0)
                x = tf.clip_by_value(x + off[1], 0.0, w - 1.0)
            return s + 1, tf.tensor_scatter_nd_update(ys, [[node]], [y]), tf.tensor_scatter_nd_update(xs, [[node]], [x])

        ys = tf.tensor_scatter_nd_update(tf.zeros([NUM_KP]), [[rid]], [ry])
        xs = tf.tensor_scatter_nd_update(tf.zeros([NUM_KP]), [[rid]], [rx])
        _, ys, xs = tf.while_loop(lambda s, *_: s < NUM_KP - 1, step, (tf.constant(0), ys, xs))
        scores = _sample(hm_f, h, w, NUM_KP, ys, xs, tf.range(NUM_KP))
        return ys, xs, scores

    def body(heap: Any, size: Any, n: Any, ys: Any, xs: Any, ks: Any, inst: Any) -> tuple[Any, ...]:
        i, heap = heap_pop(heap, size, cscore)
        ry, rx, rid = py[i], px[i], cid[i]
        taken = tf.range(max_det) < n
        near = taken & (_sq_dist(ry, rx, ys[:, rid], xs[:, rid]) <= r2)

        def accept() -> tuple[Any, ...]:
            pys, pxs, lg = decode(ry, rx, rid)
            sig = tf.sigmoid(lg)
            score = _ordered_sum(tf.sort(sig, direction="DESCENDING")) / float(NUM_KP)
            put = lambda t, v: tf.tensor_scatter_nd_update(t, [[n]], [v])  # noqa: E731
            new = (n + 1, put(ys, pys), put(xs, pxs), put(ks, sig), put(inst, score))
            return tf.cond(score >= thr32, lambda: new, lambda: (n, ys, xs, ks, inst))

        out = tf.cond(tf.reduce_any(near), lambda: (n, ys, xs, ks, inst), accept)
        return (heap, size - 1, *out)

    zeros_k = tf.zeros([max_det, NUM_KP])
    *_, n, ys, xs, ks, inst = tf.while_loop(
        lambda heap, size, n, *_: (size > 0) & (n < max_det), body,
        (heap, tf.size(heap), tf.constant(0), zeros_k, zeros_k, zeros_k, tf.zeros([max_det])))

    # soft keypoint NMS: rescore each pose without its keypoints near those of higher-ranked poses
    valid = tf.range(max_det) < n
    rank = tf.argsort(tf.argsort(tf.where(valid, inst, -np.inf), direction="DESCENDING", stable=True), stable=True)
    above = valid[None, :] & (rank[None, :] < rank[:, None])  # [i, j]: j ranks before i
    d = _sq_dist(ys[:, None, :], xs[:, None, :], ys[None, :, :], xs[None, :, :])
    occluded = tf.reduce_any(above[:, :, None] & (d <= r2), axis=1)
    kept = tf.where(occluded, 0.0, ks)
    korder = tf.argsort(ks, axis=1, direction="DESCENDING", stable=True)
    rescored = _ordered_sum(tf.gather(kept, korder, batch_dims=1)) / float(NUM_KP)
    final = tf.where(valid, rescored, -np.inf)
    order = tf.argsort(final, direction="DESCENDING", stable=True)
    final = tf.gather(final, order)
    n_out = tf.reduce_sum(tf.cast(final >= thr32, tf.int32))
    out_ok = tf.range(max_det) < n_out
    kp = tf.stack([tf.gather(ys, order), tf.gather(xs, order)], -1) * float(stride)
    kp = tf.where(out_ok[:, None, None], kp, 0.0)
    kscores = tf.where(out_ok[:, None], tf.gather(ks, order), 0.0)
    return kp, kscores, tf.where(out_ok, final, 0.0), n_out


def instance_masks(longs: Any, keypoints: Any, n: Any, stride: int) -> Any:
    """BodyPix masks ``[M, H, W]`` from block-space long offsets ``[H, W, 34]`` and pixel keypoints."""
    h, w = int(longs.shape[0]), int(longs.shape[1])
    max_det = int(keypoints.shape[0])
    flat = tf.reshape(longs, [-1])
    gy, gx = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
    y = tf.tile(tf.reshape(gy, [-1, 1]), [1, NUM_KP])
    x = tf.tile(tf.reshape(gx, [-1, 1]), [1, NUM_KP])
    k = tf.range(NUM_KP)[None, :]
    for _ in range(MASK_REFINE_STEPS + 1):
        oy = _sample(flat, h, w, 2 * NUM_KP, y, x, k)
        ox = _sample(flat, h, w, 2 * NUM_KP, y, x, k + NUM_KP)
        y = tf.clip_by_value(y + oy, 0.0, h - 1.0)
        x = tf.clip_by_value(x + ox, 0.0, w - 1.0)
    ey, ex = y * float(stride), x * float(stride)  # [HW, 17]
    dist = _ordered_sum(_sq_dist(ey[:, None, :], ex[:, None, :], keypoints[None, :, :, 0], keypoints[None, :, :, 1]))
    dist = tf.where(tf.range(max_det)[None, :] < n, dist, np.inf)
    idx = tf.where(n > 0, tf.argmin(dist, axis=1, output_type=tf.int32), 0)  # no pose: all cells go to mask 0
    return tf.transpose(tf.reshape(tf.one_hot(idx, max_det), [h, w, max_det]), [2, 0, 1])


@register("CUSTOM:PosenetDecoderOp", check=_check)
def posenet_decoder(ctx: OpContext) -> list[Any]:
    """Decoding is sequential (greedy roots, NMS against accepted poses): a ``tf.while_loop`` over the
    sorted candidates with a fixed tree walk (inner loop) per pose."""
    p = _params(ctx.op)
    stride, max_det = int(p["stride"]), int(p["max_detections"])
    inv = np.float32(1.0 / stride)
    hm = tf.cast(ctx.input(0), tf.float32)[0]
    short = tf.cast(ctx.input(1), tf.float32)[0] * inv
    mid = tf.cast(ctx.input(2), tf.float32)[0] * inv
    kp, ks, ps, n = decode_poses(hm, short, mid, max_det, float(p["score_threshold"]), stride, float(p["nms_radius"]))
    outs = [kp[None], ks[None], ps[None], tf.cast(n, tf.float32)[None]]
    if ctx.num_inputs == 4:
        longs = tf.cast(ctx.input(3), tf.float32)[0] * inv
        outs.append(instance_masks(longs, kp, n, stride)[None])
    return outs
