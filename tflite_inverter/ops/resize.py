"""RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR.

TensorFlow's v1 resize ops take the same ``align_corners`` / ``half_pixel_centers`` flags and compute
source coordinates with the same float formulas as TFLite's kernels (scale ``in/out``, or
``(in-1)/(out-1)`` with align_corners; half-pixel centers ``(i + 0.5) * scale - 0.5`` for bilinear and
``floor((i + 0.5) * scale)`` for nearest), and the converter maps them back to the same builtins.

TensorFlow refuses both flags together. TFLite's bilinear kernel does too; its nearest-neighbor kernel
accepts them (``round((i + 0.5) * scale)`` with the align-corners scale), which is rebuilt as two
gathers with the indices computed ahead of time (static sizes only). Quantized nearest-neighbour
resizing copies raw integers in every kernel (none requantizes): an output with other parameters than
the input reads the same codes (:func:`.common.raw_codes`).

Quantized RESIZE_BILINEAR interpolates in fixed point: 8-bit runs in XNNPACK in the default
interpreter (11-bit weights ``lrintf(alpha * 2048)``, ``(acc + 2**21) >> 22``), int16 in TFLite's
reference kernel (10-bit source coordinates, rounding half away from zero). The int16 kernel
(``resize_bilinear.cc`` Eval, ``reference_ops::ResizeBilinearInteger`` in
``internal/reference/resize_bilinear.h``) interpolates the stored input codes and stores the result
code without requantizing: an output with other parameters than the input reads the same codes with
its own scale and zero point. XNNPACK refuses 8-bit resizes whose output parameters differ (the
default interpreter fails to delegate them). Faithful mode reproduces both exactly when the sizes
are static; the float resize plus fake quantization is one LSB off on a
few percent of 8-bit pixels and ~100 LSB off on int16 ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tf import tf
from ..model.ir import Operator, Subgraph
from . import integer_kernels
from .common import raw_codes
from .context import OpContext
from .registry import register


def _size(ctx: OpContext) -> Any:
    """The output ``[height, width]``: a Python list when constant (keeps shapes static)."""
    c = ctx.const(1)
    return [int(v) for v in c] if c is not None else ctx.input(1)


def _bilinear_check(op: Operator, sg: Subgraph) -> list[str]:
    if op.options.get("align_corners") and op.options.get("half_pixel_centers"):
        return ["align_corners together with half_pixel_centers (TFLite's kernel refuses it as well)"]
    return []


def bilinear_q11(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """XNNPACK's source rows (top, bottom) and 11-bit weights for one axis (float32 arithmetic)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    v = np.arange(out_size, dtype=np.float32) * scale
    if half_pixel_centers and not align_corners:
        v = np.clip(v + (np.float32(0.5) * scale - np.float32(0.5)), np.float32(0), np.float32(in_size - 1))
    top = v.astype(np.int32)
    alpha = v - top.astype(np.float32)
    return top, np.minimum(top + 1, in_size - 1), np.rint(alpha * np.float32(2048)).astype(np.int64)


def bilinear_q10(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TFLite's reference integer resize (int16): source rows and 10-bit fractions for one axis."""
    if align_corners and out_size > 1:
        s = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        s = ((1 << 10) * in_size + out_size // 2) // out_size
    v = np.arange(out_size, dtype=np.int64) * s + ((s // 2 - (1 << 9)) if half_pixel_centers else 0)
    lower = np.maximum(np.trunc(v / 1024), 0).astype(np.int64)
    upper = np.minimum(np.trunc((v + 1023) / 1024), in_size - 1).astype(np.int64)
    return lower, upper, v - 1024 * lower


def _exact_bilinear(ctx: OpContext, x: Any, y_float: Any) -> Any | None:
    """8-bit: XNNPACK's 11-bit interpolation; int16 (builtin kernel): TFLite's 10-bit reference one."""
    in_t, out_t = ctx.in_tensor(0), ctx.out_tensor(0)
    size = ctx.const(1)
    if not (ctx.builder.options.fake_quant and in_t.is_quantized and out_t.is_quantized
            and in_t.type_name == out_t.type_name and in_t.type_name in ("INT8", "UINT8", "INT16")
            and size is not None and len(in_t.shape) == 4 and not in_t.is_dynamic):
        return None
    qi, qo = in_t.quantization, out_t.quantization
    sixteen = in_t.type_name == "INT16"
    if qi.scale.size != 1 or qo.scale.size != 1:
        return None
    same = qi.scale[0] == qo.scale[0] and int(qi.zero_point[0]) == int(qo.zero_point[0])
    if not (same or sixteen):  # 8-bit with other output parameters: XNNPACK refuses the node
        return None
    o = ctx.options
    flags = (bool(o.get("align_corners")), bool(o.get("half_pixel_centers")))
    scale, zp = float(qi.scale[0]), int(qi.zero_point[0])
    raw = tf.cast(tf.round(x / scale), tf.int64) + zp
    one = 1024 if sixteen else 2048
    ty, by, wy = (bilinear_q10 if sixteen else bilinear_q11)(in_t.shape[1], int(size[0]), *flags)
    tx, bx, wx = (bilinear_q10 if sixteen else bilinear_q11)(in_t.shape[2], int(size[1]), *flags)
    ah = tf.constant(wx.reshape(1, 1, -1, 1))
    av = tf.constant(wy.reshape(1, -1, 1, 1))

    def row(r: Any) -> Any:
        left, right = tf.gather(r, tx, axis=2), tf.gather(r, bx, axis=2)
        return left * (one - ah) + right * ah

    acc = row(tf.gather(raw, ty, axis=1)) * (one - av) + row(tf.gather(raw, by, axis=1)) * av
    if sixteen:  # (acc +- 2**19) / 2**20, truncating: rounds half away from zero
        half = tf.constant(2 ** 19, tf.int64)
        q = tf.truncatediv(acc + tf.where(acc > 0, half, -half), tf.constant(2 ** 20, tf.int64))
    else:  # (acc + 2**21) >> 22
        q = (acc + 2 ** 21) // 2 ** 22
    s_out, zp_out = float(qo.scale[0]), int(qo.zero_point[0])
    return integer_kernels.ste(raw_codes(y_float, in_t, out_t), tf.cast(q - zp_out, tf.float32) * s_out)


@register("RESIZE_BILINEAR", check=_bilinear_check)
def resize_bilinear(ctx: OpContext) -> list[Any]:
    o = ctx.options
    x = ctx.input(0)
    y = tf.compat.v1.image.resize_bilinear(x, _size(ctx), align_corners=bool(o.get("align_corners")),
                                           half_pixel_centers=bool(o.get("half_pixel_centers")))
    if y.dtype != ctx.out_dtype(0):
        return [tf.cast(y, ctx.out_dtype(0))]
    exact = _exact_bilinear(ctx, x, y)
    return [exact if exact is not None else y]


def _both_flags(op: Operator) -> bool:
    return bool(op.options.get("align_corners")) and bool(op.options.get("half_pixel_centers"))


def _nearest_check(op: Operator, sg: Subgraph) -> list[str]:
    if not _both_flags(op):
        return []
    x = sg.tensors[op.inputs[0]]
    size = sg.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
    if size is None or not size.is_constant or len(x.shape) != 4 or x.is_dynamic or min(x.shape[1:3]) <= 0:
        return ["align_corners together with half_pixel_centers needs a constant size and a static input "
                "height/width (TensorFlow's resize op refuses the combination; it is rebuilt as gathers)"]
    return []


def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """TFLite's ``GetNearestNeighbor`` for every output index (float32 arithmetic, as the kernel)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    v = (np.arange(out_size, dtype=np.float32) + offset) * scale
    idx = np.sign(v) * np.floor(np.abs(v) + 0.5) if align_corners else np.floor(v)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        idx = np.maximum(idx, 0)
    return idx.astype(np.int32)


@register("RESIZE_NEAREST_NEIGHBOR", check=_nearest_check)
def resize_nearest_neighbor(ctx: OpContext) -> list[Any]:
    o = ctx.options
    x = raw_codes(ctx.input(0), ctx.in_tensor(0), ctx.out_tensor(0))
    align, half = bool(o.get("align_corners")), bool(o.get("half_pixel_centers"))
    if align and half:
        h, w = ctx.in_tensor(0).shape[1:3]
        oh, ow = _size(ctx)
        y = tf.gather(x, nearest_indices(h, oh, True, True), axis=1)
        return [tf.gather(y, nearest_indices(w, ow, True, True), axis=2)]
    return [tf.compat.v1.image.resize_nearest_neighbor(x, _size(ctx), align_corners=align,
                                                       half_pixel_centers=half)]
