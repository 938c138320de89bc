"""``TFLite_Detection_PostProcess``: SSD box decoding plus multi-class non-max suppression.

Semantics follow ``tensorflow/lite/kernels/detection_postprocess.cc``:

* decode: ``ycenter = y / y_scale * anchor_h + anchor_y`` (likewise x), ``half_h = 0.5 * exp(h /
  h_scale) * anchor_h`` (likewise w), computed in double and rounded to float32 before the corners
  ``ycenter -/+ half_h`` are formed in float32; box encodings may carry extra values after the first 4.
* scores are used as given (no sigmoid); when the class axis has ``num_classes + 1`` entries the first
  is a background class and is skipped (``label_offset``).
* fast NMS (``use_regular_nms`` false): each anchor keeps its top ``min(max_classes_per_detection,
  num_classes)`` classes; one class-agnostic NMS runs on each anchor's best score; output slot
  ``j * max_classes_per_detection + k`` holds the ``k``-th class of the ``j``-th kept box.
* regular NMS: NMS per class (at most ``detections_per_class`` each), then the best ``max_detections``
  of all classes by score.
* single-class NMS keeps scores ``>= nms_score_threshold``, visits them in stable descending order and
  drops a box whose IoU with a kept one is ``> nms_iou_threshold`` (TF's ``NonMaxSuppressionV4`` does
  the same; it only filters scores with ``>``, so scores below the threshold are masked to -inf first).

Outputs are float32 ``boxes [B, D, 4]``, ``classes [B, D]``, ``scores [B, D]``, ``num_detections [B]``
with ``D = max_detections * max_classes_per_detection`` in both modes; slots past the detections are
0 (the TFLite kernel leaves them unwritten in fast mode, and past ``max_detections`` in regular mode). TFLite runs batch 1 only; a larger static batch is rebuilt
batch element by batch element. Ties between equal scores are broken by lower index first (the
kernel's stable sort does the same in single-class NMS; its cross-class merge uses an unstable partial
sort, so equal scores of different classes may come out in another order there).

Round trip: the computation sits in a ``tf.function`` that ``experimental_implements``
``TFLite_Detection_PostProcess`` with the options as attributes; TFLiteConverter
(``prepare_composite_functions_tf.cc`` / ``nms_utils.cc``) replaces it by the single custom op with a
FlexBuffer map of max_detections, max_classes_per_detection, num_classes, the two NMS thresholds,
the four scales and use_regular_nms (written as an int). It does not encode
``detections_per_class`` (the kernel then uses 100), so a regular-NMS op with another value is
built from plain ops instead (which convert to NMS builtins and many small ops), never into a
composite that would come back with a different option.
"""

from __future__ import annotations

from typing import Any

from ..._tf import tf
from ...model.ir import Operator, Subgraph
from ..context import OpContext
from ..registry import register
from .mediapipe import composite

_REQUIRED = ("max_detections", "max_classes_per_detection", "nms_score_threshold", "nms_iou_threshold",
             "num_classes", "y_scale", "x_scale", "h_scale", "w_scale")


def _params(op: Operator) -> dict[str, Any]:
    o = op.flex_options if isinstance(op.flex_options, dict) else {}
    p = {k: o.get(k) for k in _REQUIRED}
    p["detections_per_class"] = o.get("detections_per_class", 100)
    p["use_regular_nms"] = bool(o.get("use_regular_nms", False))
    return p


def _check(op: Operator, sg: Subgraph) -> list[str]:
    if not isinstance(op.flex_options, dict):
        return ["custom options are not a FlexBuffer map"]
    p = _params(op)
    missing = [k for k in _REQUIRED if p[k] is None]
    if missing:
        return [f"options lack {missing}"]
    problems = []
    if not all(isinstance(p[k], (int, float)) for k in (*_REQUIRED, "detections_per_class")):
        return ["an option is not a number"]
    if int(p["max_detections"]) < 0 or int(p["num_classes"]) <= 0:
        problems.append(f"max_detections {p['max_detections']} / num_classes {p['num_classes']} out of range")
    if not 0.0 < float(p["nms_iou_threshold"]) <= 1.0:
        problems.append(f"nms_iou_threshold {p['nms_iou_threshold']} is not in (0, 1] (the kernel rejects it)")
    if p["use_regular_nms"] and int(p["detections_per_class"]) <= 0:
        problems.append(f"detections_per_class {p['detections_per_class']} must be positive")
    if not p["use_regular_nms"] and int(p["max_classes_per_detection"]) <= 0:
        problems.append(f"max_classes_per_detection {p['max_classes_per_detection']} must be positive")
    if len(op.inputs) != 3 or min(op.inputs) < 0 or len(op.outputs) != 4:
        return problems + ["needs 3 inputs (boxes, scores, anchors) and 4 outputs"]
    bs, ss, an = (sg.tensors[i].shape for i in op.inputs)
    if len(bs) != 3 or len(ss) != 3 or len(an) != 2:
        problems.append(f"input ranks {len(bs)}/{len(ss)}/{len(an)}, the kernel needs 3/3/2")
    elif min(bs) <= 0 or min(ss) <= 0 or min(an) <= 0:
        problems.append("inputs need static shapes")
    else:
        if bs[2] < 4 or an[1] < 4 or an[0] != bs[1] or ss[1] != bs[1] or ss[0] != bs[0]:
            problems.append(f"boxes {list(bs)}, scores {list(ss)} and anchors {list(an)} do not match")
        extra = ss[2] - int(p["num_classes"])
        if extra not in (0, 1):
            problems.append(f"scores have {ss[2]} classes for num_classes {p['num_classes']} (at most one "
                            "background class)")
    return problems


def _decode(enc: Any, anchors: Any, p: dict[str, Any]) -> Any:
    e = tf.cast(enc[:, :4], tf.float64)
    a = tf.cast(anchors[:, :4], tf.float64)
    yc = tf.cast(e[:, 0] / float(p["y_scale"]) * a[:, 2] + a[:, 0], tf.float32)
    xc = tf.cast(e[:, 1] / float(p["x_scale"]) * a[:, 3] + a[:, 1], tf.float32)
    hh = tf.cast(0.5 * tf.exp(e[:, 2] / float(p["h_scale"])) * a[:, 2], tf.float32)
    hw = tf.cast(0.5 * tf.exp(e[:, 3] / float(p["w_scale"])) * a[:, 3], tf.float32)
    return tf.stack([yc - hh, xc - hw, yc + hh, xc + hw], axis=1)


def _nms(boxes: Any, scores: Any, max_out: int, p: dict[str, Any]) -> tuple[Any, Any]:
    """Padded single-class NMS: (indices [max_out], number valid)."""
    thr = float(p["nms_score_threshold"])
    masked = tf.where(scores >= thr, scores, tf.fill(tf.shape(scores), float("-inf")))
    sel, n = tf.raw_ops.NonMaxSuppressionV4(boxes=boxes, scores=masked, max_output_size=max_out,
                                            iou_threshold=float(p["nms_iou_threshold"]),
                                            score_threshold=float("-inf"), pad_to_max_output_size=True)
    return sel, n


def _fast(boxes: Any, cls: Any, p: dict[str, Any]) -> list[Any]:
    max_det, max_cls = int(p["max_detections"]), int(p["max_classes_per_detection"])
    k = min(max_cls, int(p["num_classes"]))
    top_vals, top_idx = tf.math.top_k(cls, k=k, sorted=True)
    sel, n = _nms(boxes, top_vals[:, 0], max_det, p)
    valid = tf.range(max_det) < n
    pad = [[0, 0], [0, max_cls - k]]
    out_boxes = tf.tile(tf.gather(boxes, sel)[:, None, :], [1, max_cls, 1])
    slot_ok = valid[:, None] & (tf.range(max_cls) < k)[None, :]
    out_boxes = tf.where(slot_ok[:, :, None], out_boxes, tf.zeros_like(out_boxes))
    out_cls = tf.where(valid[:, None], tf.pad(tf.cast(tf.gather(top_idx, sel), tf.float32), pad), 0.0)
    out_sc = tf.where(valid[:, None], tf.pad(tf.gather(top_vals, sel), pad), 0.0)
    d = max_det * max_cls
    return [tf.reshape(out_boxes, [d, 4]), tf.reshape(out_cls, [d]), tf.reshape(out_sc, [d]),
            tf.cast(n, tf.float32)]


def _regular(boxes: Any, cls: Any, p: dict[str, Any]) -> list[Any]:
    max_det, per_class = int(p["max_detections"]), int(p["detections_per_class"])
    num_classes = int(p["num_classes"])
    cand_scores, cand_boxes, cand_classes = [], [], []
    for c in range(num_classes):
        s = cls[:, c]
        sel, n = _nms(boxes, s, per_class, p)
        ok = tf.range(per_class) < n
        cand_scores.append(tf.where(ok, tf.gather(s, sel), float("-inf")))
        cand_boxes.append(sel)
        cand_classes.append(tf.fill([per_class], float(c)))
    scores = tf.concat(cand_scores, 0)
    k = min(max_det, num_classes * per_class)
    top, order = tf.math.top_k(scores, k=k, sorted=True)  # stable: lower index (class, rank) first
    ok = top > float("-inf")
    n = tf.reduce_sum(tf.cast(ok, tf.int32))
    out_boxes = tf.where(ok[:, None], tf.gather(boxes, tf.gather(tf.concat(cand_boxes, 0), order)), 0.0)
    out_cls = tf.where(ok, tf.gather(tf.concat(cand_classes, 0), order), 0.0)
    out_sc = tf.where(ok, top, 0.0)
    pad = max_det * int(p["max_classes_per_detection"]) - k  # outputs are sized for fast NMS either way
    return [tf.pad(out_boxes, [[0, pad], [0, 0]]), tf.pad(out_cls, [[0, pad]]), tf.pad(out_sc, [[0, pad]]),
            tf.cast(n, tf.float32)]


#: Options the converter's composite encodes (nms_utils.cc, CreateNMSCustomOptions), by kind.
_COMPOSITE_INTS = ("max_detections", "max_classes_per_detection", "num_classes")
_COMPOSITE_FLOATS = ("nms_score_threshold", "nms_iou_threshold", "y_scale", "x_scale", "h_scale", "w_scale")
_KERNEL_DETECTIONS_PER_CLASS = 100  # the kernel's default when the option is absent


@register("CUSTOM:TFLite_Detection_PostProcess", check=_check)
def detection_postprocess(ctx: OpContext) -> list[Any]:
    p = _params(ctx.op)
    batch = ctx.in_tensor(0).shape[0]
    offset = ctx.in_tensor(1).shape[2] - int(p["num_classes"])

    def postprocess(enc: Any, scores: Any, anchors: Any) -> list[Any]:
        anchors = tf.cast(anchors, tf.float32)
        per = []
        for b in range(batch):
            boxes = _decode(tf.cast(enc[b], tf.float32), anchors, p)
            cls = tf.cast(scores[b, :, offset:], tf.float32)
            per.append(_regular(boxes, cls, p) if p["use_regular_nms"] else _fast(boxes, cls, p))
        return [tf.stack([r[i] for r in per]) for i in range(4)]

    args = (ctx.input(0), ctx.input(1), ctx.input(2))
    if p["use_regular_nms"] and int(p["detections_per_class"]) != _KERNEL_DETECTIONS_PER_CLASS:
        return postprocess(*args)  # the composite cannot carry detections_per_class
    attrs = {k: int(p[k]) for k in _COMPOSITE_INTS}
    attrs.update({k: float(p[k]) for k in _COMPOSITE_FLOATS})
    attrs["use_regular_nms"] = p["use_regular_nms"]
    return list(composite("TFLite_Detection_PostProcess", attrs, postprocess, *args))
