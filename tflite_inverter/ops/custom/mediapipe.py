"""MediaPipe custom ops (``mediapipe/util/tflite/operations``) and TFLite's perception unpooling.

Three of them keep their options as a raw C struct copied into ``custom_options`` (not a FlexBuffer):
``Convolution2DTransposeBias`` stores ``TfLiteTransposeConvParams`` (``int padding, stride_width,
stride_height``), ``MaxPoolingWithArgmax2D`` and ``MaxUnpooling2D`` store ``TfLitePoolParams`` (``int
padding, stride_width, stride_height, filter_width, filter_height, activation`` then runtime scratch).
Padding enum: 1 = SAME, 2 = VALID. The landmark/transform ops use FlexBuffer maps and differ by op
version (V1/V2 are different kernels with different options).

``MaxUnpooling2D`` is also the name of TFLite's perception op (``kernels/perception``), which takes
int32 flat indices instead of MediaPipe's float window indices; the indices' dtype tells them apart
(``LiteRtMaxUnpooling2D`` is the perception kernel under the name LiteRT registers).

None of these has a TensorFlow op of its own, so they are rebuilt from TF primitives that reproduce
the reference kernels element for element (including which writer wins when unpooling targets
collide: the last one in raster order).

Round trip (TFLiteConverter on the rebuilt SavedModel): the unpooling is wrapped in a
``tf.function`` that ``experimental_implements`` TFLite's composite ``addons:MaxUnpooling2D``, which
the converter (``prepare_composite_functions_tf.cc`` / ``perception_ops_utils.cc``) replaces by one
``MaxUnpooling2D`` custom op with a 40-byte ``TfLitePoolParams`` (activation and scratch zeroed).
The converter has no composite for ``MaxPoolingWithArgmax2D`` (nor any path that writes a raw
struct under another name), so that op is built only from ops with TFLite builtins (max pool,
space-to-depth or strided slices, arg max) and comes back as a handful of builtins.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from ..._tf import tf
from ...model.ir import Operator, Subgraph
from ..context import OpContext
from ..registry import register

_SAME, _VALID = 1, 2
#: TfLiteFusedActivation values -> the clamp CalculateActivationRange gives (None: no clamp).
_ACT_RANGE: dict[int, tuple[float, float] | None] = {
    0: None, 1: (0.0, float("inf")), 2: (-1.0, 1.0), 3: (0.0, 6.0), 4: None, 5: None, 6: None,
}


def _ints(op: Operator, n: int) -> tuple[int, ...] | None:
    data = op.custom_options
    if len(data) < 4 * n:
        return None
    return struct.unpack_from(f"<{n}i", data)


def _shape(sg: Subgraph, ti: int) -> tuple[int, ...]:
    return sg.tensors[ti].shape if ti >= 0 else ()


def _pool_params(op: Operator) -> dict[str, int] | None:
    v = _ints(op, 6)
    if v is None:
        return None
    return dict(zip(("padding", "stride_w", "stride_h", "filter_w", "filter_h", "activation"), v))


def _pool_check(op: Operator, sg: Subgraph, need_static: int = 0) -> list[str]:
    p = _pool_params(op)
    if p is None:
        return [f"custom options hold {len(op.custom_options)} bytes, not a TfLitePoolParams struct (24+ bytes)"]
    problems = []
    if p["padding"] not in (_SAME, _VALID):
        problems.append(f"padding enum {p['padding']} (only 1 = SAME and 2 = VALID are defined)")
    for k in ("stride_w", "stride_h", "filter_w", "filter_h"):
        if not 0 < p[k] <= 1 << 16:
            problems.append(f"{k} {p[k]} is not a positive size")
    if p["activation"] not in _ACT_RANGE:
        problems.append(f"fused activation enum {p['activation']} unknown")
    if len(op.inputs) < need_static or any(len(_shape(sg, op.inputs[i])) != 4 or min(_shape(sg, op.inputs[i])) < 0
                                           for i in range(need_static)):
        problems.append("inputs must be 4-D NHWC tensors")
    else:
        for i in range(need_static):
            if any(d <= 0 for d in _shape(sg, op.inputs[i])[1:]):
                problems.append(f"input {i} needs static height, width and channels")
    return problems


def _compute_padding(stride: int, in_size: int, filt: int, out_size: int) -> int:
    """TFLite's ``ComputePadding`` with dilation 1: half the total padding, never negative."""
    return max(((out_size - 1) * stride + filt - in_size) // 2, 0)


def _attr_text(v: Any) -> str:
    if isinstance(v, bool):
        return f"b: {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"i: {v}"
    if isinstance(v, float):
        return f"f: {float(np.float32(v))!r}"  # float32 exactly, as the converter stores it
    if isinstance(v, str):
        return f's: "{v}"'
    return "list { " + " ".join(f"i: {int(i)}" for i in v) + " }"


def composite(name: str, attrs: dict[str, Any], body: Callable[..., Any], *args: Any) -> Any:
    """``body(*args)`` inside a ``tf.function`` that ``experimental_implements`` ``name`` with
    ``attrs`` (ints, floats, bools, strings, int lists; passed as a text ``NameAttrList`` so they
    become the function attribute's options). TensorFlow runs the body as it is; TFLiteConverter
    replaces a recognised composite (``TFLite_Detection_PostProcess``, ``addons:MaxUnpooling2D``)
    by its single custom op, with the options encoded from ``attrs``."""
    spec = " ".join([f'name: "{name}"'] + [f'attr {{ key: "{k}" value {{ {_attr_text(v)} }} }}'
                                           for k, v in attrs.items()])
    return tf.function(body, experimental_implements=spec, autograph=False)(*args)


# -- Convolution2DTransposeBias -------------------------------------------------------------------
def _tconv_check(op: Operator, sg: Subgraph) -> list[str]:
    v = _ints(op, 3)
    if v is None:
        return [f"custom options hold {len(op.custom_options)} bytes, not a TfLiteTransposeConvParams struct"]
    problems = []
    if v[0] not in (_SAME, _VALID):
        problems.append(f"padding enum {v[0]} (only 1 = SAME and 2 = VALID are defined)")
    if not (0 < v[1] <= 1 << 16 and 0 < v[2] <= 1 << 16):
        problems.append(f"strides ({v[1]}, {v[2]}) are not positive")
    if len(op.inputs) != 3 or min(op.inputs) < 0:
        problems.append("needs input, weights and bias")
    else:
        xs, ws, bs = (_shape(sg, i) for i in op.inputs)
        if len(xs) != 4 or len(ws) != 4 or len(bs) != 1:
            problems.append(f"input/weights/bias ranks {len(xs)}/{len(ws)}/{len(bs)}, the kernel needs 4/4/1")
        elif min(xs[1:]) <= 0 or min(ws) <= 0 or ws[3] != xs[3] or bs[0] != ws[0]:
            problems.append(f"input {list(xs)}, weights {list(ws)} (OHWI) and bias {list(bs)} do not match")
    return problems


@register("CUSTOM:Convolution2DTransposeBias", check=_tconv_check)
def conv2d_transpose_bias(ctx: OpContext) -> list[Any]:
    """Transposed convolution plus bias. The kernel pads by ``max(0, k - (in-1) % s - 1)`` in total
    (SAME) or 0 (VALID), the before-part being half of it, and crops the full ``s*(in-1)+k`` result:
    that is exactly TF's ``conv2d_transpose`` with the output size ``s*(in-1)+k-pad`` and padding
    SAME (TF derives the same before-padding from that size), or VALID."""
    padding, sw, sh = _ints(ctx.op, 3)
    x = ctx.input(0)
    _, ih, iw, _ = ctx.in_tensor(0).shape
    o, kh, kw, _ = ctx.in_tensor(1).shape
    ph = max(0, kh - (ih - 1) % sh - 1) if padding == _SAME else 0
    pw = max(0, kw - (iw - 1) % sw - 1) if padding == _SAME else 0
    oh, ow = sh * (ih - 1) + kh - ph, sw * (iw - 1) + kw - pw
    if ctx.is_const(1):
        w = ctx.weight(1, lambda a: a.transpose(1, 2, 0, 3), "hwoi")
    else:
        w = tf.transpose(ctx.input(1), [1, 2, 0, 3])
    batch = ctx.in_tensor(0).shape[0]
    n = batch if batch > 0 else tf.shape(x)[0]
    y = tf.nn.conv2d_transpose(x, w, tf.stack([n, oh, ow, o]) if batch <= 0 else [n, oh, ow, o],
                               strides=[1, sh, sw, 1], padding="SAME" if padding == _SAME else "VALID")
    return [tf.nn.bias_add(y, ctx.input(2))]


# -- MaxPoolingWithArgmax2D -----------------------------------------------------------------------
def _clamp(x: Any, act: int) -> Any:
    """CalculateActivationRange's clamp, as ops the converter fuses into the pool (RELU, RELU6, ...)."""
    rng = _ACT_RANGE[act]
    if rng is None:
        return x
    lo, hi = rng
    if hi == float("inf"):
        return tf.nn.relu(x)
    return tf.nn.relu6(x) if (lo, hi) == (0.0, 6.0) else tf.clip_by_value(x, lo, hi)


@register("CUSTOM:MaxPoolingWithArgmax2D", check=lambda op, sg: _pool_check(op, sg, 1))
def max_pool_argmax(ctx: OpContext) -> list[Any]:
    """Max pool plus the position of each maximum *inside its window*, ``ky * filter_w + kx + 0.1``
    as float32 (MediaPipe's convention; the window origin includes the padding offset, padded cells
    never win). The ``filter_h * filter_w`` window cells are laid side by side on a new axis
    (space-to-depth when the windows tile the input, else one gather of every cell from the
    input padded with -inf) and ``argmax`` picks the first maximum in row-major window order, as
    the kernel's strict ``>`` scan does. Every op used has a TFLite builtin (the converter has no
    composite for this op). Activations only clamp (the kernel applies ``CalculateActivationRange``)."""
    p = _pool_params(ctx.op)
    x = ctx.input(0)
    _, h, w, c = ctx.in_tensor(0).shape
    sh, sw, fh, fw = p["stride_h"], p["stride_w"], p["filter_h"], p["filter_w"]
    same = p["padding"] == _SAME
    oh = (h + sh - 1) // sh if same else (h - fh + sh) // sh
    ow = (w + sw - 1) // sw if same else (w - fw + sw) // sw
    pad_h, pad_w = _compute_padding(sh, h, fh, oh), _compute_padding(sw, w, fw, ow)
    values = tf.nn.max_pool2d(x, [fh, fw], [sh, sw], "SAME" if same else "VALID")
    if fh == fw == sh == sw and pad_h == pad_w == 0 and oh * sh <= h and ow * sw <= w:
        tiles = x if (oh * sh, ow * sw) == (h, w) else x[:, :oh * sh, :ow * sw, :]
        cells = tf.reshape(tf.nn.space_to_depth(tiles, sh), [-1, oh, ow, fh * fw, c])
    else:
        hp, wp = max((oh - 1) * sh + fh, h + pad_h), max((ow - 1) * sw + fw, w + pad_w)
        pads = [[0, 0], [pad_h, hp - h - pad_h], [pad_w, wp - w - pad_w], [0, 0]]
        xp = tf.pad(x, pads, constant_values=float("-inf")) if any(map(any, pads)) else x
        oy = np.arange(oh).reshape(oh, 1, 1, 1) * sh + np.arange(fh).reshape(1, 1, fh, 1)
        ox = np.arange(ow).reshape(1, ow, 1, 1) * sw + np.arange(fw).reshape(1, 1, 1, fw)
        flat = (oy * wp + ox).reshape(-1).astype(np.int32)  # [oh, ow, fh, fw] cells, row-major
        cells = tf.reshape(tf.gather(tf.reshape(xp, [-1, hp * wp, c]), flat, axis=1), [-1, oh, ow, fh * fw, c])
    local = tf.math.argmax(cells, axis=3, output_type=tf.int32)
    return [_clamp(values, p["activation"]), tf.cast(local, tf.float32) + 0.1]


# -- MaxUnpooling2D / LiteRtMaxUnpooling2D ----------------------------------------------------------
def _scatter_last_wins(values: Any, target: Any, valid: Any, size: int) -> Any:
    """``out[target[i]] = values[i]`` for valid ``i`` in order (a later ``i`` overwrites), zeros
    elsewhere: each output slot takes the largest writer index aimed at it."""
    values = tf.reshape(values, [-1])
    target = tf.reshape(target, [-1])
    valid = tf.reshape(valid, [-1])
    writer = tf.range(tf.size(values, out_type=tf.int64), dtype=tf.int64)
    seg = tf.where(valid, target, tf.cast(size, tf.int64))
    winner = tf.math.unsorted_segment_max(writer, seg, size + 1)[:size]
    got = tf.gather(values, tf.maximum(winner, 0))
    return tf.where(winner >= 0, got, tf.zeros_like(got))


def _unpool_check(op: Operator, sg: Subgraph) -> list[str]:
    problems = _pool_check(op, sg, 2)
    if len(op.inputs) == 2 and min(op.inputs) >= 0:
        xs, js = _shape(sg, op.inputs[0]), _shape(sg, op.inputs[1])
        if xs != js:
            problems.append(f"values {list(xs)} and indices {list(js)} differ in shape")
        it = sg.tensors[op.inputs[1]].type_name
        if it not in ("FLOAT32", "INT32"):
            problems.append(f"indices of type {it} (MediaPipe's kernel takes FLOAT32, the perception kernel INT32)")
        if op.custom_code == "LiteRtMaxUnpooling2D" and it != "INT32":
            problems.append("LiteRtMaxUnpooling2D takes INT32 indices")
        if xs and xs[0] <= 0:
            problems.append("needs a static batch size")
    return problems


def _from_argmax_pool(ctx: OpContext) -> bool:
    """Whether the indices are the index output of a MaxPoolingWithArgmax2D with the same window
    (so each is a window position in ``[0, filter_h * filter_w)``)."""
    ti, p = ctx.op.inputs[1], _pool_params(ctx.op)
    return any(o.key == "CUSTOM:MaxPoolingWithArgmax2D" and len(o.outputs) == 2 and o.outputs[1] == ti
               and (q := _pool_params(o)) is not None and (q["filter_h"], q["filter_w"]) == (p["filter_h"], p["filter_w"])
               for o in ctx.subgraph.operators)


def _unpool_tiles(x: Any, idx: Any, f: int) -> Any:
    """MediaPipe unpooling when the windows tile the output (square filter = stride, no padding)
    and every index is a window position: each value goes to cell ``k`` of its own ``f x f`` tile.
    With the channels repeated once per cell (depth ``cell * C + c``), a select on ``k == cell``
    and depth-to-space place them. Builtin ops only."""
    c = x.shape[-1]
    k = tf.tile(tf.cast(idx, tf.int32), [1, 1, 1, f * f])  # C float->int truncation
    cell = np.repeat(np.arange(f * f, dtype=np.int32), c)
    return tf.nn.depth_to_space(tf.where(tf.equal(k, cell), tf.tile(x, [1, 1, 1, f * f]), 0.0), f)


@register("CUSTOM:MaxUnpooling2D", "CUSTOM:LiteRtMaxUnpooling2D", check=_unpool_check)
def max_unpooling(ctx: OpContext) -> list[Any]:
    """Scatter each value to the output position its index names, zeros elsewhere.

    Float indices (MediaPipe): a window position ``ky * filter_w + kx`` (truncated to int as C does),
    output ``in * filter`` per spatial dim, window origin ``in * stride - pad``; positions outside the
    output are skipped (as MediaPipe's bounds check does). Int32 indices (TFLite perception kernel,
    also ``LiteRtMaxUnpooling2D``): a flat ``(y * W + x) * C + c`` index within the batch element, as
    ``tf.nn.max_pool_with_argmax`` produces; output ``in * stride`` (SAME) or ``(in-1)*stride+filter``
    (VALID). Out-of-range indices are dropped (the reference would write out of bounds). The fused
    activation is ignored by both kernels, so it is here too.

    The computation sits in an ``addons:MaxUnpooling2D`` composite (pool_size, strides, padding), so
    the converter turns it back into one ``MaxUnpooling2D`` custom op with the same padding, strides
    and filter (it writes activation 0, which both kernels ignore; ``LiteRtMaxUnpooling2D`` comes
    back under the perception kernel's own name ``MaxUnpooling2D``). Except when the indices come
    from a MaxPoolingWithArgmax2D (segmentation models' pair) and the windows tile the output: the
    pool can only come back as builtins, and XNNPACK, which runs the custom unpooling in the stock
    interpreter and MediaPipe, reads the index tensor as the raw uint32 its own argmax pooling
    writes, not as MediaPipe's float, so a builtin pool feeding a custom unpool would give wrong
    results there; the pair is then rebuilt from builtins only."""
    p = _pool_params(ctx.op)
    b, h, w, c = ctx.in_tensor(0).shape
    mediapipe = ctx.in_tensor(1).type_name == "FLOAT32" and ctx.op.custom_code == "MaxUnpooling2D"
    if mediapipe and p["filter_h"] == p["filter_w"] == p["stride_h"] == p["stride_w"] and _from_argmax_pool(ctx):
        return [_unpool_tiles(ctx.input(0), ctx.input(1), p["filter_h"])]

    def unpool(x: Any, idx: Any) -> Any:
        if mediapipe:
            oh, ow = h * p["filter_h"], w * p["filter_w"]
            pad_h = _compute_padding(p["stride_h"], oh, p["filter_h"], h)
            pad_w = _compute_padding(p["stride_w"], ow, p["filter_w"], w)
            k = tf.cast(idx, tf.int32)  # C float->int conversion truncates toward zero
            ky, kx = tf.truncatediv(k, p["filter_w"]), tf.truncatemod(k, p["filter_w"])
            gy = np.arange(h, dtype=np.int32).reshape(1, h, 1, 1) * p["stride_h"] - pad_h
            gx = np.arange(w, dtype=np.int32).reshape(1, 1, w, 1) * p["stride_w"] - pad_w
            out_y, out_x = gy + ky, gx + kx
            valid = (out_y >= 0) & (out_y < oh) & (out_x >= 0) & (out_x < ow)
            pos = tf.cast((out_y * ow + out_x) * c, tf.int64) + np.arange(c, dtype=np.int64)
        else:
            same = p["padding"] == _SAME
            oh = h * p["stride_h"] if same else (h - 1) * p["stride_h"] + p["filter_h"]
            ow = w * p["stride_w"] if same else (w - 1) * p["stride_w"] + p["filter_w"]
            pos = tf.cast(idx, tf.int64)
            valid = (pos >= 0) & (pos < oh * ow * c)
        per_batch = oh * ow * c
        base = np.arange(b, dtype=np.int64).reshape(b, 1, 1, 1) * per_batch
        out = _scatter_last_wins(x, pos + base, valid, per_batch * b)
        return tf.reshape(out, [b, oh, ow, c])

    attrs = {"pool_size": [p["filter_h"], p["filter_w"]], "strides": [p["stride_h"], p["stride_w"]],
             "padding": "SAME" if p["padding"] == _SAME else "VALID"}
    return [composite("addons:MaxUnpooling2D", attrs, unpool, ctx.input(0), ctx.input(1))]


# -- Landmarks2TransformMatrix ---------------------------------------------------------------------
def _flex(op: Operator) -> dict[str, Any]:
    o = op.flex_options
    return o if isinstance(o, dict) else {}


_L2T_V1 = ("input_hw", "output_hw", "dimensions", "landmarks_range", "bbox_size_multiplier",
           "left_rotation_idx", "right_rotation_idx", "subset")
_L2T_V2 = ("subset_idxs", "left_rotation_idx", "right_rotation_idx", "target_rotation_radians", "output_height",
           "output_width", "scale_x", "scale_y")


def _num_landmarks(sg: Subgraph, op: Operator) -> int | None:
    s = _shape(sg, op.inputs[0]) if op.inputs else ()
    if not s or min(s) <= 0:
        return None
    return int(np.prod(s)) // 3


def _l2t_check(op: Operator, sg: Subgraph) -> list[str]:
    o = _flex(op)
    v2 = op.version >= 2
    keys = _L2T_V2 if v2 else _L2T_V1
    missing = [k for k in keys if k not in o]
    if missing:
        return [f"options lack {missing} (version {op.version} kernel)"]
    problems = []
    subset = o["subset_idxs" if v2 else "subset"]
    idxs = [o["left_rotation_idx"], o["right_rotation_idx"], *(subset if isinstance(subset, list) else [])]
    if not isinstance(subset, list) or not subset or not all(isinstance(i, int) for i in idxs):
        problems.append("subset is not a non-empty list of landmark indices")
    else:
        n = _num_landmarks(sg, op)
        if n is None:
            problems.append("the landmarks input needs a static shape")
        elif any(not 0 <= i < n for i in idxs):
            problems.append(f"a landmark index in {idxs} is outside the {n} landmarks")
    if v2:
        if o["output_height"] <= 0 or o["output_width"] <= 0 or o["scale_x"] <= 0 or o["scale_y"] <= 0:
            problems.append("output size and scales must be positive (the kernel rejects them)")
    else:
        ih, ow = o["input_hw"], o["output_hw"]
        if (not isinstance(ih, list) or not isinstance(ow, list) or len(ih) < 2 or len(ow) < 2
                or min(ih[:2] + ow[:2]) <= 0):
            problems.append("input_hw/output_hw must be two positive sizes")
        if o["dimensions"] != 3 or o["landmarks_range"] <= 0 or o["bbox_size_multiplier"] == 0:
            problems.append("dimensions must be 3, landmarks_range positive, bbox_size_multiplier non-zero "
                            "(the kernel rejects other values)")
    return problems


def _mat(rows: list[list[Any]]) -> Any:
    return tf.stack([tf.stack([tf.cast(v, tf.float32) for v in r]) for r in rows])


@register("CUSTOM:Landmarks2TransformMatrix", check=_l2t_check)
def landmarks_to_transform_matrix(ctx: OpContext) -> list[Any]:
    """The 4x4 matrix MediaPipe's kernel derives from a rotation pair and a subset's bounding box
    (V1: an inverse crop transform in relative coordinates; V2: shift * rotate * scale * shift)."""
    o = _flex(ctx.op)
    pts = tf.reshape(ctx.input(0), [-1, 3])
    if ctx.op.version >= 2:
        subset = list(o["subset_idxs"])
        left, right = pts[o["left_rotation_idx"]], pts[o["right_rotation_idx"]]
        r = o["target_rotation_radians"] - tf.atan2(right[1] - left[1], right[0] - left[0])
        sub = tf.gather(pts, subset)
        cr, sr = tf.cos(r), tf.sin(r)
        rx = cr * sub[:, 0] - sr * sub[:, 1]
        ry = sr * sub[:, 0] + cr * sub[:, 1]
        xmax, xmin, ymax, ymin = tf.reduce_max(rx), tf.reduce_min(rx), tf.reduce_max(ry), tf.reduce_min(ry)
        cw, ch = xmax - xmin, ymax - ymin
        mx, my = (xmin + xmax) / 2, (ymin + ymax) / 2
        cn, sn = tf.cos(-r), tf.sin(-r)
        cx, cy = cn * mx - sn * my, sn * mx + cn * my
        sx = o["scale_x"] * cw / o["output_width"]
        sy = o["scale_y"] * ch / o["output_height"]
        shift = _mat([[1, 0, 0, cx], [0, 1, 0, cy], [0, 0, 1, 0], [0, 0, 0, 1]])
        rot = _mat([[cn, -sn, 0, 0], [sn, cn, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        scale = _mat([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        shift2 = _mat([[1, 0, 0, -(o["output_width"] / 2.0)], [0, 1, 0, -(o["output_height"] / 2.0)],
                       [0, 0, 1, 0], [0, 0, 0, 1]])
        t = tf.matmul(tf.matmul(tf.matmul(shift, rot), scale), shift2)
        return [tf.reshape(t, [1, 4, 4])]
    ih, iw = o["input_hw"][0], o["input_hw"][1]
    oh, ow = o["output_hw"][0], o["output_hw"][1]
    rng, mult = float(o["landmarks_range"]), o["bbox_size_multiplier"]
    left, right = pts[o["left_rotation_idx"]], pts[o["right_rotation_idx"]]
    alpha = -tf.atan((right[1] - left[1]) / (right[0] - left[0]))
    sub = tf.gather(pts, list(o["subset"]))
    ca, sa = tf.cos(alpha), tf.sin(alpha)
    rx = sub[:, 0] * ca - sub[:, 1] * sa
    ry = sub[:, 0] * sa + sub[:, 1] * ca
    xmax, ymax = tf.maximum(tf.reduce_max(rx), -100000.0), tf.maximum(tf.reduce_max(ry), -100000.0)
    xmin, ymin = tf.minimum(tf.reduce_min(rx), 100000.0), tf.minimum(tf.reduce_min(ry), 100000.0)
    bx, by = (xmax - xmin) * mult, (ymax - ymin) * mult
    mx, my = (xmax + xmin) / 2.0, (ymax + ymin) / 2.0
    cn, sn = tf.cos(-alpha), tf.sin(-alpha)
    rmx, rmy = mx * cn - my * sn, mx * sn + my * cn
    scale = _mat([[bx / rng, 0, 0], [0, by / rng, 0], [0, 0, 1]])
    rot = _mat([[cn, -sn, (rmx / rng) * 2.0 - 1.0], [sn, cn, (rmy / rng) * 2.0 - 1.0], [0, 0, 1]])
    to_rel = _mat([[2.0 / (ow - 1.0), 0, -1.0], [0, 2.0 / (oh - 1.0), -1.0], [0, 0, 1]])
    to_abs = _mat([[(iw - 1.0) / 2.0, 0, (iw - 1.0) / 2.0], [0, (ih - 1.0) / 2.0, (ih - 1.0) / 2.0], [0, 0, 1]])
    itm = tf.matmul(tf.matmul(tf.matmul(to_abs, rot), scale), to_rel)
    z = tf.zeros([], tf.float32)
    flat = [itm[0, 0], itm[0, 1], z, itm[0, 2], itm[1, 0], itm[1, 1], z, itm[1, 2],
            itm[2, 0], itm[2, 1], itm[2, 2], z, z, z, z, tf.ones([], tf.float32)]
    return [tf.reshape(tf.stack(flat), [1, 4, 4])]


# -- TransformLandmarks ------------------------------------------------------------------------------
def _tl_check(op: Operator, sg: Subgraph) -> list[str]:
    if len(op.inputs) != 2 or min(op.inputs) < 0:
        return ["needs landmarks and a transform matrix"]
    s = _shape(sg, op.inputs[0])
    m = _shape(sg, op.inputs[1])
    if m and 0 <= int(np.prod(m)) < 8:
        return [f"transform matrix of shape {list(m)} has fewer than 8 elements"]
    if op.version >= 2:
        if len(s) != 3 or min(s) <= 0 or s[0] != 1 or s[2] not in (2, 3):
            return [f"landmarks {list(s)}: the V2 kernel needs a static [1, N, 2|3] tensor (it writes only the "
                    "first row)"]
        return []
    o = _flex(op)
    dims, scale = o.get("dimensions"), o.get("scale")
    problems = []
    if dims not in (2, 3) or not isinstance(scale, (int, float)) or scale == 0:
        problems.append(f"dimensions {dims!r} / scale {scale!r}: the kernel needs 2 or 3 and a non-zero scale")
    if len(s) != 4 or min(s) <= 0 or s[0] != 1:
        problems.append(f"landmarks {list(s)}: the V1 kernel needs a static [1, H, W, C] tensor (it writes only "
                        "batch 0)")
    elif dims in (2, 3) and s[3] % dims:
        problems.append(f"{s[3]} channels are not a multiple of dimensions {dims}")
    return problems


@register("CUSTOM:TransformLandmarks", check=_tl_check)
def transform_landmarks(ctx: OpContext) -> list[Any]:
    """Apply the first two rows of a 4x4 matrix to each landmark's (x, y, 0, 1); z is copied.
    V1 scales the matrix's translation by ``scale``; V2 has no options (dimensions = channels)."""
    x = ctx.input(0)
    m = tf.reshape(ctx.input(1), [-1])[:8]
    shape = ctx.in_tensor(0).shape
    if ctx.op.version >= 2:
        dims, scale = shape[2], 1.0
    else:
        o = _flex(ctx.op)
        dims, scale = o["dimensions"], float(o["scale"])
    pts = tf.reshape(x, [-1, dims])
    px, py = pts[:, 0], pts[:, 1]
    nx = m[0] * px + m[1] * py + m[3] * scale
    ny = m[4] * px + m[5] * py + m[7] * scale
    cols = [nx, ny] + ([pts[:, 2]] if dims == 3 else [])
    return [tf.reshape(tf.stack(cols, axis=1), shape)]


# -- TransformTensorBilinear -------------------------------------------------------------------------
def _ttb_check(op: Operator, sg: Subgraph) -> list[str]:
    if len(op.inputs) != 2 or min(op.inputs) < 0 or len(op.outputs) != 1:
        return ["needs a tensor and a transform matrix"]
    s, m, out = _shape(sg, op.inputs[0]), _shape(sg, op.inputs[1]), _shape(sg, op.outputs[0])
    problems = []
    if len(s) != 4 or min(s) <= 0:
        problems.append(f"input {list(s)} must be a static 4-D tensor")
    if len(out) != 4 or min(out) <= 0 or out[0] != 1:
        problems.append(f"output {list(out)}: the kernel writes a static [1, H, W, C] output (only batch 0)")
    elif len(s) == 4 and out[3] > s[3]:
        problems.append(f"output has {out[3]} channels, more than the input's {s[3]}")
    if m and 0 <= int(np.prod(m)) < 8:
        problems.append(f"transform matrix of shape {list(m)} has fewer than 8 elements")
    o = _flex(op)
    if op.version < 2 and "mode" in o and o["mode"] != "bilinear":
        problems.append(f"mode {o['mode']!r} (the kernel supports only bilinear)")
    return problems


@register("CUSTOM:TransformTensorBilinear", "CUSTOM:TransformTensor", check=_ttb_check)
def transform_tensor_bilinear(ctx: OpContext) -> list[Any]:
    """Sample the input (batch 0) at ``M * (x, y, 0, 1)`` for each output pixel with bilinear
    interpolation; samples outside ``[0, W-1] x [0, H-1]`` are 0. Version 2 first shifts the
    transform by half a pixel (its align-corners correction). The output size is the output tensor's
    declared shape (the kernel does not resize it)."""
    x = ctx.input(0)
    m = tf.reshape(ctx.input(1), [-1])[:8]
    _, h, w, _ = ctx.in_tensor(0).shape
    _, oh, ow, oc = ctx.out_tensor(0).shape
    m0, m1, m3, m4, m5, m7 = m[0], m[1], m[3], m[4], m[5], m[7]
    if ctx.op.version >= 2:
        m3 = m3 + (m0 * 0.5 + m1 * 0.5 - 0.5)
        m7 = m7 + (m4 * 0.5 + m5 * 0.5 - 0.5)
    gx = tf.constant(np.tile(np.arange(ow, dtype=np.float32), oh))
    gy = tf.constant(np.repeat(np.arange(oh, dtype=np.float32), ow))
    tx = m0 * gx + m1 * gy + m3
    ty = m4 * gx + m5 * gy + m7
    inside = (tx >= 0.0) & (tx <= w - 1.0) & (ty >= 0.0) & (ty <= h - 1.0)
    fx, fy = tf.floor(tx), tf.floor(ty)
    rc, lc = tx - fx, ty - fy
    img = x[0, :, :, :oc]
    x0, y0 = tf.cast(fx, tf.int32), tf.cast(fy, tf.int32)

    def read(yy: Any, xx: Any) -> Any:
        ok = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        v = tf.gather_nd(img, tf.stack([tf.clip_by_value(yy, 0, h - 1), tf.clip_by_value(xx, 0, w - 1)], axis=1))
        return tf.where(ok[:, None], v, tf.zeros_like(v))

    q11, q21, q12, q22 = read(y0, x0), read(y0, x0 + 1), read(y0 + 1, x0), read(y0 + 1, x0 + 1)
    rc, lc = rc[:, None], lc[:, None]
    upper = (1.0 - rc) * q11 + rc * q21
    lower = (1.0 - rc) * q12 + rc * q22
    res = lc * lower + (1.0 - lc) * upper
    res = tf.where(inside[:, None], res, tf.zeros_like(res))
    return [tf.reshape(res, [1, oh, ow, oc])]
