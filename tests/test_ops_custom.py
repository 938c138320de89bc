"""Custom ops: MediaPipe kernels, TFLite_Detection_PostProcess and Flex ops.

The stock interpreter runs TFLite_Detection_PostProcess and (through its XNNPACK delegate) three
MediaPipe ops; every MediaPipe op is also checked against a numpy transcription of MediaPipe's own
reference kernel (``mediapipe/util/tflite/operations/*.cc``), which is what defines the op. Flex
models cannot run in the stock interpreter; they are checked against the same TF code run directly.
"""

from __future__ import annotations

import json
import math
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf
from flatbuffers import flexbuffers

from tflite_inverter.errors import UnsupportedOpError
from tflite_inverter.model.reader import read_model
from tflite_inverter.rebuild import check_supported

from .conftest import corpus_file
from .helpers import run_interpreter, run_rebuilt, to_tflite
from .tflite_builder import build_model

RNG = np.random.default_rng(0)
SAME, VALID = 1, 2
MY_FAMILIES = ("misc", "sparse", "custom.")


def pool_opts(padding: int, sw: int, sh: int, fw: int, fh: int, act: int = 0) -> bytes:
    """A raw TfLitePoolParams struct as MediaPipe files store it (6 ints, then runtime scratch)."""
    return struct.pack("<6i", padding, sw, sh, fw, fh, act) + b"\xff" * 8


def pool_out(size: int, f: int, s: int, padding: int) -> int:
    return (size + s - 1) // s if padding == SAME else (size - f + s) // s


def compute_padding(stride: int, in_size: int, f: int, out_size: int) -> int:
    return max(((out_size - 1) * stride + f - in_size) // 2, 0)


def c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


# -- numpy references of MediaPipe's kernels ---------------------------------------------------------
def ref_max_pool_argmax(x, padding, sw, sh, fw, fh, act=0):
    b, h, w, c = x.shape
    oh, ow = pool_out(h, fh, sh, padding), pool_out(w, fw, sw, padding)
    ph, pw = compute_padding(sh, h, fh, oh), compute_padding(sw, w, fw, ow)
    vals = np.zeros((b, oh, ow, c), np.float32)
    idx = np.zeros((b, oh, ow, c), np.float32)
    lo, hi = {0: (-np.inf, np.inf), 1: (0, np.inf), 2: (-1, 1), 3: (0, 6)}.get(act, (-np.inf, np.inf))
    for n in range(b):
        for oy in range(oh):
            for ox in range(ow):
                for ch in range(c):
                    x0, y0 = ox * sw - pw, oy * sh - ph
                    best, my, mx = np.finfo(np.float32).min, 0, 0
                    for fy in range(max(0, -y0), min(fh, h - y0)):
                        for fx in range(max(0, -x0), min(fw, w - x0)):
                            v = x[n, y0 + fy, x0 + fx, ch]
                            if v > best:
                                best, my, mx = v, fy, fx
                    vals[n, oy, ox, ch] = min(max(best, lo), hi)
                    idx[n, oy, ox, ch] = np.float32(my * fw + mx) + np.float32(0.1)
    return vals, idx


def ref_unpool_mediapipe(x, idx, padding, sw, sh, fw, fh):
    b, h, w, c = x.shape
    oh, ow = h * fh, w * fw
    ph, pw = compute_padding(sh, oh, fh, h), compute_padding(sw, ow, fw, w)
    out = np.zeros((b, oh, ow, c), np.float32)
    for n in range(b):
        for y in range(h):
            for xx in range(w):
                for ch in range(c):
                    k = int(idx[n, y, xx, ch])
                    ky, kx = c_div(k, fw), k - c_div(k, fw) * fw
                    ty, tx = y * sh - ph + ky, xx * sw - pw + kx
                    if 0 <= tx < ow and 0 <= ty < oh:
                        out[n, ty, tx, ch] = x[n, y, xx, ch]
    return out


def ref_unpool_perception(x, idx, padding, sw, sh, fw, fh):
    b, h, w, c = x.shape
    oh = h * sh if padding == SAME else (h - 1) * sh + fh
    ow = w * sw if padding == SAME else (w - 1) * sw + fw
    out = np.zeros((b, oh * ow * c), np.float32)
    for n in range(b):
        for v, k in zip(x[n].reshape(-1), idx[n].reshape(-1)):
            if 0 <= k < oh * ow * c:
                out[n, k] = v
    return out.reshape(b, oh, ow, c)


def ref_tconv_bias(x, w, bias, padding, sw, sh):
    b, h, wd, cin = x.shape
    o, kh, kw, _ = w.shape
    ph = max(0, kh - (h - 1) % sh - 1) if padding == SAME else 0
    pw = max(0, kw - (wd - 1) % sw - 1) if padding == SAME else 0
    oh, ow = sh * (h - 1) + kh - ph, sw * (wd - 1) + kw - pw
    out = np.zeros((b, oh, ow, o), np.float64) + bias
    for n in range(b):
        for y in range(h):
            for xx in range(wd):
                for fy in range(kh):
                    for fx in range(kw):
                        ty, tx = y * sh - ph // 2 + fy, xx * sw - pw // 2 + fx
                        if 0 <= ty < oh and 0 <= tx < ow:
                            out[n, ty, tx] += w[:, fy, fx, :] @ x[n, y, xx, :]
    return out.astype(np.float32)


def _rot(a):
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def ref_landmarks_to_matrix_v1(lm, o):
    p = lm.reshape(-1, 3).astype(np.float64)
    left, right = p[o["left_rotation_idx"]], p[o["right_rotation_idx"]]
    alpha = -math.atan((right[1] - left[1]) / (right[0] - left[0]))
    sub = p[o["subset"]]
    rx = sub[:, 0] * math.cos(alpha) - sub[:, 1] * math.sin(alpha)
    ry = sub[:, 0] * math.sin(alpha) + sub[:, 1] * math.cos(alpha)
    mx_, my_ = max(rx.max(), -1e5), max(ry.max(), -1e5)
    nx_, ny_ = min(rx.min(), 1e5), min(ry.min(), 1e5)
    rng, mult = o["landmarks_range"], o["bbox_size_multiplier"]
    bx, by = (mx_ - nx_) * mult, (my_ - ny_) * mult
    cx, cy = (mx_ + nx_) / 2, (my_ + ny_) / 2
    rcx = cx * math.cos(-alpha) - cy * math.sin(-alpha)
    rcy = cx * math.sin(-alpha) + cy * math.cos(-alpha)
    scale = np.diag([bx / rng, by / rng, 1.0])
    rot = _rot(-alpha)
    rot[0, 2], rot[1, 2] = rcx / rng * 2 - 1, rcy / rng * 2 - 1
    (ih, iw), (oh, ow) = o["input_hw"], o["output_hw"]
    to_rel = np.array([[2 / (ow - 1), 0, -1], [0, 2 / (oh - 1), -1], [0, 0, 1]])
    to_abs = np.array([[(iw - 1) / 2, 0, (iw - 1) / 2], [0, (ih - 1) / 2, (ih - 1) / 2], [0, 0, 1]])
    m = to_abs @ rot @ scale @ to_rel
    out = np.array([m[0, 0], m[0, 1], 0, m[0, 2], m[1, 0], m[1, 1], 0, m[1, 2],
                    m[2, 0], m[2, 1], m[2, 2], 0, 0, 0, 0, 1])
    return out.reshape(1, 4, 4).astype(np.float32)


def ref_landmarks_to_matrix_v2(lm, o):
    p = lm.reshape(-1, 3).astype(np.float64)
    left, right = p[o["left_rotation_idx"]], p[o["right_rotation_idx"]]
    r = o["target_rotation_radians"] - math.atan2(right[1] - left[1], right[0] - left[0])
    sub = np.concatenate([p[o["subset_idxs"], :2], np.ones((len(o["subset_idxs"]), 1))], axis=1)
    rotated = sub @ _rot(r).T
    mx_, nx_ = rotated[:, 0].max(), rotated[:, 0].min()
    my_, ny_ = rotated[:, 1].max(), rotated[:, 1].min()
    center = _rot(-r) @ np.array([(mx_ + nx_) / 2, (my_ + ny_) / 2, 1.0])
    t = np.eye(4)
    t[0, 3], t[1, 3] = center[0], center[1]
    rot = np.eye(4)
    rot[:2, :2] = _rot(-r)[:2, :2]
    scale = np.diag([o["scale_x"] * (mx_ - nx_) / o["output_width"], o["scale_y"] * (my_ - ny_) / o["output_height"],
                     1, 1])
    shift = np.eye(4)
    shift[0, 3], shift[1, 3] = -o["output_width"] / 2, -o["output_height"] / 2
    return (t @ rot @ scale @ shift).reshape(1, 4, 4).astype(np.float32)


def ref_transform_landmarks(lm, m, dims, scale):
    flat = m.reshape(-1)
    pts = lm.reshape(-1, dims).astype(np.float32)
    out = pts.copy()
    out[:, 0] = flat[0] * pts[:, 0] + flat[1] * pts[:, 1] + flat[3] * np.float32(scale)
    out[:, 1] = flat[4] * pts[:, 0] + flat[5] * pts[:, 1] + flat[7] * np.float32(scale)
    return out.reshape(lm.shape)


def ref_transform_tensor(x, m, out_hw, out_c, version):
    f = m.reshape(-1)[:8].astype(np.float32)
    xt, yt = f[:4].copy(), f[4:8].copy()
    if version >= 2:
        xt[3] += xt[0] * 0.5 + xt[1] * 0.5 - 0.5
        yt[3] += yt[0] * 0.5 + yt[1] * 0.5 - 0.5
    h, w = x.shape[1:3]
    out = np.zeros((1, *out_hw, out_c), np.float32)

    def read(yy, xx, ch):
        return 0.0 if yy < 0 or xx < 0 or yy >= h or xx >= w else x[0, yy, xx, ch]

    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            tx = np.float32(xt[0] * ox + xt[1] * oy + xt[3])
            ty = np.float32(yt[0] * ox + yt[1] * oy + yt[3])
            if tx < 0 or tx > w - 1 or ty < 0 or ty > h - 1:
                continue
            fx, fy = int(math.floor(tx)), int(math.floor(ty))
            rc, lc = tx - fx, ty - fy
            for ch in range(out_c):
                up = (1 - rc) * read(fy, fx, ch) + rc * read(fy, fx + 1, ch)
                lo = (1 - rc) * read(fy + 1, fx, ch) + rc * read(fy + 1, fx + 1, ch)
                out[0, oy, ox, ch] = lc * lo + (1 - lc) * up
    return out


def custom_model(code, inputs, outputs, options, consts=None, version=1):
    """One custom op: ``inputs``/``outputs`` are (name, shape, type) and ``consts`` maps an input
    position to its constant data."""
    consts = consts or {}
    tensors, graph_inputs = [], []
    for i, (name, shape, tname) in enumerate(inputs):
        if i in consts:
            tensors.append((name, shape, tname, consts[i]))
        else:
            tensors.append((name, shape, tname))
            graph_inputs.append(i)
    tensors += list(outputs)
    outs = list(range(len(inputs), len(inputs) + len(outputs)))
    return build_model(tensors=tensors, inputs=graph_inputs, outputs=outs,
                       ops=[(f"CUSTOM:{code}", list(range(len(inputs))), outs, None, None, options, version)])


def interpreter_runs(model, inputs) -> bool:
    try:
        run_interpreter(model, inputs)
        return True
    except (RuntimeError, ValueError):
        return False


# -- Convolution2DTransposeBias ----------------------------------------------------------------------
@pytest.mark.parametrize("padding", [SAME, VALID])
@pytest.mark.parametrize("hw,kernel,stride", [((3, 3), (3, 3), 2), ((4, 5), (2, 2), 2), ((4, 4), (4, 4), 2),
                                              ((3, 4), (3, 2), 1), ((3, 3), (1, 1), 3), ((2, 3), (4, 3), 3)])
def test_transpose_conv_bias_matches_mediapipe_kernel(padding, hw, kernel, stride):
    (h, w), (kh, kw) = hw, kernel
    wts = RNG.normal(size=(4, kh, kw, 2)).astype(np.float32)
    bias = RNG.normal(size=4).astype(np.float32)
    x = RNG.normal(size=(1, h, w, 2)).astype(np.float32)
    ref = ref_tconv_bias(x, wts, bias, padding, stride, stride)
    m = custom_model("Convolution2DTransposeBias",
                     [("x", [1, h, w, 2], "FLOAT32"), ("w", [4, kh, kw, 2], "FLOAT32"), ("b", [4], "FLOAT32")],
                     [("y", list(ref.shape), "FLOAT32")], struct.pack("<3i", padding, stride, stride),
                     {1: wts, 2: bias})
    got = run_rebuilt(m, [x])[0]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-5
    if interpreter_runs(m, [x]):  # XNNPACK's implementation, where it accepts the parameters
        assert np.abs(run_interpreter(m, [x])[0] - got).max() < 1e-5


def test_transpose_conv_bias_refuses_unknown_padding():
    m = custom_model("Convolution2DTransposeBias",
                     [("x", [1, 2, 2, 1], "FLOAT32"), ("w", [1, 2, 2, 1], "FLOAT32"), ("b", [1], "FLOAT32")],
                     [("y", [1, 4, 4, 1], "FLOAT32")], struct.pack("<3i", 0, 2, 2),
                     {1: np.ones((1, 2, 2, 1)), 2: np.zeros(1)})
    with pytest.raises(UnsupportedOpError, match="padding enum 0"):
        check_supported(read_model(m))


# -- MaxPoolingWithArgmax2D / MaxUnpooling2D -----------------------------------------------------------
@pytest.mark.parametrize("padding", [SAME, VALID])
@pytest.mark.parametrize("hw,f,s", [((4, 4), 2, 2), ((5, 7), 2, 2), ((6, 6), 3, 2), ((5, 5), 3, 3), ((4, 6), 3, 1)])
@pytest.mark.parametrize("act", [0, 3])
def test_max_pool_argmax_matches_mediapipe_kernel(padding, hw, f, s, act):
    h, w = hw
    x = (RNG.normal(size=(2, h, w, 3)) * 4).astype(np.float32)
    x[0, 0, :2, 0] = 1.5  # a tie: the first maximum in window order wins
    vals, idx = ref_max_pool_argmax(x, padding, s, s, f, f, act)
    m = custom_model("MaxPoolingWithArgmax2D", [("x", [2, h, w, 3], "FLOAT32")],
                     [("v", list(vals.shape), "FLOAT32"), ("i", list(vals.shape), "FLOAT32")],
                     pool_opts(padding, s, s, f, f, act))
    got_v, got_i = run_rebuilt(m, [x])
    np.testing.assert_array_equal(got_v, vals)
    np.testing.assert_array_equal(got_i, idx)
    if interpreter_runs(m, [x]):
        # XNNPACK computes the same maxima (its index output uses another encoding: raw int bits).
        np.testing.assert_array_equal(run_interpreter(m, [x])[0], got_v)


@pytest.mark.parametrize("hw", [(4, 4), (6, 4), (4, 8)])
def test_pool_then_unpool_matches_interpreter(hw):
    """XNNPACK runs the MaxPoolingWithArgmax2D -> MaxUnpooling2D pair of segmentation models."""
    h, w = hw
    pool = pool_opts(VALID, 2, 2, 2, 2)
    m = build_model(tensors=[("x", [1, h, w, 3], "FLOAT32"), ("v", [1, h // 2, w // 2, 3], "FLOAT32"),
                             ("i", [1, h // 2, w // 2, 3], "FLOAT32"), ("o", [1, h, w, 3], "FLOAT32")],
                    ops=[("CUSTOM:MaxPoolingWithArgmax2D", [0], [1, 2], None, None, pool),
                         ("CUSTOM:MaxUnpooling2D", [1, 2], [3], None, None, pool)],
                    inputs=[0], outputs=[3])
    x = RNG.normal(size=(1, h, w, 3)).astype(np.float32)
    ref = run_interpreter(m, [x])[0]
    got = run_rebuilt(m, [x])[0]
    np.testing.assert_array_equal(got, ref)
    assert np.count_nonzero(got) == x.size // 4


@pytest.mark.parametrize("padding,stride,f", [(VALID, 2, 2), (SAME, 2, 2), (VALID, 1, 3), (SAME, 3, 2)])
def test_max_unpooling_mediapipe_float_indices(padding, stride, f):
    x = RNG.normal(size=(2, 3, 4, 2)).astype(np.float32)
    idx = RNG.integers(-2, f * f + 2, size=x.shape).astype(np.float32) + 0.1  # some out of range
    ref = ref_unpool_mediapipe(x, idx, padding, stride, stride, f, f)
    m = custom_model("MaxUnpooling2D", [("x", list(x.shape), "FLOAT32"), ("i", list(x.shape), "FLOAT32")],
                     [("o", list(ref.shape), "FLOAT32")], pool_opts(padding, stride, stride, f, f))
    got = run_rebuilt(m, [x, idx])[0]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("code", ["MaxUnpooling2D", "LiteRtMaxUnpooling2D"])
@pytest.mark.parametrize("padding,sw,sh,f", [(SAME, 2, 2, 2), (VALID, 3, 2, 2)])
def test_max_unpooling_perception_int_indices(code, padding, sw, sh, f):
    """The TFLite perception kernel (int32 flat indices, as tf.nn.max_pool_with_argmax gives)."""
    x = RNG.normal(size=(2, 2, 4, 2)).astype(np.float32)
    oh = x.shape[1] * sh if padding == SAME else (x.shape[1] - 1) * sh + f
    ow = x.shape[2] * sw if padding == SAME else (x.shape[2] - 1) * sw + f
    size = oh * ow * 2
    idx = RNG.integers(0, size, size=x.shape).astype(np.int32)
    idx[0, 0, 0, 0] = idx[0, 0, 1, 0]  # a collision: the later write wins
    ref = ref_unpool_perception(x, idx, padding, sw, sh, f, f)
    m = custom_model(code, [("x", list(x.shape), "FLOAT32"), ("i", list(x.shape), "INT32")],
                     [("o", list(ref.shape), "FLOAT32")], pool_opts(padding, sw, sh, f, f))
    got = run_rebuilt(m, [x, idx])[0]
    np.testing.assert_array_equal(got, ref)


# -- landmark / transform ops ------------------------------------------------------------------------
def test_landmarks_to_transform_matrix_v1():
    o = {"input_hw": [256, 192], "output_hw": [64, 48], "dimensions": 3, "landmarks_range": 64,
         "bbox_size_multiplier": 1.25, "left_rotation_idx": 2, "right_rotation_idx": 5, "subset": [0, 1, 3, 4, 6]}
    lm = (RNG.uniform(0, 64, size=(1, 1, 1, 8 * 3))).astype(np.float32)
    m = custom_model("Landmarks2TransformMatrix", [("l", [1, 1, 1, 24], "FLOAT32")], [("m", [1, 4, 4], "FLOAT32")],
                     flexbuffers.Dumps(o), version=1)
    got = run_rebuilt(m, [lm])[0]
    np.testing.assert_allclose(got, ref_landmarks_to_matrix_v1(lm, o), rtol=1e-4, atol=1e-4)


def test_landmarks_to_transform_matrix_v2():
    o = {"subset_idxs": [0, 1, 3, 4, 6], "left_rotation_idx": 2, "right_rotation_idx": 5,
         "target_rotation_radians": 0.3, "output_height": 32, "output_width": 48, "scale_x": 1.5, "scale_y": 1.2}
    lm = RNG.uniform(0, 100, size=(1, 8, 3)).astype(np.float32)
    m = custom_model("Landmarks2TransformMatrix", [("l", [1, 8, 3], "FLOAT32")], [("m", [1, 4, 4], "FLOAT32")],
                     flexbuffers.Dumps(o), version=2)
    got = run_rebuilt(m, [lm])[0]
    np.testing.assert_allclose(got, ref_landmarks_to_matrix_v2(lm, o), rtol=1e-4, atol=1e-3)


def test_landmarks_to_transform_matrix_refuses_out_of_range_landmark():
    o = {"subset_idxs": [0, 9], "left_rotation_idx": 2, "right_rotation_idx": 5, "target_rotation_radians": 0.0,
         "output_height": 32, "output_width": 48, "scale_x": 1.0, "scale_y": 1.0}
    m = custom_model("Landmarks2TransformMatrix", [("l", [1, 8, 3], "FLOAT32")], [("m", [1, 4, 4], "FLOAT32")],
                     flexbuffers.Dumps(o), version=2)
    with pytest.raises(UnsupportedOpError, match="outside the 8 landmarks"):
        check_supported(read_model(m))


@pytest.mark.parametrize("dims,scale", [(2, 1.0), (3, 1.0), (3, 0.5)])
def test_transform_landmarks_v1(dims, scale):
    lm = RNG.normal(size=(1, 2, 3, 4 * dims)).astype(np.float32)
    mat = RNG.normal(size=(1, 4, 4)).astype(np.float32)
    m = custom_model("TransformLandmarks", [("l", list(lm.shape), "FLOAT32"), ("m", [1, 4, 4], "FLOAT32")],
                     [("o", list(lm.shape), "FLOAT32")], flexbuffers.Dumps({"dimensions": dims, "scale": scale}))
    got = run_rebuilt(m, [lm, mat])[0]
    np.testing.assert_allclose(got, ref_transform_landmarks(lm, mat, dims, scale), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_transform_landmarks_v2(dims):
    lm = RNG.normal(size=(1, 7, dims)).astype(np.float32)
    mat = RNG.normal(size=(1, 4, 4)).astype(np.float32)
    m = custom_model("TransformLandmarks", [("l", list(lm.shape), "FLOAT32"), ("m", [1, 4, 4], "FLOAT32")],
                     [("o", list(lm.shape), "FLOAT32")], b"", version=2)
    got = run_rebuilt(m, [lm, mat])[0]
    np.testing.assert_allclose(got, ref_transform_landmarks(lm, mat, dims, 1.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("code,version,options", [
    ("TransformTensor", 1, {"mode": "bilinear", "output_size": [5, 6]}),
    ("TransformTensorBilinear", 2, {"output_height": 5, "output_width": 6}),
])
def test_transform_tensor_bilinear(code, version, options):
    x = RNG.normal(size=(1, 6, 7, 3)).astype(np.float32)
    a = 0.4
    mat = np.eye(4, dtype=np.float32)
    mat[:2, :2] = [[math.cos(a) * 1.1, -math.sin(a)], [math.sin(a), math.cos(a) * 0.9]]
    mat[0, 3], mat[1, 3] = 1.3, -0.7  # some samples land outside the input
    mat = mat.reshape(1, 4, 4)
    m = custom_model(code, [("x", list(x.shape), "FLOAT32"), ("m", [1, 4, 4], "FLOAT32")],
                     [("o", [1, 5, 6, 2], "FLOAT32")], flexbuffers.Dumps(options), version=version)
    got = run_rebuilt(m, [x, mat])[0]
    ref = ref_transform_tensor(x, mat, (5, 6), 2, version)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert np.count_nonzero(ref == 0) > 0 and np.count_nonzero(ref) > 10


# -- TFLite_Detection_PostProcess ---------------------------------------------------------------------
def detection_model(n, classes, background, opts, batch=1, enc=4, quantized=False):
    anchors = np.stack([RNG.uniform(0.2, 0.8, n), RNG.uniform(0.2, 0.8, n), RNG.uniform(0.1, 0.4, n),
                        RNG.uniform(0.1, 0.4, n)], 1).astype(np.float32)
    d = opts["max_detections"] * opts["max_classes_per_detection"]
    c = classes + background
    if quantized:
        box_t = ("boxes", [batch, n, enc], "UINT8", None, {"scale": [0.05], "zero_point": [128]})
        score_t = ("scores", [batch, n, c], "UINT8", None, {"scale": [1 / 255], "zero_point": [0]})
        anchor_t = ("anchors", [n, 4], "UINT8", np.round(anchors / 0.004).astype(np.uint8),
                    {"scale": [0.004], "zero_point": [0]})
    else:
        box_t, score_t = ("boxes", [batch, n, enc], "FLOAT32"), ("scores", [batch, n, c], "FLOAT32")
        anchor_t = ("anchors", [n, 4], "FLOAT32", anchors)
    tensors = [box_t, score_t, anchor_t, ("ob", [batch, d, 4], "FLOAT32"), ("oc", [batch, d], "FLOAT32"),
               ("os", [batch, d], "FLOAT32"), ("on", [batch], "FLOAT32")]
    return build_model(tensors=tensors, inputs=[0, 1], outputs=[3, 4, 5, 6],
                       ops=[("CUSTOM:TFLite_Detection_PostProcess", [0, 1, 2], [3, 4, 5, 6], None, None,
                             flexbuffers.Dumps(opts))])


def det_opts(regular, max_cls, classes, **kw):
    o = dict(max_detections=10, max_classes_per_detection=max_cls, detections_per_class=4, use_regular_nms=regular,
             nms_score_threshold=0.3, nms_iou_threshold=0.5, num_classes=classes, y_scale=10.0, x_scale=10.0,
             h_scale=5.0, w_scale=5.0)
    o.update(kw)
    return o


def assert_detections_equal(ref, got, opts, batch_index=0):
    """Compare the slots the TFLite kernel writes (the rest of its outputs is uninitialized); ``ref``
    is a batch-1 interpreter run, ``got[...][batch_index]`` the rebuilt batch element."""
    n = int(ref[3].reshape(-1)[0])
    assert int(got[3][batch_index]) == n
    mc = opts["max_classes_per_detection"]
    if opts["use_regular_nms"]:
        slots = list(range(n))
    else:
        k = min(mc, opts["num_classes"])
        slots = [j * mc + col for j in range(n) for col in range(k)]
    for r, g in zip(ref[:3], got[:3]):
        np.testing.assert_array_equal(g[batch_index][slots], r[0][slots])
    return n


@pytest.mark.parametrize("regular", [False, True])
@pytest.mark.parametrize("max_cls", [1, 3])
@pytest.mark.parametrize("background", [0, 1])
def test_detection_postprocess_matches_interpreter(regular, max_cls, background):
    opts = det_opts(regular, max_cls, 4)
    m = detection_model(60, 4, background, opts, enc=4 if background else 6)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = [rng.normal(size=(1, 60, 4 if background else 6)).astype(np.float32),
             rng.uniform(size=(1, 60, 4 + background)).astype(np.float32)]
        x[1][0, 5, background] = 0.3  # exactly at the score threshold: kept (>=)
        n = assert_detections_equal(run_interpreter(m, x), run_rebuilt(m, x), opts)
        assert n > 0


def test_detection_postprocess_more_classes_per_detection_than_classes():
    opts = det_opts(False, 3, 2)
    m = detection_model(30, 2, 1, opts)
    x = [RNG.normal(size=(1, 30, 4)).astype(np.float32), RNG.uniform(size=(1, 30, 3)).astype(np.float32)]
    got = run_rebuilt(m, x)
    assert_detections_equal(run_interpreter(m, x), got, opts)
    assert np.all(got[1][0, 2::3] == 0)  # the third slot of each detection stays empty


@pytest.mark.parametrize("regular", [False, True])
def test_detection_postprocess_quantized_inputs(regular):
    opts = det_opts(regular, 1, 3)
    m = detection_model(40, 3, 1, opts, quantized=True)
    x = [RNG.integers(0, 256, size=(1, 40, 4)).astype(np.uint8), RNG.integers(0, 256, size=(1, 40, 4)).astype(np.uint8)]
    assert_detections_equal(run_interpreter(m, x), run_rebuilt(m, x), opts)


@pytest.mark.parametrize("regular", [False, True])
def test_detection_postprocess_batch_is_per_element(regular):
    """TFLite runs batch 1 only; a batch-2 model must equal two batch-1 runs."""
    opts = det_opts(regular, 1, 3)
    state = RNG.bit_generator.state
    m2 = detection_model(20, 3, 1, opts, batch=2)
    RNG.bit_generator.state = state
    m1 = detection_model(20, 3, 1, opts, batch=1)  # same anchors
    x = [RNG.normal(size=(2, 20, 4)).astype(np.float32), RNG.uniform(size=(2, 20, 4)).astype(np.float32)]
    got = run_rebuilt(m2, x)
    for b in range(2):
        ref = run_interpreter(m1, [x[0][b:b + 1], x[1][b:b + 1]])
        assert_detections_equal(ref, got, opts, batch_index=b)


def test_detection_postprocess_refuses_bad_iou_threshold():
    m = detection_model(10, 2, 1, det_opts(False, 1, 2, nms_iou_threshold=1.5))
    with pytest.raises(UnsupportedOpError, match="nms_iou_threshold"):
        check_supported(read_model(m))


# -- Flex ----------------------------------------------------------------------------------------------
FLEX_CASES = {
    "det": (lambda x: tf.linalg.det(x), [tf.TensorSpec([2, 3, 3], tf.float32)], "FlexMatrixDeterminant"),
    "bincount": (lambda x: tf.raw_ops.Bincount(arr=x, size=5, weights=tf.zeros([0], tf.float32)),
                 [tf.TensorSpec([6], tf.int32)], "FlexBincount"),
    "strings": (lambda x: tf.strings.length(tf.strings.as_string(x, precision=2)), [tf.TensorSpec([4], tf.float32)],
                "FlexAsString"),
    "qr": (lambda x: tf.linalg.qr(x), [tf.TensorSpec([3, 3], tf.float32)], "FlexQr"),
    "unique_with_counts": (lambda x: tf.unique_with_counts(x), [tf.TensorSpec([6], tf.int32)],
                           "FlexUniqueWithCounts"),
    "stitch": (lambda a, i: tf.raw_ops.DynamicStitch(indices=[i, i + 2], data=[a, a * 2]),
               [tf.TensorSpec([2], tf.float32), tf.TensorSpec([2], tf.int32)], "FlexDynamicStitch"),
    "string_join": (lambda x: tf.strings.length(tf.strings.join([tf.strings.as_string(x), tf.strings.as_string(x * 2)],
                                                                separator="--")),
                    [tf.TensorSpec([2], tf.float32)], "FlexStringJoin"),
}


@pytest.mark.parametrize("case", sorted(FLEX_CASES))
def test_flex_op_matches_tensorflow(case):
    fn, specs, op = FLEX_CASES[case]
    model = to_tflite(fn, specs, flex=True)
    keys = [o.key for o in read_model(model).main.operators]
    assert f"CUSTOM:{op}" in keys
    rng = np.random.default_rng(1)
    ins = [rng.uniform(0.1, 0.9, size=s.shape).astype(np.float32) if s.dtype == tf.float32
           else rng.permutation(5)[:s.shape[0]].astype(np.int32) % (2 if case == "stitch" else 5) for s in specs]
    if case == "stitch":
        ins[1] = np.array([1, 0], np.int32)
    ref = fn(*[tf.constant(a) for a in ins])
    ref = list(ref) if isinstance(ref, (list, tuple)) else [ref]
    got = run_rebuilt(model, ins)
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        r = r.numpy()
        assert r.shape == g.shape and r.dtype == g.dtype
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_flex_multinomial_samples_follow_logits():
    """Unseeded Flex Multinomial: nondeterministic on both sides, so compare the distribution."""
    logits = np.log(np.array([[0.1, 0.6, 0.3]], np.float32))
    model = to_tflite(lambda x: tf.random.categorical(x, 20000, dtype=tf.int32), [tf.TensorSpec([1, 3], tf.float32)],
                      flex=True)
    keys = [o.key for o in read_model(model).main.operators]
    assert "CUSTOM:FlexMultinomial" in keys or "MULTINOMIAL" in keys
    got = run_rebuilt(model, [logits])[0]
    assert got.shape == (1, 20000) and got.dtype == np.int32
    freq = np.bincount(got.reshape(-1), minlength=3) / got.size
    np.testing.assert_allclose(freq, [0.1, 0.6, 0.3], atol=0.02)


def test_flex_op_with_bad_options_is_refused():
    m = custom_model("FlexMatrixDeterminant", [("x", [3, 3], "FLOAT32")], [("y", [], "FLOAT32")], b"\x01\x02")
    with pytest.raises(UnsupportedOpError, match="FlexMatrixDeterminant"):
        check_supported(read_model(m))


def test_flex_attribute_name_the_op_does_not_have_is_refused_before_building():
    """A flipped byte in an attribute name (a mutated planestrike's 'output_dtipe') used to reach
    tf.raw_ops as an unexpected keyword argument (TypeError); the check names it with the operator."""
    model = to_tflite(lambda x: tf.strings.length(tf.strings.as_string(x, precision=2)),
                      [tf.TensorSpec([4], tf.float32)], flex=True)
    assert model.count(b"precision") == 1
    bad = read_model(model.replace(b"precision", b"precisiom"))
    with pytest.raises(UnsupportedOpError) as info:
        check_supported(bad)
    msg = str(info.value)
    assert "(CUSTOM:FlexAsString)" in msg and "'precisiom'" in msg and "AsString" in msg
    assert "precision" in msg  # the attributes the op does have are listed
    check_supported(read_model(model))  # the unmutated model passes the same check


def _two_bad_flex_ops() -> bytes:
    """AsString, AsString, StringJoin (all Flex); one AsString's NodeDef names an attribute AsString
    does not have, and the StringJoin operator lists an output more than the op gives."""
    from .tflite_builder import patch_model

    model = to_tflite(lambda x: tf.strings.join([tf.strings.as_string(x, precision=2),
                                                 tf.strings.as_string(x, width=3)]),
                      [tf.TensorSpec([4], tf.float32)], flex=True)
    assert [o.key for o in read_model(model).main.operators] == ["CUSTOM:FlexAsString"] * 2 + ["CUSTOM:FlexStringJoin"]
    check_supported(read_model(model))  # the unmutated model passes
    model = model.replace(b"precision", b"precisiom", 1)  # the first NodeDef holding it

    def extra_output(tree):
        sg = tree["subgraphs"][0]
        sg["tensors"].append({"name": "extra", "shape": [4], "type": 9, "buffer": 0})
        sg["operators"][2]["outputs"] = [*sg["operators"][2]["outputs"], len(sg["tensors"]) - 1]

    return patch_model(model, extra_output)


def test_every_bad_flex_op_is_reported_at_once_before_building(tmp_path):
    """The OpDef checks run in check_supported (the check-everything phase): both bad ops are listed
    in one error, by convert too, and inspect marks both unsupported with the reason."""
    model = _two_bad_flex_ops()
    with pytest.raises(UnsupportedOpError) as info:
        check_supported(read_model(model))
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert any("(CUSTOM:FlexAsString)" in p and "'precisiom'" in p for p in problems), problems
    assert any("operator 2 (CUSTOM:FlexStringJoin)" in p and "StringJoin gives 1 outputs, the operator has 2" in p
               for p in problems), problems
    path = tmp_path / "bad_flex.tflite"
    path.write_bytes(model)
    from tflite_inverter.conversion.pipeline import convert

    with pytest.raises(UnsupportedOpError) as conv:
        convert(str(path), str(tmp_path / "sm"))
    assert len(conv.value.problems) == 2 and not (tmp_path / "sm").exists()
    from tflite_inverter.coverage.report import build_report

    report = build_report(read_model(str(path)))
    assert report["rebuild_summary"]["unsupported_ops"] == 2
    text = json.dumps(report["op_types"], default=str)
    assert "precisiom" in text and "StringJoin gives 1 outputs" in text


# -- corpus ---------------------------------------------------------------------------------------------


def _skip_if_others_missing(model):
    """Every op of the model must be rebuildable (all families exist now: a gap is a failure)."""
    check_supported(model)


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["mediapipe-git__hair_segmentation.tflite",
                                  "PINTO_model_zoo-git__082_meet_segm_full_v679.tflite"])
def test_corpus_mediapipe_segmentation_converts_and_verifies(name, tmp_path):
    from tflite_inverter.conversion.pipeline import convert

    path = corpus_file(name)
    _skip_if_others_missing(read_model(str(path)))
    result = convert(str(path), str(tmp_path / "out"), verify=True)
    assert result.passed and result.checks
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


@pytest.mark.corpus
def test_corpus_litert_max_unpooling_matches_reference():
    path = corpus_file("litert-git__max_unpooling_2d.tflite")
    model = path.read_bytes()
    x = RNG.normal(size=(1, 8, 8, 128)).astype(np.float32)
    # indices as max_pool_with_argmax would give them (a 2x2 window position of each input pixel)
    y, xx, c = np.meshgrid(np.arange(8), np.arange(8), np.arange(128), indexing="ij")
    oy, ox = 2 * y + RNG.integers(0, 2, size=y.shape), 2 * xx + RNG.integers(0, 2, size=y.shape)
    idx = ((oy * 16 + ox) * 128 + c).astype(np.int32)[None]
    got = run_rebuilt(model, [x, idx])[0]
    ref = ref_unpool_perception(x, idx, SAME, 2, 2, 2, 2)
    assert got.shape == (1, 16, 16, 128) and np.isfinite(got).all()
    np.testing.assert_array_equal(got, ref)


@pytest.mark.corpus
def test_corpus_planestrike_flex_multinomial_converts():
    """An unseeded FlexMultinomial picks one of 64 actions; the rebuilt policy must give valid,
    varying actions (exact values are random on both sides)."""
    from tflite_inverter.rebuild import make_module

    path = corpus_file("tf-examples__planestrike_tf_agents.tflite")
    model = read_model(str(path))
    _skip_if_others_missing(model)
    module = make_module(model)
    plan = module.plans[0]
    fn = module.concrete[plan.key]
    feed = {}
    rng = np.random.default_rng(5)  # its own generator: the result must not depend on test order
    for s in plan.inputs:
        shape = [d or 1 for d in s.shape]
        arr = rng.uniform(size=shape) if len(shape) == 3 else np.zeros(shape)
        feed[s.name] = tf.constant(arr.astype(s.dtype.as_numpy_dtype))
    actions = [int(fn(**feed)[plan.outputs[0].name].numpy().reshape(-1)[0]) for _ in range(200)]
    assert all(0 <= a < 64 for a in actions)
    assert len(set(actions)) > 1
