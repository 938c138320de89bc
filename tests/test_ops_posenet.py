"""Coral ``PosenetDecoderOp`` (multi-pose decoder and BodyPix instance masks).

The stock interpreter has no kernel for it, so the reference is a plain numpy/float32 transcription of
libcoral's ``posenet_decoder.cc`` below (libstdc++'s heap algorithms for the root queue, so equal
scores pop in the kernel's order; a plain priority queue for the per-pose backtracking, so the
rebuilder's fixed tree walk is checked against a queue order).
"""

from __future__ import annotations

import heapq
import math
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf
from flatbuffers import flexbuffers

import tflite_inverter.ops.custom.posenet  # noqa: F401  (registers the op until it is in FAMILIES)
from tflite_inverter.model.reader import read_model
from tflite_inverter.rebuild import check_supported, sanitize

from .conftest import corpus_file
from .helpers import run_rebuilt
from .tflite_builder import build_model, patch_model

F = np.float32
K = 17
FWD = [(0, 1), (1, 3), (0, 2), (2, 4), (0, 5), (5, 7), (7, 9), (5, 11), (11, 13), (13, 15),
       (0, 6), (6, 8), (8, 10), (6, 12), (12, 14), (14, 16)]
EDGES = FWD + [(c, p) for p, c in FWD]


# -- numpy reference (float32 scalar arithmetic, in the kernel's order) ------------------------------
def _sample(t, y, x, chans):
    h, w = t.shape[:2]
    yp, xp = min(max(y, F(0)), F(h - 1)), min(max(x, F(0)), F(w - 1))
    y0, y1, x0, x1 = int(math.floor(yp)), int(math.ceil(yp)), int(math.floor(xp)), int(math.ceil(xp))
    yl, xl = F(y - F(y0)), F(x - F(x0))
    one = F(1)
    return [F((one - yl) * F(F((one - xl) * t[y0, x0, c]) + F(xl * t[y0, x1, c]))
              + F(yl * F(F((one - xl) * t[y1, x0, c]) + F(xl * t[y1, x1, c])))) for c in chans]


def _clamp(v, n):
    return min(max(F(v), F(0)), F(n - 1))


def _d2(a, b):
    dy, dx = F(b[0] - a[0]), F(b[1] - a[1])
    return F(F(dy * dy) + F(dx * dx))


def _sigmoid(v):
    return F(F(1) / F(F(1) + np.exp(-F(v))))


def _sorted_sum(vals):
    total = F(0)
    for v in sorted(vals, reverse=True):
        total = F(total + F(v))
    return total


def _backtrack(hm, short, mid, root, root_id):
    h, w = hm.shape[:2]
    children = {p: [(c, k) for k, (pp, c) in enumerate(EDGES) if pp == p] for p in range(K)}
    queue, tick = [(-_sample(hm, *root, [root_id])[0], 0, root, root_id)], 1
    pts, scores = [None] * K, [F(-1e5)] * K
    while queue:
        neg, _, pt, kid = heapq.heappop(queue)
        if pts[kid] is not None:
            continue
        pts[kid], scores[kid] = pt, F(-neg)
        for child, edge in children[kid]:
            if pts[child] is not None:
                continue
            e = edge + 16 if edge > 16 else edge  # the kernel's off-by-one, kept
            oy, ox = _sample(mid, *pt, [e, 16 + e])
            y, x = _clamp(pt[0] + oy, h), _clamp(pt[1] + ox, w)
            for _ in range(5):
                oy, ox = _sample(short, y, x, [child, K + child])
                y, x = _clamp(y + oy, h), _clamp(x + ox, w)
            heapq.heappush(queue, (-_sample(hm, y, x, [child])[0], tick, (y, x), child))
            tick += 1
    return pts, scores


class StdPriorityQueue:
    """``std::priority_queue`` with libstdc++'s heap algorithms (``push_heap``/``pop_heap``), ordered
    by ``key`` with ``<``: equal keys come out in the order the real container gives them."""

    def __init__(self):
        self.c = []

    def _up(self, hole, top, v):
        c = self.c
        parent = (hole - 1) // 2
        while hole > top and c[parent][0] < v[0]:
            c[hole] = c[parent]
            hole, parent = parent, (parent - 1) // 2
        c[hole] = v

    def push(self, key, item):
        self.c.append(None)
        self._up(len(self.c) - 1, 0, (key, item))

    def pop(self):
        c = self.c
        top = c[0]
        if len(c) > 1:
            v, n, hole, child = c[-1], len(c) - 1, 0, 0
            while child < (n - 1) // 2:
                child = 2 * (child + 1)
                if c[child][0] < c[child - 1][0]:
                    child -= 1
                c[hole], hole = c[child], child
            if n % 2 == 0 and child == (n - 2) // 2:
                child = 2 * (child + 1)
                c[hole], hole = c[child - 1], child - 1
            self._up(hole, 0, v)
        c.pop()
        return top

    def __len__(self):
        return len(self.c)


def ref_decode(hm, short, mid, max_det, thr, stride, nms_radius):
    """hm [H,W,17] logits, short/mid in pixels. Returns keypoints, keypoint scores, pose scores, n."""
    hm = hm.astype(F)
    short = (short.astype(F) * F(1.0 / stride)).astype(F)
    mid = (mid.astype(F) * F(1.0 / stride)).astype(F)
    h, w = hm.shape[:2]
    thr = F(thr)
    logit = F(-math.log(1.0 / (float(thr) + 1e-6) - 1.0))
    r2 = F(F(F(nms_radius) / F(stride)) * F(F(nms_radius) / F(stride)))
    queue = StdPriorityQueue()
    for y in range(h):
        for x in range(w):
            for j in range(K):
                s = hm[y, x, j]
                if s >= logit and not (hm[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2, j] > s).any():
                    pt = (_clamp(F(y) + short[y, x, j], h), _clamp(F(x) + short[y, x, K + j], w))
                    queue.push(s, (pt, j))
    poses, kscores, inst = [], [], []
    while len(poses) < max_det and queue:
        _, (pt, j) = queue.pop()
        if any(_d2(pt, p[j]) <= r2 for p in poses):
            continue
        pts, sc = _backtrack(hm, short, mid, pt, j)
        sig = [_sigmoid(v) for v in sc]
        score = F(_sorted_sum(sig) / F(K))
        if score >= thr:
            poses.append(pts)
            kscores.append(sig)
            inst.append(score)
    order = sorted(range(len(poses)), key=lambda i: -inst[i])
    rescored = list(inst)
    for r, i in enumerate(order):
        occ = [any(_d2(poses[i][k], poses[j][k]) <= r2 for j in order[:r]) for k in range(K)]
        rescored[i] = F(_sorted_sum([F(0) if o else v for o, v in zip(occ, kscores[i])]) / F(K))
    order = sorted(range(len(poses)), key=lambda i: -rescored[i])
    kp = np.zeros((max_det, K, 2), F)
    ks = np.zeros((max_det, K), F)
    ps = np.zeros((max_det,), F)
    n = 0
    for i in order:
        if rescored[i] < thr:
            break
        kp[n] = np.array(poses[i], F) * F(stride)
        ks[n], ps[n] = kscores[i], rescored[i]
        n += 1
    return kp, ks, ps, n


def ref_masks(longs, kp, n, stride):
    """longs [33,33,34] in pixels, kp [M,17,2] pixel keypoints -> masks [M,33,33] (slots >= n zero)."""
    longs = (longs.astype(F) * F(1.0 / stride)).astype(F)
    h, w = longs.shape[:2]
    masks = np.zeros((kp.shape[0], h, w), F)
    for y in range(h):
        for x in range(w):
            emb = []
            for i in range(K):
                py, px = F(y), F(x)
                for _ in range(3):
                    oy, ox = _sample(longs, py, px, [i, K + i])
                    py, px = _clamp(py + oy, h), _clamp(px + ox, w)
                emb.append((F(py * F(stride)), F(px * F(stride))))
            dists = []
            for m in range(n):
                d = F(0)
                for p in range(K):
                    d = F(d + _d2(emb[p], kp[m, p]))
                dists.append(d)
            masks[int(np.argmin(dists)) if dists else 0, y, x] = 1.0
    return masks


# -- models -------------------------------------------------------------------------------------------
def decoder_model(h, w, opts, masks=False, quant=None):
    """A model holding only the decoder; ``quant`` = per-input (scale, zero_point) for UINT8 inputs."""
    chans = [K, 2 * K, 64] + ([2 * K] if masks else [])
    names = ["heatmaps", "short", "mid", "long"]
    tensors = []
    for i, c in enumerate(chans):
        if quant:
            tensors.append((names[i], [1, h, w, c], "UINT8", None, {"scale": [quant[i][0]], "zero_point": [quant[i][1]]}))
        else:
            tensors.append((names[i], [1, h, w, c], "FLOAT32"))
    m = opts["max_detections"]
    outs = [("kp", [1, m, K, 2], "FLOAT32"), ("ks", [1, m, K], "FLOAT32"), ("ps", [1, m], "FLOAT32"),
            ("n", [1], "FLOAT32")] + ([("masks", [1, m, 33, 33], "FLOAT32")] if masks else [])
    n_in = len(chans)
    out_idx = list(range(n_in, n_in + len(outs)))
    return build_model(tensors=tensors + outs, inputs=list(range(n_in)), outputs=out_idx,
                       ops=[("CUSTOM:PosenetDecoderOp", list(range(n_in)), out_idx, None, None,
                             flexbuffers.Dumps(opts))])


def opts_of(max_det=10, thr=0.2, stride=16, radius=10.0):
    return {"max_detections": max_det, "score_threshold": thr, "stride": stride, "nms_radius": radius}


def assert_poses_match(got, ref, atol=1e-4):
    kp, ks, ps, n = ref
    assert got[3].shape == (1,) and int(got[3][0]) == n
    assert got[0].shape == (1, *kp.shape) and got[1].shape == (1, *ks.shape) and got[2].shape == (1, *ps.shape)
    np.testing.assert_allclose(got[0][0], kp, atol=atol, rtol=0)
    np.testing.assert_allclose(got[1][0], ks, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got[2][0], ps, atol=1e-6, rtol=0)


# -- (a) hand-computable poses ------------------------------------------------------------------------
def _grid_pose(h, w, cells, logit, stride, hm, mid):
    """Put a pose whose keypoint k sits exactly at ``cells[k]``, with mid offsets along every edge."""
    for k, (y, x) in enumerate(cells):
        hm[y, x, k] = logit
    for e, (p, c) in enumerate(EDGES):
        e2 = e + 16 if e > 16 else e
        (py, px), (cy, cx) = cells[p], cells[c]
        mid[py, px, e2] = (cy - py) * stride
        mid[py, px, 16 + e2] = (cx - px) * stride


def test_posenet_decodes_two_hand_built_poses():
    h, w, stride = 12, 12, 16
    hm = np.full((h, w, K), -8.0, F)
    short = np.zeros((h, w, 2 * K), F)
    mid = np.zeros((h, w, 64), F)
    a = [(k // 6, k % 6) for k in range(K)]          # rows 0-2, cols 0-5
    b = [(6 + k // 6, 6 + k % 6) for k in range(K)]  # rows 6-8, cols 6-11
    _grid_pose(h, w, a, 3.0, stride, hm, mid)
    _grid_pose(h, w, b, 1.0, stride, hm, mid)
    hm[a[5][0], a[5][1], 5] = 4.0  # pose a's root: left shoulder
    model = decoder_model(h, w, opts_of(max_det=4, thr=0.3))
    got = run_rebuilt(model, [hm[None], short[None], mid[None]])
    assert int(got[3][0]) == 2
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    np.testing.assert_allclose(got[0][0, 0], np.array(a, F) * stride, atol=1e-5)
    np.testing.assert_allclose(got[0][0, 1], np.array(b, F) * stride, atol=1e-5)
    np.testing.assert_allclose(got[2][0, :2], [(16 * sig(3) + sig(4)) / 17, sig(1)], atol=1e-6)
    np.testing.assert_allclose(got[1][0, 1], np.full(K, sig(1)), atol=1e-6)
    assert got[1][0, 0, 5] == pytest.approx(sig(4), abs=1e-6)
    assert not got[0][0, 2:].any() and not got[2][0, 2:].any()
    assert_poses_match(got, ref_decode(hm, short, mid, 4, 0.3, stride, 10.0))


def test_posenet_soft_nms_and_threshold_drop_overlapping_pose():
    """A second pose sharing 15 keypoints with the first is rescored to 2/17 of its keypoints and
    dropped under the threshold; with max_detections 1 only the best pose is decoded."""
    h, w, stride = 10, 10, 8
    hm = np.full((h, w, K), -8.0, F)
    short = np.zeros((h, w, 2 * K), F)
    mid = np.zeros((h, w, 64), F)
    a = [(k // 5, k % 5) for k in range(K)]
    b = list(a)
    b[15], b[16] = (8, 8), (8, 9)  # differs only in the ankles
    _grid_pose(h, w, a, 3.0, stride, hm, mid)
    hm[8, 8, 15] = hm[8, 9, 16] = 2.0
    mid2 = mid.copy()
    _grid_pose(h, w, b, 2.0, stride, np.zeros_like(hm), mid2)
    mid[8, 8], mid[8, 9] = mid2[8, 8], mid2[8, 9]  # pose b's ankles lead back into pose a
    for radius, max_det in [(4.0, 3), (4.0, 1)]:
        model = decoder_model(h, w, opts_of(max_det=max_det, thr=0.5, stride=stride, radius=radius))
        got = run_rebuilt(model, [hm[None], short[None], mid[None]])
        ref = ref_decode(hm, short, mid, max_det, 0.5, stride, radius)
        assert_poses_match(got, ref)
        assert int(got[3][0]) == 1


# -- (b) random inputs against the reference ----------------------------------------------------------
@pytest.mark.parametrize("h,w,max_det,thr,stride,radius,seed", [
    (5, 6, 5, 0.2, 16, 10.0, 0),
    (6, 5, 3, 0.4, 8, 20.0, 1),
    (4, 7, 10, 0.1, 16, 40.0, 2),
    (7, 7, 2, 0.3, 32, 5.0, 3),
])
def test_posenet_random_float_inputs_match_reference(h, w, max_det, thr, stride, radius, seed):
    rng = np.random.default_rng(seed)
    hm = rng.normal(0, 2.5, (h, w, K)).astype(F)
    short = rng.normal(0, 0.7 * stride, (h, w, 2 * K)).astype(F)
    mid = rng.normal(0, 1.5 * stride, (h, w, 64)).astype(F)
    model = decoder_model(h, w, opts_of(max_det, thr, stride, radius))
    got = run_rebuilt(model, [hm[None], short[None], mid[None]])
    ref = ref_decode(hm, short, mid, max_det, thr, stride, radius)
    assert ref[3] > 0
    assert_poses_match(got, ref)


def test_posenet_uint8_inputs_are_dequantized_like_the_kernel():
    rng = np.random.default_rng(5)
    h, w = 6, 6
    quant = [(0.09, 180), (0.7, 134), (1.5, 118)]
    q = [rng.integers(0, 256, (1, h, w, c), dtype=np.uint8) for c in (K, 2 * K, 64)]
    q[0] = np.clip(q[0].astype(int) + 60, 0, 255).astype(np.uint8)
    deq = [((x.astype(F) - F(zp)) * F(s))[0] for x, (s, zp) in zip(q, quant)]
    model = decoder_model(h, w, opts_of(8, 0.2, 16, 10.0), quant=quant)
    got = run_rebuilt(model, q)
    ref = ref_decode(*deq, 8, 0.2, 16, 10.0)
    assert ref[3] > 0
    assert_poses_match(got, ref)


def test_root_queue_pops_equal_scores_like_libstdcxx():
    from tflite_inverter.ops.custom.posenet import build_heap, heap_pop

    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 40):
        scores = rng.integers(0, 4, n).astype(F)
        ref = StdPriorityQueue()
        for i, v in enumerate(scores):
            ref.push(v, i)
        want = [ref.pop()[1] for _ in range(n)]

        heap, got = build_heap(tf.constant(scores)), []
        for size in range(n, 0, -1):
            top, heap = heap_pop(heap, tf.constant(size), tf.constant(scores))
            got.append(int(top))
        assert got == want
        assert np.all(np.diff(scores[got]) <= 0)
    assert want != sorted(range(n), key=lambda i: -scores[i])  # ties do not pop in scan order


def test_posenet_tied_roots_follow_the_kernel_queue(monkeypatch):
    """Heatmaps on a coarse grid of values: many roots tie, and max_detections makes the order count."""
    rng = np.random.default_rng(11)
    h, w = 6, 6
    hm = np.round(rng.normal(0, 2.0, (h, w, K))).astype(F)
    short = rng.normal(0, 10, (h, w, 2 * K)).astype(F)
    mid = rng.normal(0, 24, (h, w, 64)).astype(F)
    for max_det in (1, 3):
        model = decoder_model(h, w, opts_of(max_det, 0.2, 16, 10.0))
        got = run_rebuilt(model, [hm[None], short[None], mid[None]])
        assert_poses_match(got, ref_decode(hm, short, mid, max_det, 0.2, 16, 10.0))
    # the case is not vacuous: popping equal scores in scan order would decode other poses
    monkeypatch.setattr(sys.modules[__name__], "StdPriorityQueue", _ScanOrderQueue)
    assert not np.array_equal(got[2][0], ref_decode(hm, short, mid, 3, 0.2, 16, 10.0)[2])


class _ScanOrderQueue:
    """A priority queue popping equal keys first-pushed first (not what the kernel does)."""

    def __init__(self):
        self.c = []

    def push(self, key, item):
        self.c.append((key, item))

    def pop(self):
        return self.c.pop(max(range(len(self.c)), key=lambda j: (self.c[j][0], -j)))

    def __len__(self):
        return len(self.c)


def test_posenet_no_candidate_gives_zero_poses_and_mask_zero_full():
    h = w = 33
    hm = np.full((1, h, w, K), -9.0, F)
    zeros = [np.zeros((1, h, w, c), F) for c in (2 * K, 64, 2 * K)]
    got = run_rebuilt(decoder_model(h, w, opts_of(3), masks=True), [hm, *zeros])
    assert int(got[3][0]) == 0 and not got[0].any() and not got[2].any()
    assert got[4].shape == (1, 3, 33, 33)
    assert (got[4][0, 0] == 1).all() and not got[4][0, 1:].any()  # the kernel assigns every cell to mask 0


def test_posenet_bodypix_masks_match_reference():
    rng = np.random.default_rng(7)
    h = w = 33
    hm = rng.normal(0.0, 2.0, (h, w, K)).astype(F)
    short = rng.normal(0, 8, (h, w, 2 * K)).astype(F)
    mid = rng.normal(0, 24, (h, w, 64)).astype(F)
    longs = rng.normal(0, 40, (h, w, 2 * K)).astype(F)
    model = decoder_model(h, w, opts_of(4, 0.3, 16, 20.0), masks=True)
    got = run_rebuilt(model, [hm[None], short[None], mid[None], longs[None]])
    ref = ref_decode(hm, short, mid, 4, 0.3, 16, 20.0)
    assert ref[3] >= 2
    assert_poses_match(got, ref)
    np.testing.assert_array_equal(got[4][0], ref_masks(longs, ref[0], ref[3], 16))


@pytest.mark.parametrize("change,message", [
    ({"stride": 0}, "stride"),
    ({"max_detections": 0}, "max_detections"),
    ({"nms_radius": None}, "nms_radius"),
])
def test_posenet_refuses_bad_options(change, message):
    opts = {**opts_of(), **change}
    opts = {k: v for k, v in opts.items() if v is not None}
    from tflite_inverter.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match=message):
        check_supported(read_model(decoder_model(4, 4, opts)))


def test_posenet_refuses_wrong_channels():
    from tflite_inverter.errors import UnsupportedOpError

    tensors = [("hm", [1, 4, 4, 16], "FLOAT32"), ("s", [1, 4, 4, 34], "FLOAT32"), ("m", [1, 4, 4, 64], "FLOAT32"),
               ("a", [1], "FLOAT32"), ("b", [1], "FLOAT32"), ("c", [1], "FLOAT32"), ("d", [1], "FLOAT32")]
    model = build_model(tensors=tensors, inputs=[0, 1, 2], outputs=[3, 4, 5, 6],
                        ops=[("CUSTOM:PosenetDecoderOp", [0, 1, 2], [3, 4, 5, 6], None, None,
                              flexbuffers.Dumps(opts_of()))])
    with pytest.raises(UnsupportedOpError, match="heatmaps have shape"):
        check_supported(read_model(model))


# -- (c) corpus models --------------------------------------------------------------------------------


def _patched(model_bytes, threshold):
    """The model with the decoder's score_threshold replaced (other options kept) and the decoder's
    inputs added to the graph outputs, so one run gives the rebuilt heatmaps/offsets too."""
    op = read_model(model_bytes).main.operators[-1]
    opts = {**op.flex_options, "score_threshold": threshold}

    def fn(tree):
        sg = tree["subgraphs"][0]
        for o in sg["operators"]:
            if o.get("custom_options"):
                o["custom_options"] = bytes(flexbuffers.Dumps(opts))
        sg["outputs"] = list(sg["outputs"]) + list(op.inputs)

    return patch_model(model_bytes, fn)


@pytest.mark.corpus
@pytest.mark.parametrize("name,masks", [
    ("coral-test_data__posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite", False),
    ("coral-test_data__bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite", True),
])
def test_corpus_posenet_decoder_matches_reference_on_rebuilt_heatmaps(name, masks, tmp_path):
    """End to end through a SavedModel. No photo of people is at hand, so on the synthetic image the
    heatmaps stay under the model's 0.2 threshold (sigmoid <= 0.06); the threshold is lowered to 0.003
    in a patched copy so that real poses are decoded from the network's own heatmaps."""
    from tflite_inverter.conversion.pipeline import convert

    path = corpus_file(name)
    ir = read_model(str(path))
    assert ir.main.operators[-1].key == "CUSTOM:PosenetDecoderOp"
    check_supported(ir)
    model_bytes = _patched(path.read_bytes(), 0.003)
    (tmp_path / "m.tflite").write_bytes(model_bytes)
    shape = ir.main.tensors[ir.main.inputs[0]].shape
    yy, xx = np.mgrid[0:shape[1], 0:shape[2]]
    rng = np.random.default_rng(0)
    image = np.stack([(128 + 100 * np.sin(yy / 23.0 + c) * np.cos(xx / 31.0 - c)) for c in range(3)], -1)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)[None]
    out = tmp_path / "out"
    convert(str(tmp_path / "m.tflite"), str(out), verify=False)
    loaded = tf.saved_model.load(str(out))
    fn = loaded.signatures["serving_default"]
    res = {k: v.numpy() for k, v in fn(**{fn.structured_input_signature[1].popitem()[0]: tf.constant(image)}).items()}
    op = ir.main.operators[-1]
    kp, ks, ps, n = (res[sanitize(ir.main.tensors[i].name, "")] for i in op.outputs[:4])
    m = int(op.flex_options["max_detections"])
    assert (kp.shape, ks.shape, ps.shape, n.shape) == ((1, m, K, 2), (1, m, K), (1, m), (1,))
    for v in (kp, ks, ps, n):
        assert v.dtype == np.float32 and np.isfinite(v).all()
    deq = []  # the rebuilt network's own decoder inputs, dequantized as the kernel does
    for ti in op.inputs:
        t = ir.main.tensors[ti]
        q = res[sanitize(t.name, "")]
        assert q.dtype == np.uint8
        deq.append(((q.astype(F) - F(t.quantization.zero_point[0])) * F(t.quantization.scale[0]))[0])
    o = op.flex_options
    ref = ref_decode(*deq[:3], m, 0.003, o["stride"], o["nms_radius"])
    assert ref[3] >= 3
    assert_poses_match([kp, ks, ps, n], ref)
    if masks:
        got_masks = res[sanitize(ir.main.tensors[op.outputs[4]].name, "")][0]
        np.testing.assert_array_equal(got_masks, ref_masks(deq[3], ref[0], ref[3], o["stride"]))
        assert got_masks[:ref[3]].sum() == 33 * 33
    shutil.rmtree(out, ignore_errors=True)
